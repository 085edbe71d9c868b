//! CONNECT tunnels: after `200 Connection Established`, bytes both ways
//! until both sides are done or the tunnel is idle for too long.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::connection::READ_CHUNK;

/// The answer that opens a tunnel.
pub(super) const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection Established\r\n\r\n";

/// Opens the tunnel and relays it. `early` holds bytes the client sent
/// after its CONNECT head (a TLS ClientHello sent at once). Returns the
/// bytes relayed to the client and to the target.
pub(super) async fn run(
    mut client: TcpStream,
    early: BytesMut,
    mut target: TcpStream,
    idle: Duration,
) -> (u64, u64) {
    if client.write_all(ESTABLISHED).await.is_err() {
        return (0, 0);
    }
    let mut up = early.len() as u64;
    if !early.is_empty() && target.write_all(&early).await.is_err() {
        return (0, up);
    }
    let mut down = 0u64;
    let (mut cr, mut cw) = client.split();
    let (mut tr, mut tw) = target.split();
    let mut a = vec![0u8; READ_CHUNK];
    let mut b = vec![0u8; READ_CHUNK];
    let (mut client_done, mut target_done) = (false, false);
    while !(client_done && target_done) {
        tokio::select! {
            r = cr.read(&mut a), if !client_done => match r {
                Ok(0) | Err(_) => {
                    client_done = true;
                    let _ = tw.shutdown().await;
                }
                Ok(n) => {
                    if tw.write_all(&a[..n]).await.is_err() {
                        break;
                    }
                    up += n as u64;
                }
            },
            r = tr.read(&mut b), if !target_done => match r {
                Ok(0) | Err(_) => {
                    target_done = true;
                    let _ = cw.shutdown().await;
                }
                Ok(n) => {
                    if cw.write_all(&b[..n]).await.is_err() {
                        break;
                    }
                    down += n as u64;
                }
            },
            () = tokio::time::sleep(idle) => {
                tracing::debug!("tunnel idle; closing");
                break;
            }
        }
    }
    (down, up)
}
