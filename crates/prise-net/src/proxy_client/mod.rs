//! `--proxy URL`: outgoing connections through a SOCKS5 proxy or an HTTP
//! `CONNECT` proxy.
//!
//! ```text
//!  Endpoint ─▶ tcp connect to the proxy ─▶ socks5::handshake | http_connect::handshake
//!          ─▶ TcpStream (now the tunnel) ─▶ TLS / WebSocket handshakes as usual
//! ```
//!
//! The tunnel is still a plain [`TcpStream`], so everything a direct
//! connection does (TLS, WebSocket, `sendfile`) works through it unchanged.
//! The target's name goes to the proxy as written; the proxy resolves it.
//!
//! Failures keep the toolkit's exit codes: the proxy unreachable or the
//! target refused through it is "connection refused" (3), the proxy's
//! timeout is 4, a proxy that says no (authentication, rules) is 3 and not
//! retried, and a proxy that speaks something else is a protocol error (9).

pub mod http_connect;
pub mod socks5;

use std::fmt;
use std::str::FromStr;

use tokio::net::TcpStream;

use crate::endpoint::{Endpoint, Scheme};
use crate::error::NetError;
use crate::transport::{SocketArgs, tcp_connect};

/// The kind of proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// SOCKS5 (RFC 1928), names resolved by the proxy.
    Socks5,
    /// HTTP/1.1 `CONNECT`.
    HttpConnect,
}

/// A parsed `--proxy` URL: `socks5://host:port (user:pass@ before the host to authenticate)` or
/// `http://[user:pass@]host:port`.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// SOCKS5 or HTTP CONNECT.
    pub kind: ProxyKind,
    /// Where the proxy listens (a `tcp://` endpoint).
    pub server: Endpoint,
    /// User name and password, percent-decoded.
    pub credentials: Option<(String, String)>,
}

/// Never prints the password.
impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string())
    }
}

/// The URL without the password.
impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.kind {
            ProxyKind::Socks5 => "socks5",
            ProxyKind::HttpConnect => "http",
        };
        match &self.credentials {
            Some((user, _)) => write!(f, "{scheme}://{user}@{}", self.server.authority()),
            None => write!(f, "{scheme}://{}", self.server.authority()),
        }
    }
}

impl FromStr for ProxyUrl {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Self, NetError> {
        let bad = |why: &str| NetError::Usage(format!("invalid proxy URL: {why}"));
        let url = url::Url::parse(s).map_err(|e| bad(&e.to_string()))?;
        let (kind, default_port) = match url.scheme() {
            "socks5" | "socks5h" => (ProxyKind::Socks5, 1080),
            "http" => (ProxyKind::HttpConnect, 8080),
            _ => return Err(bad("the scheme must be socks5:// or http://")),
        };
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(bad("a proxy URL has no path"));
        }
        let host = url
            .host_str()
            .ok_or_else(|| bad("no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let decode = |part: &str| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8_lossy()
                .into_owned()
        };
        let credentials = (!url.username().is_empty())
            .then(|| (decode(url.username()), decode(url.password().unwrap_or(""))));
        Ok(Self {
            kind,
            server: Endpoint {
                scheme: Scheme::Tcp,
                host,
                port: url.port().unwrap_or(default_port),
                path: String::new(),
            },
            credentials,
        })
    }
}

impl ProxyUrl {
    fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// Opens a tunnel to `target` through this proxy.
    ///
    /// # Errors
    /// The proxy is unreachable, refuses, or the target is unreachable
    /// through it; see the module documentation for the exit codes.
    pub async fn connect(
        &self,
        target: &Endpoint,
        socket: &SocketArgs,
    ) -> Result<TcpStream, NetError> {
        let mut stream = tcp_connect(&self.server, socket)
            .await
            .map_err(|e| match e {
                NetError::Refused(_) => NetError::Refused(format!("proxy {self}")),
                other => other,
            })?;
        let host = if target.host.is_empty() {
            "127.0.0.1"
        } else {
            &target.host
        };
        let via = format!("{} (via {self})", target.authority());
        match self.kind {
            ProxyKind::Socks5 => {
                socks5::handshake(&mut stream, self.credentials(), host, target.port)
                    .await
                    .map_err(|e| self.socks_error(e, &via))?;
            }
            ProxyKind::HttpConnect => {
                http_connect::handshake(&mut stream, &target.authority(), self.credentials())
                    .await
                    .map_err(|e| self.http_error(e, &via))?;
            }
        }
        Ok(stream)
    }

    fn socks_error(&self, err: socks5::HandshakeError, via: &str) -> NetError {
        use prise_proto::socks5::Socks5Error as E;
        match err {
            socks5::HandshakeError::Io(e) => self.io_error(e),
            socks5::HandshakeError::Socks(e) => match e {
                E::Refused(0x05) => NetError::Refused(via.to_owned()),
                E::Refused(0x06) => NetError::TimedOut(format!("connecting to {via}")),
                E::TooLong(_) => NetError::Usage(format!("proxy {self}: {e}")),
                E::NoAcceptableMethod | E::AuthRejected | E::Refused(_) => NetError::ProxyRefused {
                    proxy: self.to_string(),
                    reason: format!("{e} (connecting to {})", strip_via(via)),
                },
                E::BadVersion(_) | E::UnexpectedMethod(_) | E::BadAddressType(_) => {
                    NetError::Protocol(format!("proxy {self}: {e}"))
                }
            },
        }
    }

    fn http_error(&self, err: http_connect::HandshakeError, via: &str) -> NetError {
        use prise_proto::http_connect::ConnectError as E;
        match err {
            http_connect::HandshakeError::Io(e) => self.io_error(e),
            http_connect::HandshakeError::Http(e) => match e {
                E::Status {
                    status: 502 | 503, ..
                } => NetError::Refused(format!("{via}: {e}")),
                E::Status { status: 504, .. } => {
                    NetError::TimedOut(format!("connecting to {via}: {e}"))
                }
                E::Status { .. } => NetError::ProxyRefused {
                    proxy: self.to_string(),
                    reason: format!("{e} (connecting to {})", strip_via(via)),
                },
                E::Malformed | E::TooLarge => NetError::Protocol(format!("proxy {self}: {e}")),
            },
        }
    }

    fn io_error(&self, e: std::io::Error) -> NetError {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            return NetError::Protocol(format!(
                "proxy {self} closed the connection during the handshake"
            ));
        }
        NetError::from_io(e, &format!("proxy {self}"))
    }
}

fn strip_via(via: &str) -> &str {
    via.split(" (via ").next().unwrap_or(via)
}

/// Opens the TCP stream under a connection to `ep`: directly, or through
/// `proxy`.
///
/// # Errors
/// See [`tcp_connect`] and [`ProxyUrl::connect`].
pub async fn dial(
    ep: &Endpoint,
    socket: &SocketArgs,
    proxy: Option<&ProxyUrl>,
) -> Result<TcpStream, NetError> {
    match proxy {
        Some(p) => p.connect(ep, socket).await,
        None => tcp_connect(ep, socket).await,
    }
}

/// Refuses a proxy for transports that cannot go through one.
///
/// # Errors
/// [`NetError::Usage`] for `udp://` and `unix:` with a proxy.
pub fn check_scheme(ep: &Endpoint, proxy: Option<&ProxyUrl>) -> Result<(), NetError> {
    if proxy.is_some() && matches!(ep.scheme, Scheme::Udp | Scheme::Unix) {
        return Err(NetError::Usage(format!(
            "--proxy carries tcp, tls, ws and wss, not {}",
            ep.scheme.as_str()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_parse() {
        let p: ProxyUrl = "socks5://alice:s%40cret@127.0.0.1:1080".parse().unwrap();
        assert_eq!(p.kind, ProxyKind::Socks5);
        assert_eq!(p.server.authority(), "127.0.0.1:1080");
        assert_eq!(
            p.credentials,
            Some(("alice".to_owned(), "s@cret".to_owned()))
        );
        assert_eq!(p.to_string(), "socks5://alice@127.0.0.1:1080");
        assert!(!format!("{p:?}").contains("cret"));
        let h: ProxyUrl = "http://[::1]:3128".parse().unwrap();
        assert_eq!(
            (h.kind, h.server.authority()),
            (ProxyKind::HttpConnect, "[::1]:3128".to_owned())
        );
        let d: ProxyUrl = "socks5://proxy".parse().unwrap();
        assert_eq!(d.server.port, 1080);
        for bad in ["ftp://h:1", "socks5://h:1/path", "h:1", "http://"] {
            let e = bad.parse::<ProxyUrl>().unwrap_err();
            assert_eq!(e.exit_code(), crate::error::exit_code::USAGE, "{bad}");
        }
    }
}
