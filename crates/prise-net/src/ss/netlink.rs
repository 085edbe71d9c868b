//! The primary source: the kernel's sock_diag netlink interface
//! (`NETLINK_SOCK_DIAG`), with `inet_diag` for TCP and UDP (and `tcp_info`
//! for rtt, congestion window and retransmits) and `unix_diag` for Unix
//! sockets.
//!
//! The socket calls are rustix's safe wrappers; the messages are built and
//! parsed here as plain bytes (the layouts of `linux/netlink.h`,
//! `linux/inet_diag.h`, `linux/unix_diag.h` and `linux/tcp.h`), so no
//! `unsafe` is needed. Every length read from a reply is checked against
//! the bytes there; a malformed message ends the parse of its datagram.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use rustix::net::netlink::{self, SocketAddrNetlink};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType};

use super::socket::{Proto, SocketInfo, TcpStats, inet, state_name};

const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const AF_UNIX: u8 = 1;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// `INET_DIAG_INFO`: the attribute carrying `struct tcp_info`.
const INET_DIAG_INFO: u16 = 2;
/// Length of `struct inet_diag_msg`.
const INET_DIAG_MSG: usize = 72;
/// Length of `struct unix_diag_msg`.
const UNIX_DIAG_MSG: usize = 16;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_RQLEN: u16 = 4;
const UDIAG_SHOW_NAME: u32 = 1;
const UDIAG_SHOW_PEER: u32 = 4;
const UDIAG_SHOW_RQLEN: u32 = 16;
/// Offsets in `struct tcp_info` of `tcpi_rtt`, `tcpi_snd_cwnd`, `tcpi_total_retrans`.
const TCPI_RTT: usize = 68;
const TCPI_SND_CWND: usize = 80;
const TCPI_TOTAL_RETRANS: usize = 100;
/// Size of each receive from the netlink socket.
const RECV_BUF: usize = 64 << 10;
/// Bound on one dump: a kernel that stops answering does not hang `ss`.
const RECV_TIMEOUT: Duration = Duration::from_secs(2);
/// Cap on sockets collected from one dump.
pub const MAX_SOCKETS: usize = 1 << 20;

fn u16_ne(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_ne(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn header(len: usize, seq: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m
}

/// A dump request for every `protocol` socket of `family` in any state,
/// asking for `tcp_info` (`struct inet_diag_req_v2`).
pub fn inet_request(family: u8, protocol: u8, seq: u32) -> Vec<u8> {
    let mut m = header(NLMSG_HDR + 56, seq);
    m.extend_from_slice(&[family, protocol, 1 << (INET_DIAG_INFO - 1), 0]);
    m.extend_from_slice(&u32::MAX.to_ne_bytes());
    m.resize(NLMSG_HDR + 56, 0);
    m
}

/// A dump request for every Unix socket with its name, peer and queues
/// (`struct unix_diag_req`).
pub fn unix_request(seq: u32) -> Vec<u8> {
    let mut m = header(NLMSG_HDR + 24, seq);
    m.extend_from_slice(&[AF_UNIX, 0, 0, 0]);
    m.extend_from_slice(&u32::MAX.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&(UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN).to_ne_bytes());
    m.resize(NLMSG_HDR + 24, 0);
    m
}

/// Attributes (`struct rtattr`, 4-byte aligned) after a fixed part.
fn attributes(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16_ne(b, 0)?);
        let kind = u16_ne(b, 2)?;
        if len < 4 || len > b.len() {
            return None;
        }
        let value = &b[4..len];
        b = b.get((len + 3) & !3..).unwrap_or(&[]);
        Some((kind, value))
    })
}

fn inet_addr(family: u8, b: &[u8]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(b.get(..4)?).ok()?,
        ))),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(b.get(..16)?).ok()?,
        ))),
        _ => None,
    }
}

/// Parses one `inet_diag_msg` with its attributes.
pub fn parse_inet(msg: &[u8], proto: Proto) -> Option<SocketInfo> {
    if msg.len() < INET_DIAG_MSG {
        return None;
    }
    let family = msg[0];
    let state = msg[1];
    // inet_diag_sockid at 4: sport, dport (big-endian), src[16], dst[16], if, cookie.
    let sport = u16::from_be_bytes([msg[4], msg[5]]);
    let dport = u16::from_be_bytes([msg[6], msg[7]]);
    let src = inet_addr(family, &msg[8..24])?;
    let dst = inet_addr(family, &msg[24..40])?;
    let peer = if dport == 0 && dst.is_unspecified() {
        "*".to_owned()
    } else {
        inet(dst, dport)
    };
    let tcp = attributes(&msg[INET_DIAG_MSG..])
        .find(|(kind, _)| *kind == INET_DIAG_INFO)
        .and_then(|(_, info)| {
            Some(TcpStats {
                rtt_us: u32_ne(info, TCPI_RTT)?,
                cwnd: u32_ne(info, TCPI_SND_CWND)?,
                retrans: u32_ne(info, TCPI_TOTAL_RETRANS)?,
            })
        });
    Some(SocketInfo {
        proto,
        state: state_name(proto, state),
        recv_q: u32_ne(msg, 56)?,
        send_q: u32_ne(msg, 60)?,
        local: inet(src, sport),
        peer,
        inode: u32_ne(msg, 68)?,
        tcp: tcp.filter(|_| proto == Proto::Tcp),
    })
}

/// Parses one `unix_diag_msg` with its attributes.
pub fn parse_unix(msg: &[u8]) -> Option<SocketInfo> {
    if msg.len() < UNIX_DIAG_MSG {
        return None;
    }
    let state = msg[2];
    let inode = u32_ne(msg, 4)?;
    let (mut local, mut peer, mut queues) = ("*".to_owned(), "*".to_owned(), (0, 0));
    for (kind, value) in attributes(&msg[UNIX_DIAG_MSG..]) {
        match kind {
            UNIX_DIAG_NAME if !value.is_empty() => {
                local = match value.split_first() {
                    // An abstract name starts with a NUL byte.
                    Some((0, rest)) => format!("@{}", String::from_utf8_lossy(rest)),
                    _ => String::from_utf8_lossy(value.split(|b| *b == 0).next().unwrap_or(value))
                        .into_owned(),
                };
            }
            UNIX_DIAG_PEER => {
                if let Some(p) = u32_ne(value, 0).filter(|p| *p != 0) {
                    peer = format!("inode:{p}");
                }
            }
            UNIX_DIAG_RQLEN => queues = (u32_ne(value, 0)?, u32_ne(value, 4)?),
            _ => {}
        }
    }
    Some(SocketInfo {
        proto: Proto::Unix,
        state: state_name(Proto::Unix, state),
        recv_q: queues.0,
        send_q: queues.1,
        local,
        peer,
        inode,
        tcp: None,
    })
}

/// What one datagram of a dump held.
#[derive(Debug, Default)]
pub struct Batch {
    /// The sockets parsed.
    pub sockets: Vec<SocketInfo>,
    /// The dump is complete.
    pub done: bool,
    /// The kernel answered with this error number.
    pub error: Option<i32>,
}

/// Parses one datagram of a dump reply: netlink messages one after another.
/// `parse` turns a message's payload into a socket.
pub fn parse_datagram(mut b: &[u8], parse: impl Fn(&[u8]) -> Option<SocketInfo>) -> Batch {
    let mut batch = Batch::default();
    while b.len() >= NLMSG_HDR {
        let Some(len) = u32_ne(b, 0).and_then(|l| usize::try_from(l).ok()) else {
            break;
        };
        let kind = u16_ne(b, 4).unwrap_or(0);
        if len < NLMSG_HDR || len > b.len() {
            break;
        }
        let payload = &b[NLMSG_HDR..len];
        match kind {
            NLMSG_DONE => {
                batch.done = true;
                return batch;
            }
            NLMSG_ERROR => {
                let errno = u32_ne(payload, 0).map_or(0, |e| e as i32);
                batch.error = Some(-errno);
                batch.done = true;
                return batch;
            }
            SOCK_DIAG_BY_FAMILY => batch.sockets.extend(parse(payload)),
            _ => {}
        }
        b = b.get((len + 3) & !3..).unwrap_or(&[]);
    }
    batch
}

fn dump(
    fd: &std::os::fd::OwnedFd,
    request: &[u8],
    parse: impl Fn(&[u8]) -> Option<SocketInfo>,
    out: &mut Vec<SocketInfo>,
) -> std::io::Result<()> {
    rustix::net::sendto(
        fd,
        request,
        SendFlags::empty(),
        &SocketAddrNetlink::new(0, 0),
    )?;
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        let (n, _) = rustix::net::recv(fd, &mut buf[..], RecvFlags::empty())?;
        let batch = parse_datagram(&buf[..n], &parse);
        if let Some(errno) = batch.error {
            return Err(std::io::Error::from_raw_os_error(errno));
        }
        if out.len() + batch.sockets.len() > MAX_SOCKETS {
            return Err(std::io::Error::other("more sockets than ss collects"));
        }
        out.extend(batch.sockets);
        if batch.done {
            return Ok(());
        }
    }
}

/// Dumps every socket of the protocols in `want` over sock_diag.
///
/// # Errors
/// The netlink socket could not be opened (no sock_diag, or not allowed),
/// or a dump failed.
pub fn read_all(want: &[Proto]) -> std::io::Result<Vec<SocketInfo>> {
    let fd = rustix::net::socket(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        Some(netlink::SOCK_DIAG),
    )?;
    rustix::net::sockopt::set_socket_timeout(
        &fd,
        rustix::net::sockopt::Timeout::Recv,
        Some(RECV_TIMEOUT),
    )?;
    let mut out = Vec::new();
    let mut seq = 1;
    for (family, protocol, proto) in [
        (AF_INET, IPPROTO_TCP, Proto::Tcp),
        (AF_INET6, IPPROTO_TCP, Proto::Tcp),
        (AF_INET, IPPROTO_UDP, Proto::Udp),
        (AF_INET6, IPPROTO_UDP, Proto::Udp),
    ] {
        if want.contains(&proto) {
            dump(
                &fd,
                &inet_request(family, protocol, seq),
                |m| parse_inet(m, proto),
                &mut out,
            )?;
            seq += 1;
        }
    }
    if want.contains(&Proto::Unix) {
        dump(&fd, &unix_request(seq), parse_unix, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nlmsg(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDR + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(payload);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    fn inet_msg(state: u8, with_info: bool) -> Vec<u8> {
        let mut m = vec![AF_INET, state, 0, 0];
        m.extend_from_slice(&8080u16.to_be_bytes());
        m.extend_from_slice(&40000u16.to_be_bytes());
        m.extend_from_slice(&[127, 0, 0, 1]);
        m.extend_from_slice(&[0; 12]);
        m.extend_from_slice(&[127, 0, 0, 2]);
        m.extend_from_slice(&[0; 12]);
        m.extend_from_slice(&[0; 12]); // if, cookie
        m.extend_from_slice(&0u32.to_ne_bytes()); // expires
        m.extend_from_slice(&5u32.to_ne_bytes()); // rqueue
        m.extend_from_slice(&7u32.to_ne_bytes()); // wqueue
        m.extend_from_slice(&0u32.to_ne_bytes()); // uid
        m.extend_from_slice(&99u32.to_ne_bytes()); // inode
        if with_info {
            let mut info = vec![0u8; 104];
            info[TCPI_RTT..TCPI_RTT + 4].copy_from_slice(&1500u32.to_ne_bytes());
            info[TCPI_SND_CWND..TCPI_SND_CWND + 4].copy_from_slice(&10u32.to_ne_bytes());
            info[TCPI_TOTAL_RETRANS..TCPI_TOTAL_RETRANS + 4].copy_from_slice(&2u32.to_ne_bytes());
            m.extend_from_slice(&((4 + info.len()) as u16).to_ne_bytes());
            m.extend_from_slice(&INET_DIAG_INFO.to_ne_bytes());
            m.extend_from_slice(&info);
        }
        m
    }

    #[test]
    fn requests_have_the_kernel_layout() {
        let r = inet_request(AF_INET, IPPROTO_TCP, 7);
        assert_eq!(r.len(), 72);
        assert_eq!(u32_ne(&r, 0), Some(72));
        assert_eq!(&r[16..20], &[AF_INET, IPPROTO_TCP, 2, 0]);
        assert_eq!(unix_request(1).len(), 40);
    }

    #[test]
    fn a_dump_reply_is_parsed() {
        let mut dgram = nlmsg(SOCK_DIAG_BY_FAMILY, &inet_msg(1, true));
        dgram.extend(nlmsg(SOCK_DIAG_BY_FAMILY, &inet_msg(6, false)));
        let batch = parse_datagram(&dgram, |m| parse_inet(m, Proto::Tcp));
        assert!(!batch.done);
        let s = &batch.sockets;
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].local.as_str(), s[0].peer.as_str()),
            ("127.0.0.1:8080", "127.0.0.2:40000")
        );
        assert_eq!(
            (s[0].state, s[0].recv_q, s[0].send_q, s[0].inode),
            ("ESTABLISHED", 5, 7, 99)
        );
        assert_eq!(
            s[0].tcp,
            Some(TcpStats {
                rtt_us: 1500,
                cwnd: 10,
                retrans: 2
            })
        );
        assert_eq!((s[1].state, s[1].tcp), ("TIME_WAIT", None));
        let done = parse_datagram(&nlmsg(NLMSG_DONE, &[0; 4]), |m| parse_inet(m, Proto::Tcp));
        assert!(done.done && done.error.is_none());
        let err = parse_datagram(&nlmsg(NLMSG_ERROR, &(-1i32).to_ne_bytes()), |m| {
            parse_inet(m, Proto::Tcp)
        });
        assert_eq!(err.error, Some(1));
    }

    #[test]
    fn truncated_replies_never_panic() {
        let mut dgram = nlmsg(SOCK_DIAG_BY_FAMILY, &inet_msg(1, true));
        for cut in 0..dgram.len() {
            let _ = parse_datagram(&dgram[..cut], |m| parse_inet(m, Proto::Tcp));
            let _ = parse_datagram(&dgram[..cut], parse_unix);
        }
        // A length field pointing past the end.
        dgram[0] = 0xff;
        assert!(
            parse_datagram(&dgram, |m| parse_inet(m, Proto::Tcp))
                .sockets
                .is_empty()
        );
    }

    #[test]
    fn unix_names_and_queues() {
        let mut m = vec![AF_UNIX, 1, 10, 0];
        m.extend_from_slice(&1234u32.to_ne_bytes());
        m.extend_from_slice(&[0; 8]);
        let name = b"\0prise-test";
        m.extend_from_slice(&((4 + name.len()) as u16).to_ne_bytes());
        m.extend_from_slice(&UNIX_DIAG_NAME.to_ne_bytes());
        m.extend_from_slice(name);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m.extend_from_slice(&12u16.to_ne_bytes());
        m.extend_from_slice(&UNIX_DIAG_RQLEN.to_ne_bytes());
        m.extend_from_slice(&3u32.to_ne_bytes());
        m.extend_from_slice(&128u32.to_ne_bytes());
        let s = parse_unix(&m).unwrap();
        assert_eq!(
            (s.local.as_str(), s.state, s.recv_q, s.send_q),
            ("@prise-test", "LISTEN", 3, 128)
        );
    }
}
