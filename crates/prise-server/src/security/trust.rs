//! Trusted proxies (`--trust-proxy CIDR,...`): the balancers in front of the
//! hub whose word on the client's address is taken.
//!
//! From a peer inside one of these networks the listeners read a PROXY
//! protocol header (v1 or v2, [`prise_proto::proxy_header`]) at accept, and
//! the HTTP side reads `X-Forwarded-For`; the client's address they carry is
//! the one per-IP limits, logs, `/api/sessions` and hooks see. From any other
//! peer neither is believed: a PROXY header is not looked for (the bytes are
//! the client's own) and `X-Forwarded-For` is ignored.
//!
//! ```text
//!  peer ∈ trusted? ── no ──▶ the peer is the client
//!        │ yes
//!        ▼
//!  TCP listener: a PROXY header is required (the server speaks first)
//!  HTTP listener: a PROXY header if the first bytes are one, else plain
//!        ▼
//!  HTTP request: X-Forwarded-For, right to left, skipping trusted hops:
//!                the first untrusted address is the client
//! ```

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Most `X-Forwarded-For` entries looked at, from the right: a chain of
/// trusted balancers is short, and the header is the client's to fill.
pub const MAX_FORWARDED_HOPS: usize = 16;

/// One network: an address and a prefix length (`10.0.0.0/8`, `::1/128`, or
/// a bare address for one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

/// Why a `--trust-proxy` entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The address part is not an IP address.
    #[error("{0:?} is not an IP address or network (like 10.0.0.0/8)")]
    Address(String),
    /// The prefix length is not a number within the family's width.
    #[error("prefix length {0:?} is not 0-32 (IPv4) or 0-128 (IPv6)")]
    Prefix(String),
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::Address(addr.to_owned()))?;
        let width = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= width)
                .ok_or_else(|| CidrError::Prefix(p.to_owned()))?,
        };
        Ok(Self { net, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

fn bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

impl Cidr {
    /// Whether `ip` lies in the network (an IPv4-mapped IPv6 address counts
    /// as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if ip.is_ipv4() != self.net.is_ipv4() {
            return false;
        }
        let (a, width) = bits(ip);
        let (n, _) = bits(self.net);
        let shift = u32::from(width - self.prefix);
        // A shift by the whole width (prefix 0) matches everything.
        a.checked_shr(shift).unwrap_or(0) == n.checked_shr(shift).unwrap_or(0)
    }
}

/// The trusted networks.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<Cidr>,
}

impl TrustedProxies {
    /// From the `--trust-proxy` list.
    pub fn new(nets: Vec<Cidr>) -> Self {
        Self { nets }
    }

    /// No network is trusted (the default).
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// The client behind `hop` (the connection's address, after any PROXY
    /// header) given the request's `X-Forwarded-For` values: `hop` itself
    /// unless it is trusted; then the right-most address of the header that
    /// is not trusted, or the left-most one when every entry is trusted.
    /// A malformed entry stops the walk there (what is left of it is the
    /// client's to forge). The port of an address from the header is 0.
    pub fn client<'a>(
        &self,
        hop: SocketAddr,
        forwarded: impl DoubleEndedIterator<Item = &'a str>,
    ) -> SocketAddr {
        if !self.contains(hop.ip()) {
            return hop;
        }
        let mut client = hop;
        let entries = forwarded.rev().flat_map(|v| v.rsplit(','));
        for entry in entries.take(MAX_FORWARDED_HOPS) {
            let Some(ip) = parse_forwarded(entry) else {
                break;
            };
            client = SocketAddr::new(ip, 0);
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, perhaps with a port
/// (`1.2.3.4:5`, `[::1]:5`).
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Some(ip);
    }
    e.parse::<SocketAddr>().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|s| s.parse().unwrap()).collect())
    }

    #[test]
    fn parses_networks_and_hosts() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.9.9.9".parse().unwrap()));
        let h: Cidr = "127.0.0.1".parse().unwrap();
        assert_eq!(h.to_string(), "127.0.0.1/32");
        assert!(h.contains("127.0.0.1".parse().unwrap()));
        assert!(!h.contains("127.0.0.2".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        assert!(!all.contains("::2".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(
            "::/0"
                .parse::<Cidr>()
                .unwrap()
                .contains("::1".parse().unwrap())
        );
    }

    #[test]
    fn refuses_bad_entries() {
        assert!(matches!(
            "10.0.0/8".parse::<Cidr>(),
            Err(CidrError::Address(_))
        ));
        assert!(matches!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::Prefix(_))
        ));
        assert!(matches!(
            "::/129".parse::<Cidr>(),
            Err(CidrError::Prefix(_))
        ));
        assert!(matches!(
            "1.2.3.4/x".parse::<Cidr>(),
            Err(CidrError::Prefix(_))
        ));
    }

    #[test]
    fn forwarded_for_is_read_only_from_trusted_hops() {
        let t = trusted(&["10.0.0.0/8"]);
        let lb: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let outsider: SocketAddr = "198.51.100.7:4000".parse().unwrap();
        // An untrusted peer's header is ignored.
        assert_eq!(t.client(outsider, ["203.0.113.1"].into_iter()), outsider);
        // No header: the balancer itself.
        assert_eq!(t.client(lb, std::iter::empty()), lb);
        // The right-most untrusted entry, not what the client wrote first.
        let got = t.client(lb, ["1.1.1.1, 203.0.113.1, 10.0.0.9"].into_iter());
        assert_eq!(got, "203.0.113.1:0".parse().unwrap());
        // Several header lines read as one list.
        let got = t.client(lb, ["1.1.1.1", "203.0.113.2:55"].into_iter());
        assert_eq!(got, "203.0.113.2:0".parse().unwrap());
        // Every hop trusted: the left-most one.
        let got = t.client(lb, ["10.0.0.1, 10.0.0.2"].into_iter());
        assert_eq!(got, "10.0.0.1:0".parse().unwrap());
        // Garbage stops the walk at the last good address.
        let got = t.client(lb, ["junk, 10.0.0.3"].into_iter());
        assert_eq!(got, "10.0.0.3:0".parse().unwrap());
        let got = t.client(lb, ["[2001:db8::1]:9"].into_iter());
        assert_eq!(got, "[2001:db8::1]:0".parse().unwrap());
    }

    #[test]
    fn a_long_header_is_read_only_from_the_right() {
        let t = trusted(&["10.0.0.0/8"]);
        let lb: SocketAddr = "10.0.0.5:1".parse().unwrap();
        let mut chain: Vec<String> = vec!["203.0.113.1".into()];
        chain.extend((0..100).map(|i| format!("10.0.{i}.1")));
        let header = chain.join(",");
        let got = t.client(lb, [header.as_str()].into_iter());
        // Not the outsider 100 hops away: the walk stops after its cap.
        assert!(t.contains(got.ip()));
    }
}
