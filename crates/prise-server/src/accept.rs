//! The accept step both listeners share: accept, set `TCP_NODELAY`, and
//! admit by the per-IP limits (a refused client gets its refusal from
//! [`ratelimit::admit`] and is dropped).

use crate::Shared;
use crate::security::ratelimit::{self, IpPermit, Listener};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Pause after a failed accept (out of file descriptors and the like), so
/// the loop backs off instead of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// The next admitted connection, or `None` once the server shuts down.
pub(crate) async fn admitted(
    listener: &TcpListener,
    shared: &Shared,
    kind: Listener,
) -> Option<(TcpStream, SocketAddr, IpPermit)> {
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return None,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                if let Some(permit) = ratelimit::admit(shared, &stream, peer, kind) {
                    return Some((stream, peer, permit));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, listener = ?kind, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}
