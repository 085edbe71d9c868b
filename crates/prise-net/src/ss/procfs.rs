//! The fallback source: `/proc/net/{tcp,tcp6,udp,udp6,unix}`. Parsing is
//! pure (text in, sockets out); unparsable lines are skipped. These files
//! carry no rtt or congestion window.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::socket::{Proto, SocketInfo, inet, state_name};

/// Parses a hex address `0100007F:1F90` (IPv4) or 32 hex digits and a port
/// (IPv6). The kernel prints each 32-bit word of the address as a
/// host-order integer, so its native-endian bytes are the address's bytes.
fn parse_addr(field: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::to_ne_bytes);
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(addr)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(addr.get(i * 8..i * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some((ip, port))
}

/// Parses `/proc/net/tcp`, `tcp6`, `udp` or `udp6`.
pub fn parse_inet(text: &str, proto: Proto) -> Vec<SocketInfo> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, peer) = (parse_addr(f.get(1)?)?, parse_addr(f.get(2)?)?);
            let state = u8::from_str_radix(f.get(3)?, 16).ok()?;
            let (tx, rx) = f.get(4)?.split_once(':')?;
            let peer = if peer.1 == 0 && peer.0.is_unspecified() {
                "*".to_owned()
            } else {
                inet(peer.0, peer.1)
            };
            Some(SocketInfo {
                proto,
                state: state_name(proto, state),
                recv_q: u32::from_str_radix(rx, 16).ok()?,
                send_q: u32::from_str_radix(tx, 16).ok()?,
                local: inet(local.0, local.1),
                peer,
                inode: f.get(9)?.parse().ok()?,
                tcp: None,
            })
        })
        .collect()
}

/// `__SO_ACCEPTCON` in the flags of `/proc/net/unix`: a listening socket.
const ACCEPTCON: u32 = 1 << 16;

/// Parses `/proc/net/unix`.
pub fn parse_unix(text: &str) -> Vec<SocketInfo> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
            let st = u8::from_str_radix(f.get(5)?, 16).ok()?;
            let state = if flags & ACCEPTCON != 0 {
                "LISTEN"
            } else {
                match st {
                    3 => "ESTABLISHED",
                    2 => "SYN_SENT",
                    4 => "CLOSING",
                    _ => "UNCONN",
                }
            };
            Some(SocketInfo {
                proto: Proto::Unix,
                state,
                recv_q: 0,
                send_q: 0,
                local: f.get(7).map_or("*", |p| p).to_owned(),
                peer: "*".to_owned(),
                inode: f.get(6)?.parse().ok()?,
                tcp: None,
            })
        })
        .collect()
}

/// Reads every socket the `/proc/net` files list.
///
/// # Errors
/// None of the files could be read.
pub fn read_all(want: &[Proto]) -> std::io::Result<Vec<SocketInfo>> {
    let mut out = Vec::new();
    let mut read_any = None;
    for (file, proto) in [
        ("tcp", Proto::Tcp),
        ("tcp6", Proto::Tcp),
        ("udp", Proto::Udp),
        ("udp6", Proto::Udp),
        ("unix", Proto::Unix),
    ] {
        if !want.contains(&proto) {
            continue;
        }
        match std::fs::read_to_string(format!("/proc/net/{file}")) {
            Ok(text) => {
                read_any = Some(Ok(()));
                out.extend(match proto {
                    Proto::Unix => parse_unix(&text),
                    p => parse_inet(&text, p),
                });
            }
            Err(e) => {
                if read_any.is_none() {
                    read_any = Some(Err(e));
                }
            }
        }
    }
    read_any.unwrap_or(Ok(()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_lines_are_parsed() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000002 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:D431 0100007F:1F90 01 00000010:00000000 00:00000000 00000000  1000        0 4243 1\n";
        let got = if cfg!(target_endian = "little") {
            parse_inet(text, Proto::Tcp)
        } else {
            return;
        };
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].local, "127.0.0.1:8080");
        assert_eq!(
            (got[0].state, got[0].peer.as_str(), got[0].recv_q),
            ("LISTEN", "*", 2)
        );
        assert_eq!(got[1].peer, "127.0.0.1:8080");
        assert_eq!(
            (got[1].state, got[1].send_q, got[1].inode),
            ("ESTABLISHED", 16, 4243)
        );
    }

    #[test]
    fn tcp6_and_unix_lines_are_parsed() {
        if cfg!(target_endian = "big") {
            return;
        }
        let text = "header\n   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1\n";
        let got = parse_inet(text, Proto::Tcp);
        assert_eq!(got[0].local, "[::1]:80");
        let unix = "Num       RefCount Protocol Flags    Type St Inode Path\n0000000000000000: 00000002 00000000 00010000 0001 01 1234 /run/x.sock\n0000000000000000: 00000003 00000000 00000000 0001 03 1235\nbroken\n";
        let got = parse_unix(unix);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].state, got[0].local.as_str()),
            ("LISTEN", "/run/x.sock")
        );
        assert_eq!((got[1].state, got[1].local.as_str()), ("ESTABLISHED", "*"));
    }
}
