//! `prise bridge LISTEN_URL TARGET_URL`: accept on any URL prise listens on
//! and, for each connection, open the target and relay both ways.
//!
//! ```text
//!  peer ─accept (tcp/tls/ws/wss/unix; udp: one session per address)─▶ Side
//!       ─connect_with_retry─▶ target Side ─pump (half-close)─▶ both ways
//! ```
//!
//! A WebSocket message becomes one chunk of bytes on a stream side, and
//! each chunk read from a stream becomes one message (binary by default,
//! `--text` for text). `--framing` cuts stream sides into lines or
//! length-prefixed frames instead, per side (`listen=`, `target=`).
//!
//! The same accept loop serves `prise listen --exec` (the "target" is a
//! process per connection, see [`crate::exec`]), and the same session
//! serves `prise connect --exec`.
//!
//! With `--reconnect`, a target that drops while its peer is still
//! connected is dialled again with the backoff of `--retry-base` and
//! `--retry-cap`; the backoff starts over after a connection that stayed up
//! for `--retry-cap`. A message in flight when the target dropped may be
//! lost; nothing is replayed.

pub mod pump;
pub mod side;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use self::pump::{PumpEnd, PumpOptions, pump};
use self::side::{Side, SideOptions};
use crate::backoff::{Backoff, BackoffConfig};
use crate::codec::Framing;
use crate::connect::{RetryArgs, connect_with_retry};
use crate::echo::{report_listening, shutdown_on_signal};
use crate::endpoint::{Endpoint, Scheme};
use crate::error::NetError;
use crate::exec;
use crate::proxy_client::ProxyUrl;
use crate::relay::{DEFAULT_MAX_MESSAGE, Events, MAX_DATAGRAM};
use crate::tls::{ClientTlsArgs, ServerTlsArgs, server_config};
use crate::transport::{self, Conn, ConnectOptions, Listener, SocketArgs, WsClientArgs};

/// Default cap on connections (or UDP sessions) bridged at once.
pub const DEFAULT_MAX_PEERS: usize = 256;
/// A UDP session with nothing moving for this long ends (unless `--idle-timeout`).
pub const DEFAULT_UDP_IDLE: Duration = Duration::from_secs(60);
/// Datagrams queued for one UDP session; more are dropped (and counted).
pub const UDP_SESSION_QUEUE: usize = 64;

/// `--framing [listen=|target=]MODE`: the framing of one side, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideFraming {
    /// `Some(true)`: the listening side; `Some(false)`: the target; `None`: both.
    pub listen_side: Option<bool>,
    /// The framing.
    pub framing: Framing,
}

impl FromStr for SideFraming {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (side, mode) = match s.split_once('=') {
            Some(("listen", m)) => (Some(true), m),
            Some(("target", m)) => (Some(false), m),
            Some((other, _)) => return Err(format!("unknown side '{other}' (listen, target)")),
            None => (None, s),
        };
        let framing = match mode {
            "raw" => Framing::Raw,
            "lines" => Framing::Lines,
            "length" => Framing::Length,
            other => return Err(format!("unknown framing '{other}' (raw, lines, length)")),
        };
        Ok(Self {
            listen_side: side,
            framing,
        })
    }
}

/// Arguments of `prise bridge`.
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct BridgeArgs {
    /// Where to accept: tcp://, tls://, udp://, ws://, wss://host:port, or unix:/path.
    #[arg(value_name = "LISTEN_URL")]
    pub listen: Endpoint,
    /// Where each connection goes: tcp://, tls://, udp://, ws://, wss://host:port, or unix:/path.
    #[arg(value_name = "TARGET_URL")]
    pub target: Endpoint,
    /// Framing of stream sides: raw (default), lines or length; prefix
    /// listen= or target= for one side (repeatable).
    #[arg(long, value_name = "[SIDE=]MODE")]
    pub framing: Vec<SideFraming>,
    /// WebSocket sides: send text messages (binary by default).
    #[arg(long)]
    pub text: bool,
    /// Largest message, line or frame accepted (bytes).
    #[arg(long, default_value_t = DEFAULT_MAX_MESSAGE, value_name = "BYTES")]
    pub max_message: usize,
    /// Most connections (or UDP sessions) bridged at once.
    #[arg(long, default_value_t = DEFAULT_MAX_PEERS, value_name = "N")]
    pub max_peers: usize,
    /// End a bridged connection when nothing moves either way for this long
    /// (UDP sessions: 60s by default).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// Give up opening the target (including handshakes) after this long.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Dial the target again (with backoff) when it drops while its peer is connected.
    #[arg(long)]
    pub reconnect: bool,
    /// Open the target through a proxy: socks5://host:port (user:pass@ before the host to authenticate) or http://host:port.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<ProxyUrl>,
    #[command(flatten)]
    /// Retry policy for opening the target.
    pub retry: RetryArgs,
    #[command(flatten)]
    /// TLS certificate of a tls:// or wss:// listener.
    pub server_tls: ServerTlsArgs,
    #[command(flatten)]
    /// TLS options for a tls:// or wss:// target.
    pub tls: ClientTlsArgs,
    #[command(flatten)]
    /// WebSocket options for a ws:// or wss:// target.
    pub ws: WsClientArgs,
    #[command(flatten)]
    /// TCP socket options (both sides).
    pub socket: SocketArgs,
}

/// What each accepted connection is bridged to.
#[derive(Debug)]
pub enum Target {
    /// A connection to a URL.
    Url(Box<UrlTarget>),
    /// A process per connection (`listen --exec`).
    Exec(String),
}

/// A target URL and how to open it.
#[derive(Debug)]
#[non_exhaustive]
pub struct UrlTarget {
    /// The URL.
    pub url: Endpoint,
    /// Connect options (TLS, WebSocket, proxy, timeout).
    pub opts: ConnectOptions,
    /// Retries of the first connect.
    pub retry: BackoffConfig,
    /// Redial after a drop, with this backoff.
    pub reconnect: Option<BackoffConfig>,
}

impl UrlTarget {
    /// A target for `url`, its first connect retried per `retry`, redialled
    /// after drops when `reconnect`.
    pub fn new(url: Endpoint, opts: ConnectOptions, retry: &RetryArgs, reconnect: bool) -> Self {
        let forever = retry.config().forever();
        Self {
            url,
            opts,
            retry: retry.config(),
            reconnect: reconnect.then_some(forever),
        }
    }
}

/// Settings of each bridged session.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Settings {
    /// The accepted (or local) side.
    pub first: SideOptions,
    /// The target side.
    pub second: SideOptions,
    /// Idle timeout of a session.
    pub idle: Option<Duration>,
}

impl Settings {
    /// Settings from `--framing` values (the last one naming a side wins;
    /// raw when none does).
    pub fn new(
        framings: &[SideFraming],
        max_message: usize,
        text: bool,
        idle: Option<Duration>,
    ) -> Self {
        let pick = |listen: bool| {
            framings
                .iter()
                .rev()
                .find(|f| f.listen_side.is_none_or(|l| l == listen))
                .map_or(Framing::Raw, |f| f.framing)
        };
        let side = |framing| SideOptions {
            framing,
            max_message,
            text,
        };
        Self {
            first: side(pick(true)),
            second: side(pick(false)),
            idle,
        }
    }
}

/// Runs `prise bridge`.
///
/// # Errors
/// Binding or TLS setup failed, or a usage error; failures of single
/// connections are logged and do not end the bridge.
pub async fn run(args: BridgeArgs) -> Result<(), NetError> {
    if args.target.scheme == Scheme::Sio {
        return Err(NetError::Usage(
            "a bridge target is a byte or message transport, not sio://".into(),
        ));
    }
    crate::proxy_client::check_scheme(&args.target, args.proxy.as_ref())?;
    let tls = if args.listen.scheme.is_tls() {
        Some(server_config(&args.server_tls)?)
    } else {
        None
    };
    let ws_config = prise_ws::WsConfig::capped(args.max_message, None);
    let listener = Listener::bind(&args.listen, tls, args.socket.clone(), ws_config).await?;
    let opts = ConnectOptions {
        socket: args.socket.clone(),
        tls: args.tls.clone(),
        ws: args.ws.clone(),
        ws_config,
        timeout: args.timeout,
        proxy: args.proxy.clone(),
    };
    let target = Target::Url(Box::new(UrlTarget::new(
        args.target.clone(),
        opts,
        &args.retry,
        args.reconnect,
    )));
    let settings = Settings::new(
        &args.framing,
        args.max_message,
        args.text,
        args.idle_timeout,
    );
    let shutdown = shutdown_on_signal();
    report_listening("prise bridge", &args.listen, &listener);
    let result = tokio::select! {
        r = serve(listener, Arc::new(target), settings, args.max_peers, true, &args.listen) => r,
        () = shutdown.cancelled() => Ok(()),
    };
    if args.listen.scheme == Scheme::Unix {
        let _ = std::fs::remove_file(args.listen.unix_path());
    }
    result
}

/// Accepts on `listener` and bridges every connection to `target`; with
/// `keep_open` false, serves one connection and returns its result.
///
/// # Errors
/// An accept failure; without `keep_open`, the connection's own failure.
pub async fn serve(
    listener: Listener,
    target: Arc<Target>,
    settings: Settings,
    max_peers: usize,
    keep_open: bool,
    url: &Endpoint,
) -> Result<(), NetError> {
    if let Listener::Udp(sock) = listener {
        return serve_udp(sock, target, settings, max_peers).await;
    }
    let permits = Arc::new(Semaphore::new(max_peers.max(1)));
    let tracker = TaskTracker::new();
    loop {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| NetError::Usage("listener closed".into()))?;
        let accepted = match &listener {
            Listener::Tcp(tcp, upgrader) => tcp
                .accept()
                .await
                .map(|(s, addr)| (Accepted::Tcp(s, addr, upgrader.clone()), addr.to_string())),
            Listener::Unix(unix) => unix
                .accept()
                .await
                .map(|(s, _)| (Accepted::Ready(Conn::Stream(Box::new(s))), url.path.clone())),
            Listener::Udp(_) => return Err(NetError::Usage("udp has no streams to accept".into())),
        };
        let (accepted, peer) = match accepted {
            Ok(a) => a,
            Err(e) if keep_open => {
                // Out of descriptors, or a connection aborted before accept:
                // the listener itself is fine. The pause keeps this from spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
            Err(e) => return Err(NetError::io("accepting", e)),
        };
        tracing::info!(%peer, "accepted");
        if !keep_open {
            let first = Side::from_conn(accepted.upgrade().await?, &peer, settings.first);
            return session(first, &peer, &target, settings).await;
        }
        let target = target.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let conn = match accepted.upgrade().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "handshake failed");
                    return;
                }
            };
            let first = Side::from_conn(conn, &peer, settings.first);
            match session(first, &peer, &target, settings).await {
                Ok(()) => tracing::info!(%peer, "closed"),
                Err(e) => tracing::warn!(%peer, error = %e, "connection failed"),
            }
        });
    }
}

/// Pause after a failed accept.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Bound on the TLS and WebSocket handshakes of an accepted connection.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An accepted connection before its handshakes, which run in the
/// connection's own task so that a slow peer never holds up the accept loop.
enum Accepted {
    Tcp(tokio::net::TcpStream, SocketAddr, transport::Upgrader),
    Ready(Conn),
}

impl Accepted {
    async fn upgrade(self) -> Result<Conn, NetError> {
        match self {
            Self::Ready(conn) => Ok(conn),
            Self::Tcp(s, addr, upgrader) => {
                tokio::time::timeout(HANDSHAKE_TIMEOUT, upgrader.upgrade(s, addr))
                    .await
                    .map_err(|_| NetError::TimedOut(format!("handshake of {addr}")))?
            }
        }
    }
}

/// One UDP "connection" per peer address: datagrams from it go to its own
/// target connection, answers go back to it.
async fn serve_udp(
    sock: UdpSocket,
    target: Arc<Target>,
    mut settings: Settings,
    max_peers: usize,
) -> Result<(), NetError> {
    settings.idle = settings.idle.or(Some(DEFAULT_UDP_IDLE));
    let sock = Arc::new(sock);
    let sessions: Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Bytes>>>> = Arc::default();
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut dropped: u64 = 0;
    loop {
        // Errors on an unconnected UDP socket are ICMP reports about
        // earlier answers; they concern one peer, not the listener.
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let data = Bytes::copy_from_slice(&buf[..n]);
        // The lock is never held across an await.
        let mut map = sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = map.get(&from) {
            match tx.try_send(data) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    dropped += 1;
                    tracing::debug!(peer = %from, dropped, "session queue full; datagram dropped");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    map.remove(&from);
                }
            }
            continue;
        }
        if map.len() >= max_peers.max(1) {
            dropped += 1;
            tracing::warn!(peer = %from, dropped, "too many udp sessions; datagram dropped");
            continue;
        }
        let (tx, rx) = mpsc::channel(UDP_SESSION_QUEUE);
        // A fresh queue has room for one datagram.
        let _ = tx.try_send(data);
        map.insert(from, tx);
        drop(map);
        let first = Side::udp_peer(sock.clone(), from, rx);
        let (target, sessions) = (target.clone(), sessions.clone());
        tokio::spawn(async move {
            let peer = from.to_string();
            tracing::info!(%peer, "udp session");
            match session(first, &peer, &target, settings).await {
                Ok(()) | Err(NetError::TimedOut(_)) => tracing::info!(%peer, "udp session over"),
                Err(e) => tracing::warn!(%peer, error = %e, "udp session failed"),
            }
            sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&from);
        });
    }
}

/// Bridges `first` (an accepted connection, from `peer`) to `target`.
///
/// # Errors
/// The target could not be opened, or either side failed.
pub async fn session(
    mut first: Side,
    peer: &str,
    target: &Target,
    settings: Settings,
) -> Result<(), NetError> {
    match target {
        Target::Exec(command) => {
            let (mut second, child) = exec::spawn(command, peer, settings.second)?;
            let result = pump(
                &mut first,
                &mut second,
                PumpOptions {
                    idle: settings.idle,
                    redial_second: false,
                },
            )
            .await;
            drop(second);
            child.end().await;
            result.map(|_| ())
        }
        Target::Url(t) => url_session(&mut first, t, settings).await,
    }
}

/// Relays `first` with connections to `t`, redialling after drops when
/// `t.reconnect` says so.
///
/// # Errors
/// The first connect failed, a redial met a failure not worth retrying, or
/// a side failed.
pub async fn url_session(
    first: &mut Side,
    t: &UrlTarget,
    settings: Settings,
) -> Result<(), NetError> {
    let events = Events::new(false, false);
    let backoff = Backoff::new(t.retry, StdRng::from_os_rng());
    let mut conn = connect_with_retry(&t.url, &t.opts, backoff, &events).await?;
    let mut pending: Option<Bytes> = None;
    let mut redials = t.reconnect.map(|c| Backoff::new(c, StdRng::from_os_rng()));
    loop {
        let mut second = Side::from_conn(conn, &t.url.to_string(), settings.second);
        if first.is_datagram() {
            second.limit_chunks(MAX_DATAGRAM);
        }
        if second.is_datagram() {
            first.limit_chunks(MAX_DATAGRAM);
        }
        let up_since = Instant::now();
        let end = match pending.take() {
            Some(msg) => match second.writer.send(msg).await {
                Ok(_) => None,
                Err(e) => Some(PumpEnd::SecondDropped(Some(e))),
            },
            None => None,
        };
        let end = match end {
            Some(end) => end,
            None => {
                let opts = PumpOptions {
                    idle: settings.idle,
                    redial_second: redials.is_some(),
                };
                pump(first, &mut second, opts).await?
            }
        };
        let (PumpEnd::SecondDropped(why), Some(backoff)) = (end, redials.as_mut()) else {
            return Ok(());
        };
        drop(second);
        match &why {
            Some(e) => tracing::info!(target = %t.url, error = %e, "target dropped; redialling"),
            None => tracing::info!(target = %t.url, "target closed; redialling"),
        }
        if up_since.elapsed() >= t.retry.cap {
            *backoff = Backoff::new(t.reconnect.unwrap_or(t.retry), StdRng::from_os_rng());
        }
        match redial(first, t, backoff).await? {
            Some((c, msg)) => {
                conn = c;
                pending = msg;
            }
            None => return Ok(()),
        }
    }
}

/// Dials `t` until it answers, while watching `first`: `None` when `first`
/// ended meanwhile. One message from `first` may arrive during the wait; it
/// is returned to be sent first.
async fn redial(
    first: &mut Side,
    t: &UrlTarget,
    backoff: &mut Backoff<StdRng>,
) -> Result<Option<(Conn, Option<Bytes>)>, NetError> {
    let attempt = async {
        loop {
            // The reconnect backoff has no retry limit.
            let delay = backoff.next_delay().unwrap_or(crate::backoff::MIN_DELAY);
            tokio::time::sleep(delay).await;
            match transport::connect(&t.url, &t.opts).await {
                Ok(conn) => return Ok(conn),
                Err(e) if e.is_retryable() => {
                    tracing::info!(target = %t.url, error = %e, delay = ?delay, "redial failed");
                }
                Err(e) => return Err(e),
            }
        }
    };
    tokio::pin!(attempt);
    let mut pending = None;
    loop {
        tokio::select! {
            r = &mut attempt => return r.map(|conn| Some((conn, pending))),
            msg = first.reader.next(), if pending.is_none() => match msg? {
                Some(msg) => pending = Some(msg),
                None => return Ok(None),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_per_side() {
        let f = |s: &str| s.parse::<SideFraming>().unwrap();
        let s = Settings::new(&[f("lines"), f("target=length")], 10, false, None);
        assert_eq!(
            (s.first.framing, s.second.framing),
            (Framing::Lines, Framing::Length)
        );
        let s = Settings::new(&[], 10, false, None);
        assert_eq!(
            (s.first.framing, s.second.framing),
            (Framing::Raw, Framing::Raw)
        );
        assert!("side=lines".parse::<SideFraming>().is_err());
        assert!("words".parse::<SideFraming>().is_err());
    }
}
