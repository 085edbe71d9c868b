//! PROXY protocol headers (HAProxy's spec, v1 text and v2 binary) that carry a client's
//! address across a balancer: [`encode`] writes one (`prise proxy --proxy-protocol`),
//! [`decode`] reads one (`prise proxy --accept-proxy`, `prise serve --trust-proxy`). Pure
//! functions over bytes and addresses; no I/O.
//!
//! [`decode`] never asks for a byte past the end of the header, so the caller can read
//! exactly what it asks for and leave the client's own data in the socket (for TLS or
//! splice). Every size is capped: a v1 line at [`V1_MAX`] bytes, a v2 address block (with
//! its TLVs) at [`MAX_V2_LEN`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Which header [`encode`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The human-readable v1 line.
    V1,
    /// The binary v2 header.
    V2,
}

/// The 12-byte signature that opens every v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 line, CRLF included (the spec's limit).
pub const V1_MAX: usize = 107;
/// Longest v2 address block accepted, TLVs included: a UNIX address block is 216 bytes and
/// upstream balancers add a few TLVs; the 16-bit length field would allow 64 KiB.
pub const MAX_V2_LEN: usize = 1024;
/// Longest header of either version: [`decode`] never asks for a byte past it.
pub const MAX_HEADER: usize = 16 + MAX_V2_LEN;
/// Shortest header of either version (`PROXY UNKNOWN\r\n`): reading this many bytes first
/// cannot read past any header.
pub const MIN_HEADER: usize = 15;
const V1_PREFIX: &[u8] = b"PROXY ";

/// The addresses a header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addresses {
    /// The original client (`src`) and the address it connected to (`dst`).
    Proxied {
        /// The client.
        src: SocketAddr,
        /// Where the client connected.
        dst: SocketAddr,
    },
    /// No addresses (v2 `LOCAL`, v1 `UNKNOWN`, or a family other than TCP/UDP over IP):
    /// the connection's own addresses stand.
    Local,
}

/// What [`decode`] found so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// A whole header of `len` bytes (the entire input).
    Header {
        /// Its addresses.
        addrs: Addresses,
        /// Its length.
        len: usize,
    },
    /// At least this many more bytes are needed, and reading them cannot go past the header.
    Need(usize),
}

/// Why a header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The input starts with neither the v1 nor the v2 signature.
    #[error("not a PROXY protocol header")]
    NotProxy,
    /// A v1 line longer than 107 bytes or a v2 block longer than the cap.
    #[error("PROXY protocol header too long")]
    TooLong,
    /// A v2 version other than 2, or a command other than LOCAL and PROXY.
    #[error("unsupported PROXY protocol version or command")]
    Unsupported,
    /// A v2 address family with an address block too short for it, or unknown.
    #[error("bad PROXY protocol v2 address block")]
    BadAddress,
    /// A v1 line that does not parse.
    #[error("bad PROXY protocol v1 line")]
    BadLine,
}

/// Decodes a header at the start of `buf`, which must hold nothing after it (read only
/// what [`Decoded::Need`] asks for).
///
/// # Errors
/// The input is not a valid header, or is longer than the caps.
pub fn decode(buf: &[u8]) -> Result<Decoded, HeaderError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    let v2 = buf[..n] == V2_SIGNATURE[..n];
    let m = buf.len().min(V1_PREFIX.len());
    let v1 = buf[..m] == V1_PREFIX[..m];
    if !v1 && !v2 {
        return Err(HeaderError::NotProxy);
    }
    if buf.len() < MIN_HEADER {
        return Ok(Decoded::Need(MIN_HEADER - buf.len()));
    }
    if v2 { decode_v2(buf) } else { decode_v1(buf) }
}

fn decode_v2(buf: &[u8]) -> Result<Decoded, HeaderError> {
    if buf.len() < 16 {
        return Ok(Decoded::Need(16 - buf.len()));
    }
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0f);
    if version != 2 || command > 1 {
        return Err(HeaderError::Unsupported);
    }
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > MAX_V2_LEN {
        return Err(HeaderError::TooLong);
    }
    let total = 16 + len;
    if buf.len() < total {
        return Ok(Decoded::Need(total - buf.len()));
    }
    let block = &buf[16..total];
    let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
    let addrs = match (command, buf[13] >> 4) {
        // LOCAL: a health check of the upstream balancer itself.
        (0, _) => Addresses::Local,
        // AF_INET
        (_, 1) if len >= 12 => {
            let ip = |at: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    block[at],
                    block[at + 1],
                    block[at + 2],
                    block[at + 3],
                ))
            };
            Addresses::Proxied {
                src: SocketAddr::new(ip(0), port(8)),
                dst: SocketAddr::new(ip(4), port(10)),
            }
        }
        // AF_INET6
        (_, 2) if len >= 36 => {
            let ip = |at: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&block[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(o))
            };
            Addresses::Proxied {
                src: SocketAddr::new(ip(0), port(32)),
                dst: SocketAddr::new(ip(16), port(34)),
            }
        }
        // AF_UNSPEC and AF_UNIX carry no IP address.
        (_, 0 | 3) => Addresses::Local,
        _ => return Err(HeaderError::BadAddress),
    };
    Ok(Decoded::Header { addrs, len: total })
}

fn decode_v1(buf: &[u8]) -> Result<Decoded, HeaderError> {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() >= V1_MAX {
            return Err(HeaderError::TooLong);
        }
        return Ok(Decoded::Need(1));
    };
    if end + 1 != buf.len() || end == 0 || buf[end - 1] != b'\r' {
        return Err(HeaderError::BadLine);
    }
    let line = std::str::from_utf8(&buf[..end - 1]).map_err(|_| HeaderError::BadLine)?;
    let parts: Vec<&str> = line.split(' ').collect();
    let addrs = match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Addresses::Local,
        ["PROXY", fam @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let ip = |s: &str| -> Result<IpAddr, HeaderError> {
                let ip: IpAddr = s.parse().map_err(|_| HeaderError::BadLine)?;
                if ip.is_ipv4() == (*fam == "TCP4") {
                    Ok(ip)
                } else {
                    Err(HeaderError::BadLine)
                }
            };
            let port = |s: &str| -> Result<u16, HeaderError> {
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(HeaderError::BadLine);
                }
                s.parse().map_err(|_| HeaderError::BadLine)
            };
            Addresses::Proxied {
                src: SocketAddr::new(ip(src)?, port(sport)?),
                dst: SocketAddr::new(ip(dst)?, port(dport)?),
            }
        }
        _ => return Err(HeaderError::BadLine),
    };
    Ok(Decoded::Header {
        addrs,
        len: buf.len(),
    })
}

/// Encodes the header of `version` for a connection from `src` (the client) to `dst` (the
/// proxy's listening address). Mixed address families are sent as IPv6 (v4-mapped).
pub fn encode(version: Version, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src_ip, dst_ip) = match (src.ip(), dst.ip()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (IpAddr::V4(a), IpAddr::V4(b)),
        (a, b) => (IpAddr::V6(to_v6(a)), IpAddr::V6(to_v6(b))),
    };
    match version {
        Version::V1 => {
            let fam = if src_ip.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {fam} {src_ip} {dst_ip} {} {}\r\n",
                src.port(),
                dst.port()
            )
            .into_bytes()
        }
        Version::V2 => {
            let mut out = Vec::with_capacity(16 + 36);
            out.extend_from_slice(&V2_SIGNATURE);
            out.push(0x21); // version 2, command PROXY
            match (src_ip, dst_ip) {
                (IpAddr::V4(a), IpAddr::V4(b)) => {
                    out.push(0x11); // AF_INET, STREAM
                    out.extend_from_slice(&12u16.to_be_bytes());
                    out.extend_from_slice(&a.octets());
                    out.extend_from_slice(&b.octets());
                }
                (a, b) => {
                    out.push(0x21); // AF_INET6, STREAM
                    out.extend_from_slice(&36u16.to_be_bytes());
                    out.extend_from_slice(&to_v6(a).octets());
                    out.extend_from_slice(&to_v6(b).octets());
                }
            }
            out.extend_from_slice(&src.port().to_be_bytes());
            out.extend_from_slice(&dst.port().to_be_bytes());
            out
        }
    }
}

fn to_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` the way the server reads: exactly what `decode` asks for.
    fn feed(input: &[u8]) -> Result<(Addresses, usize), HeaderError> {
        let mut have = 0;
        loop {
            match decode(&input[..have])? {
                Decoded::Header { addrs, len } => return Ok((addrs, len)),
                Decoded::Need(n) => {
                    assert!(n > 0);
                    if have + n > input.len() {
                        return Err(HeaderError::BadLine); // truncated input in the test
                    }
                    have += n;
                }
            }
        }
    }

    #[test]
    fn decodes_what_encode_writes_and_stops_at_its_end() {
        let src: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let dst: SocketAddr = "198.51.100.2:80".parse().unwrap();
        let src6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        let dst6: SocketAddr = "[2001:db8::2]:2".parse().unwrap();
        for v in [Version::V1, Version::V2] {
            for (s, d) in [(src, dst), (src6, dst6)] {
                let mut h = encode(v, s, d);
                let len = h.len();
                h.extend_from_slice(b"client data after the header");
                assert_eq!(
                    feed(&h),
                    Ok((Addresses::Proxied { src: s, dst: d }, len)),
                    "{v:?}"
                );
            }
        }
    }

    #[test]
    fn local_and_unknown_keep_the_connection_addresses() {
        assert_eq!(feed(b"PROXY UNKNOWN\r\n"), Ok((Addresses::Local, 15)));
        assert_eq!(
            feed(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").map(|r| r.0),
            Ok(Addresses::Local)
        );
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(feed(&local), Ok((Addresses::Local, 16)));
        // PROXY with a UNIX family: no IP to use.
        let mut unix = V2_SIGNATURE.to_vec();
        unix.extend_from_slice(&[0x21, 0x31, 0, 216]);
        unix.extend_from_slice(&[0u8; 216]);
        assert_eq!(feed(&unix), Ok((Addresses::Local, 232)));
    }

    #[test]
    fn refuses_malformed_headers() {
        assert_eq!(decode(b"GET / HTTP/1.1\r\n"), Err(HeaderError::NotProxy));
        assert_eq!(decode(b"\r\n\r\nX"), Err(HeaderError::NotProxy));
        assert_eq!(
            feed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
            Err(HeaderError::BadLine)
        );
        assert_eq!(
            feed(b"PROXY TCP4 ::1 ::1 1 2\r\n"),
            Err(HeaderError::BadLine)
        );
        assert_eq!(
            feed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n"),
            Err(HeaderError::BadLine)
        );
        assert_eq!(
            feed(b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n"),
            Err(HeaderError::BadLine)
        );
        assert_eq!(
            feed(b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"),
            Err(HeaderError::BadLine)
        );
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(120));
        assert_eq!(feed(long.as_bytes()), Err(HeaderError::TooLong));
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(decode(&big), Err(HeaderError::TooLong));
        let mut v3 = V2_SIGNATURE.to_vec();
        v3.extend_from_slice(&[0x31, 0x11, 0, 12]);
        assert_eq!(decode(&v3), Err(HeaderError::Unsupported));
        let mut short = V2_SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert_eq!(feed(&short), Err(HeaderError::BadAddress));
    }

    #[test]
    fn any_bytes_give_an_answer_without_panicking() {
        // A cheap exhaustive-ish sweep over short inputs after each signature.
        for prefix in [&V2_SIGNATURE[..], V1_PREFIX] {
            for a in 0..=255u8 {
                for b in [0u8, 1, 0x11, 0x21, 0xff] {
                    let mut input = prefix.to_vec();
                    input.extend_from_slice(&[a, b, a, b]);
                    let _ = decode(&input);
                    input.extend_from_slice(b"\r\n");
                    let _ = decode(&input);
                }
            }
        }
    }

    #[test]
    fn v1_ipv4() {
        let h = encode(
            Version::V1,
            "192.0.2.1:5000".parse().unwrap(),
            "198.51.100.2:80".parse().unwrap(),
        );
        assert_eq!(h, b"PROXY TCP4 192.0.2.1 198.51.100.2 5000 80\r\n");
    }

    #[test]
    fn v1_mixed_is_ipv6() {
        let h = encode(
            Version::V1,
            "192.0.2.1:5000".parse().unwrap(),
            "[::1]:80".parse().unwrap(),
        );
        assert_eq!(h, b"PROXY TCP6 ::ffff:192.0.2.1 ::1 5000 80\r\n");
    }

    #[test]
    fn v2_ipv4() {
        let h = encode(
            Version::V2,
            "192.0.2.1:5000".parse().unwrap(),
            "198.51.100.2:80".parse().unwrap(),
        );
        let mut want = V2_SIGNATURE.to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0, 12, 192, 0, 2, 1, 198, 51, 100, 2]);
        want.extend_from_slice(&[0x13, 0x88, 0, 80]);
        assert_eq!(h, want);
    }

    #[test]
    fn v2_ipv6_length() {
        let h = encode(
            Version::V2,
            "[2001:db8::1]:1".parse().unwrap(),
            "[2001:db8::2]:2".parse().unwrap(),
        );
        assert_eq!(h.len(), 16 + 36);
        assert_eq!(&h[12..16], &[0x21, 0x21, 0, 36]);
    }
}
