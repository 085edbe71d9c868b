//! Active health checks: one task per backend that probes it every `interval` and feeds the
//! result to the backend's rise/fall counters.
//!
//! A probe is a TCP connect, a TLS handshake, or a send/expect exchange, each bounded by the
//! check timeout. The first probe runs at once, so a dead backend is found without waiting a
//! whole interval after start or reload.

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::config::{CheckConfig, CheckKind, MAX_EXPECT_READ};
use crate::tls::BackendConnector;

/// Why one probe failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Connect, handshake, write or read failed.
    #[error("check i/o: {0}")]
    Io(#[from] io::Error),
    /// The probe did not finish within the check timeout.
    #[error("check timed out")]
    Timeout,
    /// The backend closed or sent too much before the expected bytes.
    #[error("expected reply not received")]
    Mismatch,
}

/// Probes `backend` every interval until `cancel` fires or the backend leaves its pool.
pub async fn run(
    backend: Arc<Backend>,
    check: Arc<CheckConfig>,
    tls: Option<BackendConnector>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(check.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let retired = backend.retired().clone();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = retired.cancelled() => return,
            _ = tick.tick() => {}
        }
        let result = tokio::select! {
            () = cancel.cancelled() => return,
            () = retired.cancelled() => return,
            r = probe(&backend, &check, tls.as_ref()) => r,
        };
        match result {
            Ok(()) => backend.record_success(check.rise),
            Err(e) => {
                tracing::debug!(backend = %backend.addr(), error = %e, "health check failed");
                backend.record_failure(check.fall, Some(e.to_string()));
            }
        }
    }
}

/// Runs one probe of `backend`.
///
/// # Errors
/// The probe failed or took longer than the check timeout.
pub async fn probe(
    backend: &Backend,
    check: &CheckConfig,
    tls: Option<&BackendConnector>,
) -> Result<(), CheckError> {
    tokio::time::timeout(check.timeout, probe_inner(backend, check, tls))
        .await
        .map_err(|_| CheckError::Timeout)?
}

async fn probe_inner(
    backend: &Backend,
    check: &CheckConfig,
    tls: Option<&BackendConnector>,
) -> Result<(), CheckError> {
    let addr = backend.addr();
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    match (check.kind, tls) {
        (CheckKind::None | CheckKind::Tcp, _) => Ok(()),
        (CheckKind::Tls, Some(tls)) => {
            let mut s = tls.connect(addr, stream).await?;
            // Close politely so the backend does not log a truncated session.
            let _ = s.shutdown().await;
            Ok(())
        }
        (CheckKind::Tls, None) => Err(CheckError::Io(io::Error::other(
            "tls check without backend tls",
        ))),
        (CheckKind::Expect, Some(tls)) => {
            let s = tls.connect(addr, stream).await?;
            expect(s, &check.send, &check.expect).await
        }
        (CheckKind::Expect, None) => expect(stream, &check.send, &check.expect).await,
    }
}

/// Sends `send`, then reads until `want` appears, at most [`MAX_EXPECT_READ`] bytes.
async fn expect<S>(mut s: S, send: &[u8], want: &[u8]) -> Result<(), CheckError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if !send.is_empty() {
        s.write_all(send).await?;
        s.flush().await?;
    }
    let mut got = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    loop {
        if got.windows(want.len()).any(|w| w == want) {
            let _ = s.shutdown().await;
            return Ok(());
        }
        if got.len() >= MAX_EXPECT_READ {
            return Err(CheckError::Mismatch);
        }
        let room = (MAX_EXPECT_READ - got.len()).min(buf.len());
        let n = s.read(&mut buf[..room]).await?;
        if n == 0 {
            return Err(CheckError::Mismatch);
        }
        got.extend_from_slice(&buf[..n]);
    }
}
