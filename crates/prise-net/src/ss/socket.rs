//! What `prise ss` knows of one socket, whichever source it came from.

use serde::Serialize;

/// The transport of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP over IPv4 or IPv6.
    Tcp,
    /// UDP over IPv4 or IPv6.
    Udp,
    /// A Unix domain socket (stream, datagram or seqpacket).
    Unix,
}

impl Proto {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Unix => "unix",
        }
    }
}

/// TCP figures from the kernel's `tcp_info` (netlink only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TcpStats {
    /// Smoothed round-trip time, microseconds.
    pub rtt_us: u32,
    /// Congestion window, segments.
    pub cwnd: u32,
    /// Segments retransmitted over the connection's life.
    pub retrans: u32,
}

/// One socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SocketInfo {
    /// Transport.
    pub proto: Proto,
    /// State name: `ESTABLISHED`, `LISTEN`, `TIME_WAIT`… (`UNCONN` for an
    /// unconnected UDP or Unix socket).
    pub state: &'static str,
    /// Bytes waiting to be read (listening sockets: connections waiting to be accepted).
    pub recv_q: u32,
    /// Bytes not yet acknowledged (listening sockets: the backlog).
    pub send_q: u32,
    /// Local address (`ip:port`, or a Unix path, `@name` for an abstract one).
    pub local: String,
    /// Peer address; `*` when none.
    pub peer: String,
    /// The socket's inode (0 when unknown).
    pub inode: u32,
    /// TCP figures, when the source has them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpStats>,
}

impl SocketInfo {
    /// The local port, for inet sockets.
    pub fn local_port(&self) -> Option<u16> {
        port_of(&self.local)
    }

    /// The peer port, for connected inet sockets.
    pub fn peer_port(&self) -> Option<u16> {
        port_of(&self.peer)
    }
}

fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit_once(':')?.1.parse().ok()
}

/// The name of a kernel TCP state number (`include/net/tcp_states.h`);
/// UDP and Unix sockets use the same numbers.
pub fn state_name(proto: Proto, state: u8) -> &'static str {
    match (proto, state) {
        (Proto::Tcp, 7) => "CLOSE",
        (_, 7) => "UNCONN",
        (_, 1) => "ESTABLISHED",
        (_, 2) => "SYN_SENT",
        (_, 3) | (_, 12) => "SYN_RECV",
        (_, 4) => "FIN_WAIT1",
        (_, 5) => "FIN_WAIT2",
        (_, 6) => "TIME_WAIT",
        (_, 8) => "CLOSE_WAIT",
        (_, 9) => "LAST_ACK",
        (_, 10) => "LISTEN",
        (_, 11) => "CLOSING",
        _ => "UNKNOWN",
    }
}

/// Every state name [`state_name`] gives, for `--state`.
pub const STATES: [&str; 13] = [
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
    "UNCONN",
    "UNKNOWN",
];

/// Formats an inet address and port as `ip:port` (`[ip]:port` for IPv6).
pub fn inet(ip: std::net::IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(ip, port).to_string()
}
