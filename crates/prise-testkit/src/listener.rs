//! Free loopback ports, and waiting for a listener to open or close.

use std::net::{SocketAddr, TcpListener, UdpSocket};

use tokio::net::TcpStream;

use crate::WAIT;

/// A TCP port on 127.0.0.1 that was free a moment ago: bound and released
/// at once, for a program that must be told its port before it starts.
pub fn free_tcp_port() -> u16 {
    free_tcp_addr().port()
}

/// [`free_tcp_port`] as an address on 127.0.0.1.
pub fn free_tcp_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free tcp port")
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free udp port")
        .port()
}

/// Waits (bounded by [`WAIT`]) until `addr` accepts a TCP connection.
///
/// # Panics
/// When nothing listens there in time.
pub async fn wait_until_accepting(addr: SocketAddr) {
    wait_for_listener(addr, true).await;
}

/// Waits (bounded by [`WAIT`]) until `addr` refuses TCP connections.
///
/// # Panics
/// When it still accepts them at the deadline.
pub async fn wait_until_refusing(addr: SocketAddr) {
    wait_for_listener(addr, false).await;
}

/// Connects to `addr` until a connection succeeds (`open`) or fails.
async fn wait_for_listener(addr: SocketAddr, open: bool) {
    tokio::time::timeout(WAIT, async {
        while TcpStream::connect(addr).await.is_ok() != open {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{addr} accepting: still {} at the deadline", !open));
}
