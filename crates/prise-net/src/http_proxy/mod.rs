//! `prise http-proxy --listen ADDR`: an HTTP/1.1 forward proxy.
//!
//! ```text
//! accept (permit of --max-conns) ─▶ task per client:
//!   read head (≤ --max-header, --idle-timeout) ─▶ --allow? ─▶
//!     CONNECT host:port ─▶ dial ─▶ 200 ─▶ bytes both ways (tunnel)
//!     GET http://host/… ─▶ dial (or reuse) ─▶ origin-form request + body ─▶
//!       response head + body back ─▶ next request on the same connection
//!   one access-log line per request (text, or JSON with --json)
//! ```
//!
//! Heads and bodies are parsed by pure functions ([`head`], [`body`]):
//! hop-by-hop fields are dropped, bodies are relayed as they come (chunked
//! bodies unchanged, their end found by a scanner), nothing is buffered
//! whole. The proxy answers for itself with
//! 400 (malformed request, a target that is not `http://…` or
//! `host:port`), 403 (client outside `--allow`), 408 (a head not finished
//! within the idle time), 431 (head over `--max-header`), 502 (target
//! unreachable: refused, unknown name, broken answer) and 504 (no connection
//! within `--connect-timeout`, or no response within `--response-timeout`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::echo::shutdown_on_signal;
use crate::endpoint::{Endpoint, Scheme};
use crate::error::NetError;

pub mod access_log;
pub mod allow;
pub mod body;
mod connection;
pub mod head;
mod tunnel;

pub use access_log::{AccessLog, Entry};
pub use allow::{AllowList, Cidr};

/// Default cap on a request or response head: 16 KiB.
pub const DEFAULT_MAX_HEADER: usize = 16 << 10;
/// Default time a client may stay silent (between requests, inside a head,
/// in a tunnel) before the proxy closes its connection.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default bound on dialling a target.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound on waiting for a target's response head, and between reads of its body.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on clients served at once.
pub const DEFAULT_MAX_CONNS: usize = 256;

/// Arguments of `prise http-proxy`.
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct HttpProxyArgs {
    /// Where to listen, host:port (an empty host, as in :3128, binds 127.0.0.1).
    #[arg(long, value_name = "ADDR")]
    pub listen: Endpoint,
    /// Access log as JSON lines (client, method, target, status, bytes, bytes_up, duration_ms).
    #[arg(long)]
    pub json: bool,
    /// Serve only clients in this block (repeatable; default: everyone).
    #[arg(long = "allow", value_name = "CIDR")]
    pub allow: Vec<Cidr>,
    /// Largest request or response head (bytes); larger requests get 431.
    #[arg(long, default_value_t = DEFAULT_MAX_HEADER, value_name = "BYTES")]
    pub max_header: usize,
    /// Close a client connection silent for this long.
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// Give up dialling a target after this long (504).
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// Give up waiting for a target's response after this long (504).
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub response_timeout: Duration,
    /// Most clients served at once; more wait to be accepted.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNS, value_name = "N")]
    pub max_conns: usize,
}

/// The limits and policy of a proxy; every size and time a peer controls is
/// bounded here.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpProxyConfig {
    /// Clients served.
    pub allow: AllowList,
    /// Cap on one head, request or response ([`DEFAULT_MAX_HEADER`]).
    pub max_header: usize,
    /// See [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// See [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// See [`DEFAULT_RESPONSE_TIMEOUT`].
    pub response_timeout: Duration,
    /// See [`DEFAULT_MAX_CONNS`].
    pub max_conns: usize,
}

impl Default for HttpProxyConfig {
    fn default() -> Self {
        Self {
            allow: AllowList::default(),
            max_header: DEFAULT_MAX_HEADER,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            max_conns: DEFAULT_MAX_CONNS,
        }
    }
}

impl From<&HttpProxyArgs> for HttpProxyConfig {
    fn from(a: &HttpProxyArgs) -> Self {
        Self {
            allow: AllowList::new(a.allow.clone()),
            max_header: a.max_header,
            idle_timeout: a.idle_timeout,
            connect_timeout: a.connect_timeout,
            response_timeout: a.response_timeout,
            max_conns: a.max_conns,
        }
    }
}

/// Serves clients on `listener` until `shutdown`, then waits for the
/// connections in flight.
///
/// # Errors
/// Accepting failed in a way that will not recover.
pub async fn serve(
    listener: TcpListener,
    config: HttpProxyConfig,
    log: Arc<AccessLog>,
    shutdown: CancellationToken,
) -> Result<(), NetError> {
    let config = Arc::new(config);
    let permits = Arc::new(Semaphore::new(config.max_conns.max(1)));
    let tracker = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => p.map_err(|_| NetError::Usage("proxy closed".into()))?,
        };
        let (stream, peer): (_, SocketAddr) = tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: report and go on.
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let config = config.clone();
        let log = log.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let _permit = permit;
            tokio::select! {
                () = connection::handle(stream, peer, &config, &log) => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// Runs `prise http-proxy`: the access log on stdout.
///
/// # Errors
/// The address is not a tcp one, or cannot be bound.
pub async fn run(args: HttpProxyArgs) -> Result<(), NetError> {
    if args.listen.scheme != Scheme::Tcp {
        return Err(NetError::Usage(format!(
            "http-proxy listens on host:port (tcp), not {}",
            args.listen.scheme.as_str()
        )));
    }
    let listener = TcpListener::bind(args.listen.bind_authority())
        .await
        .map_err(|e| NetError::io(format!("binding {}", args.listen), e))?;
    if let Ok(addr) = listener.local_addr() {
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), "http-proxy listening on {addr}");
    }
    let log = Arc::new(AccessLog::new(Box::new(std::io::stdout()), args.json));
    let shutdown = shutdown_on_signal();
    serve(listener, HttpProxyConfig::from(&args), log, shutdown).await
}
