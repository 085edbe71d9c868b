//! The accept step both listeners share: accept, set `TCP_NODELAY`, learn
//! the client's address, and admit it by the per-IP limits (a refused client
//! gets its refusal from [`ratelimit::admit`] and is dropped); then the
//! listener's handler runs in a task of its own.
//!
//! The client's address is the peer's, except from a trusted proxy
//! (`--trust-proxy`, [`crate::security::trust`]): there a PROXY protocol
//! header is read first, in the connection's own task (so a slow balancer
//! never holds up the accept loop), under `--header-timeout`, at most
//! [`prise_proto::proxy_header::MAX_HEADER`] bytes, exactly the header's bytes
//! (the client's own stay in the socket for TLS, HTTP or the line protocol).
//! On the TCP listener the header is required (the server speaks first, so
//! there is nothing else to wait for); on the HTTP listener it is read when
//! the first bytes are one, and a plain connection is served as it is.

use crate::Shared;
use crate::security::ratelimit::{self, IpPermit, Listener};
use prise_proto::proxy_header::{self, Addresses, Decoded, HeaderError, V2_SIGNATURE};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Pause after a failed accept (out of file descriptors and the like), so
/// the loop backs off instead of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// Most connections from trusted proxies whose header is still being read;
/// beyond it new ones are dropped until one finishes.
pub(crate) const MAX_PENDING_HEADERS: usize = 1024;
/// Between two looks at the first bytes of a trusted connection that are
/// not yet enough to tell a PROXY header from HTTP (a rare, split first
/// segment).
const PEEK_AGAIN: Duration = Duration::from_millis(5);

/// Why a trusted peer's PROXY header was not taken.
#[derive(Debug, thiserror::Error)]
enum ProxyReadError {
    /// The header is malformed or over its caps.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// The socket failed or closed before the header ended.
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
    /// It did not arrive within `--header-timeout`.
    #[error("no PROXY protocol header within the header timeout")]
    Timeout,
}

/// Accepts until shutdown; every admitted connection runs `handle(stream,
/// client address, permit)` in a task of the server's tracker.
pub(crate) async fn serve<F, Fut>(
    listener: TcpListener,
    shared: Arc<Shared>,
    kind: Listener,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr, IpPermit) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handle = Arc::new(handle);
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HEADERS));
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, listener = ?kind, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if !shared.security.trusted.contains(peer.ip()) {
            if let Some(permit) = ratelimit::admit(&shared, &stream, peer, peer, kind) {
                shared.tracker.spawn(handle(stream, peer, permit));
            }
            continue;
        }
        let Ok(slot) = Arc::clone(&pending).try_acquire_owned() else {
            ratelimit::refused("proxy_header_backlog");
            tracing::warn!(%peer, "too many PROXY headers being read; connection dropped");
            continue;
        };
        let shared2 = Arc::clone(&shared);
        let handle = Arc::clone(&handle);
        shared.tracker.spawn(async move {
            let mut stream = stream;
            let timeout = shared2.security.header_timeout;
            let required = kind == Listener::Tcp;
            let read = tokio::time::timeout(timeout, read_header(&mut stream, required));
            let client = match read.await.unwrap_or(Err(ProxyReadError::Timeout)) {
                Ok(Some(Addresses::Proxied { src, .. })) => src,
                Ok(Some(Addresses::Local) | None) => peer,
                Err(e) => {
                    ratelimit::refused("proxy_header");
                    tracing::debug!(%peer, error = %e, "PROXY protocol header refused");
                    return;
                }
            };
            drop(slot);
            if let Some(permit) = ratelimit::admit(&shared2, &stream, peer, client, kind) {
                handle(stream, client, permit).await;
            }
        });
    }
}

/// Reads a PROXY header from a trusted peer: `None` when the connection is
/// plain (only when not `required`).
async fn read_header(
    stream: &mut TcpStream,
    required: bool,
) -> Result<Option<Addresses>, ProxyReadError> {
    if !required && !starts_with_header(stream).await? {
        return Ok(None);
    }
    let mut buf = Vec::with_capacity(64);
    loop {
        match proxy_header::decode(&buf)? {
            Decoded::Header { addrs, .. } => return Ok(Some(addrs)),
            Decoded::Need(n) => {
                // `decode` never asks past MAX_HEADER, so `buf` stays capped.
                let old = buf.len();
                buf.resize(old + n, 0);
                stream.read_exact(&mut buf[old..]).await?;
            }
        }
    }
}

/// Whether the first bytes (looked at, not read) open a PROXY header.
async fn starts_with_header(stream: &TcpStream) -> Result<bool, ProxyReadError> {
    let mut first = [0u8; V2_SIGNATURE.len()];
    loop {
        let n = stream.peek(&mut first).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        let seen = &first[..n];
        match proxy_header::decode(seen) {
            Err(HeaderError::NotProxy) => return Ok(false),
            _ if seen.starts_with(b"PROXY ") || n == V2_SIGNATURE.len() => return Ok(true),
            // A prefix of a signature so far: wait for the next bytes.
            _ => tokio::time::sleep(PEEK_AGAIN).await,
        }
    }
}
