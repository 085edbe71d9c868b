//! Moving bytes both ways between a client and a backend, through user-space buffers.
//!
//! Each direction copies until its reader reaches end of stream, then shuts down the writing
//! side of the other end (a half-close), so a client that stops writing still gets the whole
//! reply, and a backend that stops writing still gets the rest of the request. The relay
//! ends when both directions have ended, when either fails, on the idle timeout, or when
//! `stop` fires.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::stats::Stats;

/// Bytes moved by a relay, per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transferred {
    /// Client to backend.
    pub upstream: u64,
    /// Backend to client.
    pub downstream: u64,
}

/// Why a relay ended early.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A read, write or splice failed.
    #[error("relay i/o: {0}")]
    Io(#[from] io::Error),
    /// No byte moved for the idle timeout.
    #[error("idle timeout")]
    Idle,
    /// The proxy is shutting down and the drain deadline passed.
    #[error("stopped")]
    Stopped,
}

/// Time of the last byte moved, shared by both directions of one relay.
#[derive(Debug)]
pub(crate) struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Completes once no activity was seen for `idle`; never completes for `None`.
    pub(crate) async fn idle(&self, idle: Option<Duration>) {
        let Some(idle) = idle else {
            return std::future::pending().await;
        };
        loop {
            let deadline = self.last() + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// Runs a relay body under the idle timeout and the stop token.
pub(crate) async fn supervise<F>(
    body: F,
    activity: &Activity,
    idle: Option<Duration>,
    stop: &CancellationToken,
) -> Result<Transferred, RelayError>
where
    F: Future<Output = io::Result<Transferred>>,
{
    tokio::select! {
        r = body => Ok(r?),
        () = activity.idle(idle) => Err(RelayError::Idle),
        () = stop.cancelled() => Err(RelayError::Stopped),
    }
}

/// Relays between two already split streams with buffers of `buf_size` bytes per direction.
///
/// # Errors
/// The first I/O error of either direction, [`RelayError::Idle`] or [`RelayError::Stopped`].
#[allow(clippy::too_many_arguments)]
pub(crate) async fn copy_halves<CR, CW, BR, BW>(
    client_r: CR,
    client_w: CW,
    backend_r: BR,
    backend_w: BW,
    buf_size: usize,
    idle: Option<Duration>,
    stop: &CancellationToken,
    stats: &Arc<Stats>,
) -> Result<Transferred, RelayError>
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    BR: AsyncRead + Unpin,
    BW: AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let body = async {
        let (upstream, downstream) = tokio::try_join!(
            copy_one(client_r, backend_w, buf_size, &activity, &stats.bytes_up),
            copy_one(backend_r, client_w, buf_size, &activity, &stats.bytes_down),
        )?;
        Ok(Transferred {
            upstream,
            downstream,
        })
    };
    supervise(body, &activity, idle, stop).await
}

async fn copy_one<R, W>(
    mut r: R,
    mut w: W,
    buf_size: usize,
    activity: &Activity,
    counter: &AtomicU64,
) -> io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; buf_size];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf).await {
            Ok(n) => n,
            // A TLS peer that closes TCP without close_notify: treat as end of stream.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e),
        };
        if n == 0 {
            // Pass the half-close on; the peer may already be gone, which is not an error
            // for the direction that finished.
            let _ = w.shutdown().await;
            return Ok(total);
        }
        w.write_all(&buf[..n]).await?;
        activity.touch();
        total += n as u64;
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}
