//! PROXY protocol headers (HAProxy's spec, v1 text and v2 binary) that tell a backend the
//! client's address. Pure functions over addresses; no I/O.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::config::ProxyProtocol;

/// The 12-byte signature that opens every v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Encodes the header of `version` for a connection from `src` (the client) to `dst` (the
/// proxy's listening address). Mixed address families are sent as IPv6 (v4-mapped).
pub fn encode(version: ProxyProtocol, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src_ip, dst_ip) = match (src.ip(), dst.ip()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (IpAddr::V4(a), IpAddr::V4(b)),
        (a, b) => (IpAddr::V6(to_v6(a)), IpAddr::V6(to_v6(b))),
    };
    match version {
        ProxyProtocol::V1 => {
            let fam = if src_ip.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {fam} {src_ip} {dst_ip} {} {}\r\n",
                src.port(),
                dst.port()
            )
            .into_bytes()
        }
        ProxyProtocol::V2 => {
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

    #[test]
    fn v1_ipv4() {
        let h = encode(
            ProxyProtocol::V1,
            "192.0.2.1:5000".parse().unwrap(),
            "198.51.100.2:80".parse().unwrap(),
        );
        assert_eq!(h, b"PROXY TCP4 192.0.2.1 198.51.100.2 5000 80\r\n");
    }

    #[test]
    fn v1_mixed_is_ipv6() {
        let h = encode(
            ProxyProtocol::V1,
            "192.0.2.1:5000".parse().unwrap(),
            "[::1]:80".parse().unwrap(),
        );
        assert_eq!(h, b"PROXY TCP6 ::ffff:192.0.2.1 ::1 5000 80\r\n");
    }

    #[test]
    fn v2_ipv4() {
        let h = encode(
            ProxyProtocol::V2,
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
            ProxyProtocol::V2,
            "[2001:db8::1]:1".parse().unwrap(),
            "[2001:db8::2]:2".parse().unwrap(),
        );
        assert_eq!(h.len(), 16 + 36);
        assert_eq!(&h[12..16], &[0x21, 0x21, 0, 36]);
    }
}
