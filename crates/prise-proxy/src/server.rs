//! The proxy itself: the listener and accept loop, per-connection handling (TLS, backend
//! choice with retries, PROXY header, relay), reload and drain.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::{ActiveGuard, Backend, BackendStatus, Pool};
use crate::config::{CheckKind, ConfigError, ProxyConfig};
use crate::relay::{RelayError, Transferred, copy_halves};
use crate::stats::Stats;
use crate::stream::Stream;
use crate::tls::{BackendConnector, TlsError};
use crate::{admin, health, proxy_protocol};

/// Pause after an accept error (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Error starting or reloading the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// TLS material could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
}

/// One configuration generation: what a new connection uses.
struct State {
    config: ProxyConfig,
    pool: Pool,
    acceptor: Option<TlsAcceptor>,
    connector: Option<BackendConnector>,
    /// Stops this generation's health checks when a reload replaces it.
    checks: CancellationToken,
}

struct Shared {
    state: RwLock<Arc<State>>,
    stats: Arc<Stats>,
    limit: Arc<Semaphore>,
    listen: SocketAddr,
    admin: Option<SocketAddr>,
    /// Cancelled when the drain deadline passes: ends the remaining relays.
    hard_stop: CancellationToken,
    /// Cancelled when the proxy is finished: ends health checks and the admin server.
    closed: CancellationToken,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

impl Shared {
    fn current(&self) -> Arc<State> {
        // The lock only guards a pointer swap, so it is never poisoned by a panic midway.
        Arc::clone(&self.state.read().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A bound proxy, ready to [`run`](Proxy::run).
pub struct Proxy {
    shared: Arc<Shared>,
    listener: TcpListener,
}

/// A cheap handle to a proxy: reload, inspect, read metrics.
#[derive(Clone)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ProxyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyHandle")
            .field("listen", &self.shared.listen)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Binds the listener (and the admin endpoint), loads TLS material and starts the health
    /// checks. Connections are accepted once [`run`](Proxy::run) is called.
    ///
    /// # Errors
    /// Invalid configuration, unreadable TLS material, or an address that cannot be bound.
    pub async fn bind(config: ProxyConfig) -> Result<Self, ProxyError> {
        config.validate()?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ProxyError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let listen = listener.local_addr().map_err(|source| ProxyError::Bind {
            addr: config.listen,
            source,
        })?;
        let closed = CancellationToken::new();
        let admin_listener = match config.admin {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ProxyError::Bind { addr, source })?,
            ),
            None => None,
        };
        let admin = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
        let state = build_state(config, None, &closed)?;
        let shared = Arc::new(Shared {
            limit: Arc::new(Semaphore::new(state.config.max_connections)),
            state: RwLock::new(Arc::new(state)),
            stats: Arc::new(Stats::default()),
            listen,
            admin,
            hard_stop: CancellationToken::new(),
            closed,
        });
        let proxy = Self { shared, listener };
        if let Some(l) = admin_listener {
            tokio::spawn(admin::serve(l, proxy.handle(), proxy.shared.closed.clone()));
        }
        Ok(proxy)
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.listen
    }

    /// A handle for reloads and status.
    pub fn handle(&self) -> ProxyHandle {
        ProxyHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Accepts and relays connections until `shutdown` fires, then drains: the listener is
    /// closed at once, established connections go on until they end or the drain deadline
    /// passes, after which the remaining ones are closed.
    pub async fn run(self, shutdown: CancellationToken) {
        let Self { shared, listener } = self;
        let tracker = TaskTracker::new();
        let threads = shared.current().config.threads;
        // Without relay threads (the system refused them) connections run on this runtime.
        let shards = match crate::shard::Shards::start(threads) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "no relay threads, relaying on the main runtime");
                None
            }
        };
        loop {
            let permit = tokio::select! {
                () = shutdown.cancelled() => break,
                p = Arc::clone(&shared.limit).acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break, // the semaphore is never closed
                },
            };
            let (sock, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                        continue;
                    }
                },
            };
            let state = shared.current();
            let stats = Arc::clone(&shared.stats);
            let stop = shared.hard_stop.clone();
            match (&shards, sock.into_std()) {
                (Some(shards), Ok(std_sock)) => {
                    // Re-registered with the relay thread's own reactor once it runs there.
                    shards.next().spawn(tracker.track_future(async move {
                        match TcpStream::from_std(std_sock) {
                            Ok(sock) => connection(stats, state, stop, sock, peer, permit).await,
                            Err(e) => tracing::warn!(error = %e, "cannot register connection"),
                        }
                    }));
                }
                (None, Ok(std_sock)) => {
                    tracker.spawn(async move {
                        match TcpStream::from_std(std_sock) {
                            Ok(sock) => connection(stats, state, stop, sock, peer, permit).await,
                            Err(e) => tracing::warn!(error = %e, "cannot register connection"),
                        }
                    });
                }
                (_, Err(e)) => tracing::warn!(error = %e, "cannot take accepted socket"),
            }
        }
        drop(listener);
        tracker.close();
        let deadline = shared.current().config.drain_timeout;
        tracing::info!(open = tracker.len(), ?deadline, "draining");
        if tokio::time::timeout(deadline, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(open = tracker.len(), "drain deadline passed, closing");
            shared.hard_stop.cancel();
            tracker.wait().await;
        }
        drop(shards);
        shared.closed.cancel();
    }
}

impl ProxyHandle {
    /// The proxy's listening address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.listen
    }

    /// The admin endpoint's address, if one is served.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.shared.admin
    }

    /// The configuration in force.
    pub fn config(&self) -> ProxyConfig {
        self.shared.current().config.clone()
    }

    /// The current backends.
    pub fn backends(&self) -> Vec<Arc<Backend>> {
        self.shared.current().pool.backends().to_vec()
    }

    /// The backend at `addr`, if configured.
    pub fn backend(&self, addr: SocketAddr) -> Option<Arc<Backend>> {
        self.backends().into_iter().find(|b| b.addr() == addr)
    }

    /// A snapshot of every backend.
    pub fn status(&self) -> Vec<BackendStatus> {
        self.backends().iter().map(|b| b.status()).collect()
    }

    /// The proxy's counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Prometheus text for `/metrics`.
    pub fn metrics(&self) -> String {
        self.shared.stats.render(&self.status())
    }

    /// Applies a new configuration without touching the listener or established
    /// connections: new connections use the new backends and settings at once. Backends kept
    /// across the reload keep their health state and counters. The listen and admin
    /// addresses cannot change (a warning is logged).
    ///
    /// # Errors
    /// Invalid configuration or TLS material; the old configuration then stays in force.
    pub fn reload(&self, config: ProxyConfig) -> Result<(), ProxyError> {
        config.validate()?;
        let old = self.shared.current();
        if config.listen != old.config.listen || config.admin != old.config.admin {
            tracing::warn!("listen and admin addresses change only on restart");
        }
        let old_max = old.config.max_connections;
        let new_max = config.max_connections;
        let state = build_state(config, Some(&old.pool), &self.shared.closed)?;
        *self.shared.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(state);
        old.checks.cancel();
        if new_max > old_max {
            self.shared.limit.add_permits(new_max - old_max);
        } else if new_max < old_max {
            // Best effort: permits held by open connections are not taken back.
            self.shared.limit.forget_permits(old_max - new_max);
        }
        self.shared.stats.reloads.fetch_add(1, Ordering::Relaxed);
        tracing::info!("configuration reloaded");
        Ok(())
    }
}

/// Builds a configuration generation, reusing backends of `old` with the same address, and
/// starts its health checks.
fn build_state(
    config: ProxyConfig,
    old: Option<&Pool>,
    closed: &CancellationToken,
) -> Result<State, ProxyError> {
    let acceptor = match &config.tls {
        Some(t) => Some(TlsAcceptor::from(crate::tls::server_config(t)?)),
        None => None,
    };
    let connector = match &config.backend_tls {
        Some(t) => Some(BackendConnector::new(t)?),
        None => None,
    };
    let mut backends: Vec<Arc<Backend>> = Vec::with_capacity(config.backends.len());
    for &addr in &config.backends {
        if backends.iter().any(|b| b.addr() == addr) {
            continue;
        }
        let reused = old.and_then(|p| p.backends().iter().find(|b| b.addr() == addr).cloned());
        backends.push(reused.unwrap_or_else(|| Arc::new(Backend::new(addr))));
    }
    let checks = closed.child_token();
    let check = Arc::new(config.check.clone());
    for b in &backends {
        if check.kind == CheckKind::None {
            b.force_up();
        } else {
            tokio::spawn(health::run(
                Arc::clone(b),
                Arc::clone(&check),
                connector.clone(),
                checks.clone(),
            ));
        }
    }
    Ok(State {
        pool: Pool::new(backends, config.balance),
        config,
        acceptor,
        connector,
        checks,
    })
}

/// Handles one client connection from accept to close.
async fn connection(
    stats: Arc<Stats>,
    state: Arc<State>,
    stop: CancellationToken,
    sock: TcpStream,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
) {
    stats.accepted.fetch_add(1, Ordering::Relaxed);
    stats.active.fetch_add(1, Ordering::Relaxed);
    let result = serve(&stats, &state, &stop, sock, peer).await;
    stats.active.fetch_sub(1, Ordering::Relaxed);
    match result {
        Ok(t) => tracing::debug!(%peer, up = t.upstream, down = t.downstream, "closed"),
        Err(ConnError::Relay(RelayError::Idle)) => {
            stats.idle_closed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "idle timeout");
        }
        Err(e) => tracing::debug!(%peer, error = %e, "connection ended"),
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("client tls handshake: {0}")]
    ClientTls(io::Error),
    #[error("client tls handshake timed out")]
    ClientTlsTimeout,
    #[error("no backend available")]
    NoBackend,
    #[error("backend setup: {0}")]
    Backend(io::Error),
    #[error(transparent)]
    Relay(#[from] RelayError),
}

async fn serve(
    stats: &Arc<Stats>,
    state: &State,
    stop: &CancellationToken,
    sock: TcpStream,
    peer: SocketAddr,
) -> Result<Transferred, ConnError> {
    let cfg = &state.config;
    let _ = sock.set_nodelay(true);
    let local = sock.local_addr().unwrap_or(cfg.listen);
    let client = match &state.acceptor {
        Some(acc) => match tokio::time::timeout(cfg.connect_timeout, acc.accept(sock)).await {
            Ok(Ok(s)) => Stream::Server(Box::new(s)),
            Ok(Err(e)) => {
                stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                return Err(ConnError::ClientTls(e));
            }
            Err(_) => {
                stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                return Err(ConnError::ClientTlsTimeout);
            }
        },
        None => Stream::Plain(sock),
    };
    let Some((backend, mut bsock, _guard)) = connect_backend(stats, state).await else {
        stats.no_backend.fetch_add(1, Ordering::Relaxed);
        return Err(ConnError::NoBackend);
    };
    if let Some(version) = cfg.proxy_protocol {
        let header = proxy_protocol::encode(version, peer, local);
        bsock.write_all(&header).await.map_err(ConnError::Backend)?;
    }
    let upstream = match &state.connector {
        Some(conn) => {
            match tokio::time::timeout(cfg.connect_timeout, conn.connect(backend.addr(), bsock))
                .await
            {
                Ok(Ok(s)) => Stream::Client(Box::new(s)),
                Ok(Err(e)) => {
                    stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                    return Err(ConnError::Backend(e));
                }
                Err(_) => {
                    stats.tls_failures.fetch_add(1, Ordering::Relaxed);
                    return Err(ConnError::Backend(io::ErrorKind::TimedOut.into()));
                }
            }
        }
        None => Stream::Plain(bsock),
    };
    let idle = cfg.idle_timeout;
    let size = cfg.buffer_size;
    let t = match (client, upstream) {
        (Stream::Plain(mut c), Stream::Plain(mut b)) => {
            #[cfg(target_os = "linux")]
            if cfg.splice {
                match crate::splice::Pipes::new(size) {
                    Ok(pipes) => {
                        return Ok(crate::splice::relay(&c, &b, pipes, idle, stop, stats).await?);
                    }
                    Err(e) => tracing::debug!(error = %e, "no pipes, copying through buffers"),
                }
            }
            let (cr, cw) = c.split();
            let (br, bw) = b.split();
            copy_halves(cr, cw, br, bw, size, idle, stop, stats).await?
        }
        (c, b) => {
            let (cr, cw) = tokio::io::split(c);
            let (br, bw) = tokio::io::split(b);
            copy_halves(cr, cw, br, bw, size, idle, stop, stats).await?
        }
    };
    Ok(t)
}

/// Connects to a healthy backend, trying up to `retries` others after a failure. A failed
/// connect counts against the backend's `fall` (passive marking) when checks are on, so the
/// checks bring it back once it recovers.
async fn connect_backend(
    stats: &Stats,
    state: &State,
) -> Option<(Arc<Backend>, TcpStream, ActiveGuard)> {
    let cfg = &state.config;
    let mut tried: Vec<SocketAddr> = Vec::new();
    for _ in 0..=cfg.retries {
        let backend = state.pool.pick(&tried)?;
        // Counted as active from the choice on, so that concurrent least-connections choices
        // see it.
        let guard = backend.open();
        match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(backend.addr())).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Some((backend, s, guard));
            }
            Ok(Err(e)) => {
                tracing::debug!(backend = %backend.addr(), error = %e, "connect failed");
            }
            Err(_) => tracing::debug!(backend = %backend.addr(), "connect timed out"),
        }
        stats.connect_failures.fetch_add(1, Ordering::Relaxed);
        if cfg.check.kind != CheckKind::None {
            backend.record_failure(cfg.check.fall);
        }
        tried.push(backend.addr());
    }
    None
}
