//! Opening and accepting connections for every [`Scheme`]: TCP and Unix
//! streams, TLS over TCP, UDP, and WebSockets (over TCP or TLS).
//!
//! Each step (TCP connect, TLS handshake, WebSocket handshake) is a public
//! function so that `probe` can time them one by one; [`connect`] chains
//! them. Every opened connection is a [`Conn`]: a byte stream, a connected
//! UDP socket, or a WebSocket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::endpoint::{Endpoint, Scheme};
use crate::error::NetError;
use crate::tls::{self, ClientTlsArgs};

/// A byte stream of any kind (TCP, TLS, Unix).
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncStream for T {}

/// A boxed byte stream.
pub type BoxStream = Box<dyn AsyncStream>;

/// A WebSocket over a boxed stream.
pub type WebSocket = prise_ws::WebSocket<BoxStream>;

/// An open connection.
pub enum Conn {
    /// A byte stream: TCP, TLS or Unix.
    Stream(BoxStream),
    /// A UDP socket connected to one peer.
    Udp(UdpSocket),
    /// A WebSocket, with the subprotocol the server chose.
    Ws(Box<WebSocket>, Option<String>),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Stream(_) => "Conn::Stream",
            Self::Udp(_) => "Conn::Udp",
            Self::Ws(..) => "Conn::Ws",
        })
    }
}

/// TCP socket options.
#[derive(Debug, Clone, Default, clap::Args)]
#[non_exhaustive]
pub struct SocketArgs {
    /// Disable Nagle's algorithm (TCP_NODELAY).
    #[arg(long)]
    pub nodelay: bool,
    /// TCP keepalive: probes after IDLE without traffic, then every
    /// INTERVAL, giving up after COUNT unanswered (e.g. 30s or 30s,5s,3).
    #[arg(long, value_name = "IDLE[,INTERVAL,COUNT]", value_parser = Keepalive::parse)]
    pub keepalive: Option<Keepalive>,
    /// When standard input ends, close with a reset (RST) instead of a FIN
    /// (SO_LINGER 0; bytes not yet sent are discarded).
    #[arg(long)]
    pub linger0: bool,
    /// Send buffer size (SO_SNDBUF, bytes; the kernel doubles it).
    #[arg(long, value_name = "BYTES")]
    pub sndbuf: Option<usize>,
    /// Receive buffer size (SO_RCVBUF, bytes; the kernel doubles it).
    #[arg(long, value_name = "BYTES")]
    pub rcvbuf: Option<usize>,
}

/// `--keepalive IDLE[,INTERVAL,COUNT]`: TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe.
    pub idle: Duration,
    /// Time between probes (kernel default when absent).
    pub interval: Option<Duration>,
    /// Unanswered probes before the connection is dropped (kernel default when absent).
    pub count: Option<u32>,
}

impl Keepalive {
    /// Parses `IDLE` or `IDLE,INTERVAL,COUNT` (durations as in `30s`).
    ///
    /// # Errors
    /// A bad duration or count, or two fields instead of one or three.
    pub fn parse(text: &str) -> Result<Self, String> {
        let dur = |s: &str| humantime::parse_duration(s.trim()).map_err(|e| format!("'{s}': {e}"));
        let parts: Vec<&str> = text.split(',').collect();
        match parts.as_slice() {
            [idle] => Ok(Self {
                idle: dur(idle)?,
                interval: None,
                count: None,
            }),
            [idle, interval, count] => Ok(Self {
                idle: dur(idle)?,
                interval: Some(dur(interval)?),
                count: Some(
                    count
                        .trim()
                        .parse()
                        .map_err(|_| format!("'{count}' is not a probe count"))?,
                ),
            }),
            _ => Err("expected IDLE or IDLE,INTERVAL,COUNT".into()),
        }
    }
}

impl SocketArgs {
    /// Applies the options to a connected or accepted TCP socket.
    ///
    /// # Errors
    /// The kernel refused an option.
    pub fn apply(&self, stream: &TcpStream) -> Result<(), NetError> {
        let sock = SockRef::from(stream);
        if self.nodelay {
            sock.set_tcp_nodelay(true)
                .map_err(|e| NetError::io("setting TCP_NODELAY", e))?;
        }
        if let Some(k) = self.keepalive {
            let mut ka = TcpKeepalive::new().with_time(k.idle);
            if let Some(interval) = k.interval {
                ka = ka.with_interval(interval);
            }
            if let Some(count) = k.count {
                ka = ka.with_retries(count);
            }
            sock.set_tcp_keepalive(&ka)
                .map_err(|e| NetError::io("setting SO_KEEPALIVE", e))?;
        }
        if let Some(n) = self.sndbuf {
            sock.set_send_buffer_size(n)
                .map_err(|e| NetError::io("setting SO_SNDBUF", e))?;
        }
        if let Some(n) = self.rcvbuf {
            sock.set_recv_buffer_size(n)
                .map_err(|e| NetError::io("setting SO_RCVBUF", e))?;
        }
        if self.linger0 {
            sock.set_linger(Some(Duration::ZERO))
                .map_err(|e| NetError::io("setting SO_LINGER", e))?;
        }
        Ok(())
    }
}

/// WebSocket client options.
#[derive(Debug, Clone, Default, clap::Args)]
#[non_exhaustive]
pub struct WsClientArgs {
    /// Extra handshake header, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Subprotocol to offer (repeatable).
    #[arg(long = "protocol", value_name = "NAME")]
    pub protocols: Vec<String>,
}

impl WsClientArgs {
    /// The handshake options for prise-ws.
    ///
    /// # Errors
    /// A header without a `:`.
    pub fn client_options(&self) -> Result<prise_ws::ClientOptions, NetError> {
        let headers = self
            .headers
            .iter()
            .map(|h| {
                h.split_once(':')
                    .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                    .ok_or_else(|| NetError::Usage(format!("header '{h}' needs 'Name: value'")))
            })
            .collect::<Result<_, _>>()?;
        let mut options = prise_ws::ClientOptions::default();
        options.headers = headers;
        options.subprotocols = self.protocols.clone();
        Ok(options)
    }
}

/// Everything needed to open a connection to an endpoint.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// TCP socket options.
    pub socket: SocketArgs,
    /// TLS verification and client identity.
    pub tls: ClientTlsArgs,
    /// WebSocket handshake options.
    pub ws: WsClientArgs,
    /// WebSocket limits.
    pub ws_config: prise_ws::WsConfig,
    /// Bound on the whole connect, including the handshakes.
    pub timeout: Option<Duration>,
    /// SOCKS5 or HTTP CONNECT proxy for the TCP stream (`--proxy`).
    pub proxy: Option<crate::proxy_client::ProxyUrl>,
}

/// Resolves `host:port` to socket addresses.
///
/// # Errors
/// [`NetError::NameNotFound`] when the name does not resolve.
pub async fn resolve(ep: &Endpoint) -> Result<Vec<SocketAddr>, NetError> {
    let host = if ep.host.is_empty() {
        "127.0.0.1"
    } else {
        &ep.host
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, ep.port))
        .await
        .map_err(|_| NetError::NameNotFound(host.to_owned()))?
        .collect();
    if addrs.is_empty() {
        return Err(NetError::NameNotFound(host.to_owned()));
    }
    Ok(addrs)
}

/// Opens a TCP connection to the first address of `ep` that answers.
///
/// # Errors
/// The name does not resolve, or every address refused or failed.
pub async fn tcp_connect(ep: &Endpoint, socket: &SocketArgs) -> Result<TcpStream, NetError> {
    let mut last = None;
    for addr in resolve(ep).await? {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                socket.apply(&stream)?;
                return Ok(stream);
            }
            Err(e) => last = Some(NetError::from_io(e, &ep.authority())),
        }
    }
    Err(last.unwrap_or_else(|| NetError::NameNotFound(ep.host.clone())))
}

/// Runs the TLS client handshake over `stream`.
///
/// # Errors
/// Certificate verification or the handshake failed.
pub async fn tls_handshake<S>(
    stream: S,
    ep: &Endpoint,
    args: &ClientTlsArgs,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::client::TlsStream<S>, NetError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = tls::client_config(args, alpn)?;
    let name = tls::server_name(args, &ep.host)?;
    TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|e| NetError::from_io(e, args.sni.as_deref().unwrap_or(&ep.host)))
}

/// Runs the WebSocket client handshake over `stream`.
///
/// # Errors
/// The server refused the upgrade or the stream failed.
pub async fn ws_handshake(
    stream: BoxStream,
    ep: &Endpoint,
    opts: &ConnectOptions,
) -> Result<(WebSocket, Option<String>), NetError> {
    let client = opts.ws.client_options()?;
    prise_ws::connect(stream, &ep.ws_url(), &client, opts.ws_config)
        .await
        .map_err(|e| ws_error(e, &ep.authority()))
}

/// Maps a WebSocket error to a toolkit error.
pub fn ws_error(err: prise_ws::WsError, peer: &str) -> NetError {
    match err {
        prise_ws::WsError::Io(e) => NetError::from_io(e, peer),
        prise_ws::WsError::Http(resp) => NetError::Protocol(format!(
            "{peer} answered the websocket handshake with HTTP {}",
            resp.status()
        )),
        other => NetError::Protocol(format!("{peer}: {other}")),
    }
}

/// Opens a connection to `ep` (one attempt), bounded by `opts.timeout`.
///
/// # Errors
/// Any failure of the steps, or [`NetError::TimedOut`].
pub async fn connect(ep: &Endpoint, opts: &ConnectOptions) -> Result<Conn, NetError> {
    bounded(ep, opts.timeout, connect_once(ep, opts)).await
}

/// Runs `attempt`, a connection to `ep`, giving up after `timeout`.
///
/// # Errors
/// The attempt's own, or [`NetError::TimedOut`].
pub async fn bounded<T>(
    ep: &Endpoint,
    timeout: Option<Duration>,
    attempt: impl Future<Output = Result<T, NetError>>,
) -> Result<T, NetError> {
    match timeout {
        Some(t) => tokio::time::timeout(t, attempt).await.map_err(|_| {
            NetError::TimedOut(format!(
                "connecting to {} after {}",
                ep,
                humantime::format_duration(t)
            ))
        })?,
        None => attempt.await,
    }
}

/// Opens a Unix stream connection to `ep`'s path.
///
/// # Errors
/// Nothing listens there, or it may not be opened.
pub async fn unix_connect(ep: &Endpoint) -> Result<tokio::net::UnixStream, NetError> {
    tokio::net::UnixStream::connect(ep.unix_path())
        .await
        .map_err(|e| NetError::from_io(e, &ep.path))
}

async fn connect_once(ep: &Endpoint, opts: &ConnectOptions) -> Result<Conn, NetError> {
    crate::proxy_client::check_scheme(ep, opts.proxy.as_ref())?;
    let dial = || crate::proxy_client::dial(ep, &opts.socket, opts.proxy.as_ref());
    match ep.scheme {
        Scheme::Tcp => Ok(Conn::Stream(Box::new(dial().await?))),
        Scheme::Tls => {
            let tcp = dial().await?;
            Ok(Conn::Stream(Box::new(
                tls_handshake(tcp, ep, &opts.tls, &[]).await?,
            )))
        }
        Scheme::Unix => Ok(Conn::Stream(Box::new(unix_connect(ep).await?))),
        Scheme::Sio => Err(NetError::Usage(
            "sio:// is a Socket.IO server: only prise connect speaks it".into(),
        )),
        Scheme::Udp => {
            let addr = resolve(ep).await?[0];
            let bind: SocketAddr = if addr.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let sock = UdpSocket::bind(bind)
                .await
                .map_err(|e| NetError::io("binding a UDP socket", e))?;
            sock.connect(addr)
                .await
                .map_err(|e| NetError::from_io(e, &ep.authority()))?;
            Ok(Conn::Udp(sock))
        }
        Scheme::Ws | Scheme::Wss => {
            let tcp = dial().await?;
            let stream: BoxStream = if ep.scheme == Scheme::Wss {
                Box::new(tls_handshake(tcp, ep, &opts.tls, &[b"http/1.1"]).await?)
            } else {
                Box::new(tcp)
            };
            let (ws, proto) = ws_handshake(stream, ep, opts).await?;
            Ok(Conn::Ws(Box::new(ws), proto))
        }
    }
}

/// A bound listener for any scheme, with what it takes to upgrade accepted
/// connections (TLS, WebSocket).
#[derive(Debug)]
pub enum Listener {
    /// TCP, TLS, WS or WSS: accept TCP, then [`Upgrader::upgrade`].
    Tcp(TcpListener, Upgrader),
    /// Unix domain stream socket.
    Unix(tokio::net::UnixListener),
    /// UDP: datagrams from any peer.
    Udp(UdpSocket),
}

/// Turns an accepted TCP stream into a [`Conn`] (TLS and WebSocket handshakes).
#[derive(Clone)]
pub struct Upgrader {
    /// TLS acceptor for `tls://` and `wss://`.
    pub tls: Option<TlsAcceptor>,
    /// WebSocket limits for `ws://` and `wss://`; `None` for plain streams.
    pub ws: Option<prise_ws::WsConfig>,
    /// Options applied to accepted sockets.
    pub socket: SocketArgs,
}

impl std::fmt::Debug for Upgrader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgrader")
            .field("tls", &self.tls.is_some())
            .field("ws", &self.ws)
            .finish()
    }
}

impl Upgrader {
    /// Runs the TLS and WebSocket handshakes an accepted stream needs.
    ///
    /// # Errors
    /// A failed handshake.
    pub async fn upgrade(&self, tcp: TcpStream, peer: SocketAddr) -> Result<Conn, NetError> {
        self.socket.apply(&tcp)?;
        let peer = peer.to_string();
        let stream: BoxStream = match &self.tls {
            Some(acceptor) => Box::new(
                acceptor
                    .accept(tcp)
                    .await
                    .map_err(|e| NetError::from_io(e, &peer))?,
            ),
            None => Box::new(tcp),
        };
        match self.ws {
            Some(config) => {
                let ws = prise_ws::accept(stream, config)
                    .await
                    .map_err(|e| ws_error(e, &peer))?;
                Ok(Conn::Ws(Box::new(ws), None))
            }
            None => Ok(Conn::Stream(stream)),
        }
    }
}

impl Listener {
    /// Accepts the next stream peer and runs its handshakes. Returns the
    /// connection and the peer's name (`unix_name` for a Unix socket), or
    /// `None` when a handshake failed and `keep_open` says to go on with the
    /// next peer.
    ///
    /// # Errors
    /// An accept failure; a failed handshake without `keep_open`; a UDP
    /// listener (it has no streams to accept).
    pub async fn accept_stream(
        &self,
        keep_open: bool,
        unix_name: &str,
    ) -> Result<Option<(Conn, String)>, NetError> {
        match self {
            Listener::Tcp(tcp, upgrader) => {
                let (stream, peer) = tcp
                    .accept()
                    .await
                    .map_err(|e| NetError::io("accepting", e))?;
                match upgrader.upgrade(stream, peer).await {
                    Ok(conn) => Ok(Some((conn, peer.to_string()))),
                    Err(e) if keep_open => {
                        tracing::warn!(%peer, error = %e, "handshake failed");
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            }
            Listener::Unix(unix) => {
                let (s, _) = unix
                    .accept()
                    .await
                    .map_err(|e| NetError::io("accepting", e))?;
                Ok(Some((Conn::Stream(Box::new(s)), unix_name.to_owned())))
            }
            Listener::Udp(_) => Err(NetError::Usage(
                "a UDP listener has no streams to accept".into(),
            )),
        }
    }

    /// Binds `ep`. TLS schemes need `tls` (see [`tls::server_config`]).
    ///
    /// # Errors
    /// The address is in use or not local, or TLS is missing.
    pub async fn bind(
        ep: &Endpoint,
        tls: Option<Arc<rustls::ServerConfig>>,
        socket: SocketArgs,
        ws_config: prise_ws::WsConfig,
    ) -> Result<Self, NetError> {
        let bind_err = |e| NetError::io(format!("binding {ep}"), e);
        match ep.scheme {
            Scheme::Udp => Ok(Self::Udp(
                UdpSocket::bind(ep.bind_authority())
                    .await
                    .map_err(bind_err)?,
            )),
            Scheme::Unix => Ok(Self::Unix(
                tokio::net::UnixListener::bind(ep.unix_path()).map_err(bind_err)?,
            )),
            Scheme::Sio => Err(NetError::Usage(format!("cannot listen on {ep}"))),
            scheme => {
                let tls = if scheme.is_tls() {
                    let config = tls.ok_or_else(|| {
                        NetError::Usage(
                            "a TLS listener needs --tls-cert and --tls-key, or --self-signed"
                                .into(),
                        )
                    })?;
                    Some(TlsAcceptor::from(config))
                } else {
                    None
                };
                let ws = scheme.is_ws().then_some(ws_config);
                let listener = TcpListener::bind(ep.bind_authority())
                    .await
                    .map_err(bind_err)?;
                Ok(Self::Tcp(listener, Upgrader { tls, ws, socket }))
            }
        }
    }

    /// The bound address (for `:0` listeners); `None` for Unix sockets.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Tcp(l, _) => l.local_addr().ok(),
            Self::Udp(s) => s.local_addr().ok(),
            Self::Unix(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_takes_one_or_three_fields() {
        let k = Keepalive::parse("30s").unwrap();
        assert_eq!(
            (k.idle, k.interval, k.count),
            (Duration::from_secs(30), None, None)
        );
        let k = Keepalive::parse("10s,2s,3").unwrap();
        assert_eq!(k.interval, Some(Duration::from_secs(2)));
        assert_eq!(k.count, Some(3));
        assert!(Keepalive::parse("10s,2s").is_err());
        assert!(Keepalive::parse("10s,2s,x").is_err());
        assert!(Keepalive::parse("soon").is_err());
    }
}
