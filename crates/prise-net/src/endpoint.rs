//! One URL syntax for every command: `tcp://host:port`, `tls://host:port`,
//! `udp://host:port`, `ws://host:port/path`, `wss://host:port/path`,
//! `unix:/path/to/socket`.
//!
//! A bare `host:port` means `tcp://host:port`. For listeners an empty host
//! (`tcp://:9000`) binds to 127.0.0.1, so nothing is exposed by accident;
//! write `tcp://0.0.0.0:9000` to listen on every interface.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::NetError;

/// The transport an endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain TCP.
    Tcp,
    /// TCP with TLS.
    Tls,
    /// UDP datagrams.
    Udp,
    /// WebSocket over TCP.
    Ws,
    /// WebSocket over TLS.
    Wss,
    /// A Unix domain stream socket.
    Unix,
    /// A Socket.IO v4 server (`prise connect` only); the path is the namespace.
    Sio,
}

impl Scheme {
    /// The scheme as written in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Udp => "udp",
            Self::Ws => "ws",
            Self::Wss => "wss",
            Self::Unix => "unix",
            Self::Sio => "sio",
        }
    }

    /// Does this transport run over TLS?
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Tls | Self::Wss)
    }

    /// Is this a WebSocket transport?
    pub fn is_ws(self) -> bool {
        matches!(self, Self::Ws | Self::Wss)
    }
}

/// A parsed endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The transport.
    pub scheme: Scheme,
    /// Host name or IP literal (without brackets); empty for `unix:` and for
    /// a listener's default address.
    pub host: String,
    /// Port (0 for `unix:`).
    pub port: u16,
    /// Path and query for WebSocket endpoints (`/` when absent), the socket
    /// path for `unix:`.
    pub path: String,
}

impl Endpoint {
    /// `host:port` as used for connecting, with brackets around IPv6 literals.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The address a listener binds: an empty host becomes 127.0.0.1.
    pub fn bind_authority(&self) -> String {
        if self.host.is_empty() {
            format!("127.0.0.1:{}", self.port)
        } else {
            self.authority()
        }
    }

    /// The Unix socket path of a `unix:` endpoint.
    pub fn unix_path(&self) -> PathBuf {
        PathBuf::from(&self.path)
    }

    /// The full `ws://`/`wss://` URL for the WebSocket handshake.
    pub fn ws_url(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority(),
            self.path
        )
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scheme {
            Scheme::Unix => write!(f, "unix:{}", self.path),
            Scheme::Ws | Scheme::Wss | Scheme::Sio => f.write_str(&self.ws_url()),
            s => write!(f, "{}://{}", s.as_str(), self.authority()),
        }
    }
}

impl FromStr for Endpoint {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| NetError::Usage(format!("invalid endpoint '{s}': {why}"));
        if let Some(path) = s.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(bad("missing socket path"));
            }
            return Ok(Self {
                scheme: Scheme::Unix,
                host: String::new(),
                port: 0,
                path: path.to_owned(),
            });
        }
        let (scheme, rest) = match s.split_once("://") {
            Some((scheme, rest)) => {
                let scheme = match scheme.to_ascii_lowercase().as_str() {
                    "tcp" => Scheme::Tcp,
                    "tls" | "ssl" => Scheme::Tls,
                    "udp" => Scheme::Udp,
                    "ws" => Scheme::Ws,
                    "wss" => Scheme::Wss,
                    "sio" => Scheme::Sio,
                    _ => return Err(bad("unknown scheme (tcp, tls, udp, ws, wss, unix, sio)")),
                };
                (scheme, rest)
            }
            None => (Scheme::Tcp, s),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if !path.is_empty() && !scheme.is_ws() && scheme != Scheme::Sio {
            return Err(bad("only ws://, wss:// and sio:// take a path"));
        }
        let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
            let (host, after) = inner.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.contains(['@', ' ']) {
            return Err(bad("invalid host"));
        }
        let port = match (port, scheme) {
            (Some(p), _) => p.parse::<u16>().map_err(|_| bad("invalid port"))?,
            (None, Scheme::Ws | Scheme::Sio) => 80,
            (None, Scheme::Wss) => 443,
            (None, _) => return Err(bad("missing port")),
        };
        let path = if scheme == Scheme::Sio {
            // The namespace: `/` unless a path names another.
            match path.split(['?', '#']).next().unwrap_or("") {
                "" | "/" => "/".to_owned(),
                nsp => nsp.trim_end_matches('/').to_owned(),
            }
        } else if scheme.is_ws() && path.is_empty() {
            "/".to_owned()
        } else if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Ok(Self {
            scheme,
            host: host.to_owned(),
            port,
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> Endpoint {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_scheme() {
        let e = ep("tcp://example.com:80");
        assert_eq!(
            (e.scheme, e.host.as_str(), e.port),
            (Scheme::Tcp, "example.com", 80)
        );
        assert_eq!(ep("tls://h:443").scheme, Scheme::Tls);
        assert_eq!(ep("udp://h:53").scheme, Scheme::Udp);
        assert_eq!(ep("localhost:9").to_string(), "tcp://localhost:9");
        let w = ep("wss://h/chat?x=1");
        assert_eq!(
            (w.scheme, w.port, w.path.as_str()),
            (Scheme::Wss, 443, "/chat?x=1")
        );
        assert_eq!(ep("ws://h:8080").ws_url(), "ws://h:8080/");
        assert_eq!(ep("ws://h:1?a").path, "/?a");
        let u = ep("unix:/tmp/s.sock");
        assert_eq!((u.scheme, u.path.as_str()), (Scheme::Unix, "/tmp/s.sock"));
        assert_eq!(ep("unix:///tmp/s").path, "/tmp/s");
        let s = ep("sio://h:3000/chat/");
        assert_eq!(
            (s.scheme, s.port, s.path.as_str()),
            (Scheme::Sio, 3000, "/chat")
        );
        assert_eq!(ep("sio://h:1").path, "/");
        assert_eq!(ep("sio://h:1").to_string(), "sio://h:1/");
    }

    #[test]
    fn ipv6_and_listener_defaults() {
        let e = ep("tcp://[::1]:7");
        assert_eq!(
            (e.host.as_str(), e.authority()),
            ("::1", "[::1]:7".to_owned())
        );
        let l = ep("tcp://:9000");
        assert_eq!(l.bind_authority(), "127.0.0.1:9000");
        assert_eq!(ep("tcp://0.0.0.0:1").bind_authority(), "0.0.0.0:1");
    }

    #[test]
    fn rejects_malformed_urls() {
        for bad in [
            "http://h:1",
            "tcp://h",
            "tcp://h:99999",
            "tcp://h:1/path",
            "tcp://[::1:2",
            "unix:",
            "tcp://u@h:1",
        ] {
            let err = bad.parse::<Endpoint>().unwrap_err();
            assert_eq!(err.exit_code(), crate::error::exit_code::USAGE, "{bad}");
        }
    }
}
