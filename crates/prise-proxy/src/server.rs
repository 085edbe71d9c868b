//! The proxy itself: the listeners and their accept loops, per-connection handling (PROXY
//! header in, TLS, backend choice with queueing and retries, PROXY header out, relay),
//! reload and drain.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::{Backend, BackendId, BackendStatus, Settings};
use crate::config::{BackendConfig, CheckConfig, CheckKind, ConfigError, ProxyConfig};
use crate::conn::Conn;
use crate::pool::Pool;
use crate::shard::Shards;
use crate::stats::Stats;
use crate::tls::{BackendConnector, TlsError};
use crate::{admin, health, resolve};

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
pub(crate) struct State {
    pub(crate) config: ProxyConfig,
    /// One pool per listener, in the configuration's order.
    pub(crate) pools: Vec<Arc<Pool>>,
    pub(crate) check: Arc<CheckConfig>,
    pub(crate) acceptor: Option<TlsAcceptor>,
    pub(crate) connector: Option<BackendConnector>,
    /// Stops this generation's health checks and resolver when a reload replaces it.
    pub(crate) checks: CancellationToken,
}

pub(crate) struct Shared {
    state: RwLock<Arc<State>>,
    pub(crate) stats: Arc<Stats>,
    limit: Arc<Semaphore>,
    listens: Vec<SocketAddr>,
    admin: Option<SocketAddr>,
    /// Cancelled when the drain deadline passes: ends the remaining relays. Parent of every
    /// backend's connection token.
    hard_stop: CancellationToken,
    /// Cancelled when the proxy is finished: ends health checks and the admin server.
    pub(crate) closed: CancellationToken,
    next_id: Arc<AtomicU64>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

impl Shared {
    pub(crate) fn current(&self) -> Arc<State> {
        // The lock only guards a pointer swap, so it is never poisoned by a panic midway.
        Arc::clone(&self.state.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// A new backend of `config` at `addr`, with a fresh id. It starts down when active
    /// checks are on, so it takes connections only once its checks pass.
    pub(crate) fn new_backend(
        &self,
        state: &State,
        config: &BackendConfig,
        addr: SocketAddr,
    ) -> Arc<Backend> {
        new_backend(
            &self.next_id,
            &self.hard_stop,
            config,
            addr,
            state.check.kind == CheckKind::None,
        )
    }
}

fn new_backend(
    ids: &AtomicU64,
    hard_stop: &CancellationToken,
    config: &BackendConfig,
    addr: SocketAddr,
    up: bool,
) -> Arc<Backend> {
    let id = BackendId(ids.fetch_add(1, Ordering::Relaxed));
    Arc::new(Backend::with_health(
        id,
        addr,
        Settings::from_config(config),
        up,
        hard_stop.clone(),
    ))
}

/// Starts the health checks of `backend` under `state`'s generation (or marks it up when
/// checks are off).
pub(crate) fn start_checks(state: &State, backend: &Arc<Backend>) {
    if state.check.kind == CheckKind::None {
        backend.force_up();
    } else {
        tokio::spawn(health::run(
            Arc::clone(backend),
            Arc::clone(&state.check),
            state.connector.clone(),
            state.checks.clone(),
        ));
    }
}

/// A bound proxy, ready to [`run`](Proxy::run).
pub struct Proxy {
    shared: Arc<Shared>,
    listeners: Vec<TcpListener>,
}

/// A cheap handle to a proxy: reload, inspect, control backends, read metrics.
#[derive(Clone)]
pub struct ProxyHandle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for ProxyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyHandle")
            .field("listen", &self.shared.listens)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Binds the listeners (and the admin endpoint), loads TLS material and starts the
    /// health checks and the resolver. Connections are accepted once [`run`](Proxy::run) is
    /// called.
    ///
    /// # Errors
    /// Invalid configuration, unreadable TLS material, or an address that cannot be bound.
    pub async fn bind(config: ProxyConfig) -> Result<Self, ProxyError> {
        config.validate()?;
        let mut listeners = Vec::with_capacity(config.listeners.len());
        let mut listens = Vec::with_capacity(config.listeners.len());
        for l in &config.listeners {
            let bind_err = |source| ProxyError::Bind {
                addr: l.listen,
                source,
            };
            let listener = TcpListener::bind(l.listen).await.map_err(bind_err)?;
            listens.push(listener.local_addr().map_err(bind_err)?);
            listeners.push(listener);
        }
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
        let hard_stop = CancellationToken::new();
        let next_id = Arc::new(AtomicU64::new(1));
        let state = build_state(config, None, &next_id, &hard_stop, &closed)?;
        let shared = Arc::new(Shared {
            limit: Arc::new(Semaphore::new(state.config.max_connections)),
            state: RwLock::new(Arc::new(state)),
            stats: Arc::new(Stats::default()),
            listens,
            admin,
            hard_stop,
            closed,
            next_id,
        });
        let proxy = Self { shared, listeners };
        let state = proxy.shared.current();
        for b in state.pools.iter().flat_map(|p| p.backends()) {
            start_checks(&state, &b);
        }
        resolve::spawn(proxy.handle(), state);
        if let Some(l) = admin_listener {
            tokio::spawn(admin::serve(l, proxy.handle(), proxy.shared.closed.clone()));
        }
        Ok(proxy)
    }

    /// The address the first listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.listens[0]
    }

    /// The addresses of every listener, in the configuration's order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.shared.listens
    }

    /// A handle for reloads, status and control.
    pub fn handle(&self) -> ProxyHandle {
        ProxyHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Accepts and relays connections until `shutdown` fires, then drains: the listeners are
    /// closed at once, established connections go on until they end or the drain deadline
    /// passes, after which the remaining ones are closed.
    pub async fn run(self, shutdown: CancellationToken) {
        let Self { shared, listeners } = self;
        let tracker = TaskTracker::new();
        let threads = shared.current().config.threads;
        // Without relay threads (the system refused them) connections run on this runtime.
        let shards = match Shards::start(threads) {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                tracing::warn!(error = %e, "no relay threads, relaying on the main runtime");
                None
            }
        };
        let mut loops = JoinSet::new();
        for (index, listener) in listeners.into_iter().enumerate() {
            loops.spawn(accept_loop(
                Arc::clone(&shared),
                listener,
                index,
                shards.clone(),
                tracker.clone(),
                shutdown.clone(),
            ));
        }
        while loops.join_next().await.is_some() {}
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

/// Accepts on listener `index` until `shutdown`, handing each client to a relay thread.
async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    index: usize,
    shards: Option<Arc<Shards>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
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
        let conn = Conn {
            stats: Arc::clone(&shared.stats),
            state: shared.current(),
            listener: index,
            stop: shared.hard_stop.clone(),
            peer,
            _permit: permit,
        };
        match (&shards, sock.into_std()) {
            (Some(shards), Ok(std_sock)) => {
                // Re-registered with the relay thread's own reactor once it runs there.
                shards.next().spawn(tracker.track_future(async move {
                    match TcpStream::from_std(std_sock) {
                        Ok(sock) => conn.run(sock).await,
                        Err(e) => tracing::warn!(error = %e, "cannot register connection"),
                    }
                }));
            }
            (None, Ok(std_sock)) => {
                tracker.spawn(async move {
                    match TcpStream::from_std(std_sock) {
                        Ok(sock) => conn.run(sock).await,
                        Err(e) => tracing::warn!(error = %e, "cannot register connection"),
                    }
                });
            }
            (_, Err(e)) => tracing::warn!(error = %e, "cannot take accepted socket"),
        }
    }
}

impl ProxyHandle {
    /// The first listener's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.listens[0]
    }

    /// Every listener's address, in the configuration's order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.shared.listens.clone()
    }

    /// The admin endpoint's address, if one is served.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.shared.admin
    }

    /// The configuration in force.
    pub fn config(&self) -> ProxyConfig {
        self.shared.current().config.clone()
    }

    /// The current backends of every listener.
    pub fn backends(&self) -> Vec<Arc<Backend>> {
        self.shared
            .current()
            .pools
            .iter()
            .flat_map(|p| p.backends())
            .collect()
    }

    /// The current backends of listener `index`.
    pub fn pool_backends(&self, index: usize) -> Vec<Arc<Backend>> {
        self.shared
            .current()
            .pools
            .get(index)
            .map(|p| p.backends())
            .unwrap_or_default()
    }

    /// The first backend at `addr`, if any.
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
        let queued: usize = self.shared.current().pools.iter().map(|p| p.queued()).sum();
        self.shared.stats.render(&self.status(), queued)
    }

    /// Applies a new configuration without touching the listeners or established
    /// connections: new connections use the new backends and settings at once. Backends kept
    /// across the reload (same listener, name and address) keep their id, health,
    /// administrative state and counters; backends added at run time that are not in the
    /// new configuration leave. The listen and admin addresses cannot change (a warning is
    /// logged).
    ///
    /// # Errors
    /// Invalid configuration or TLS material; the old configuration then stays in force.
    pub fn reload(&self, config: ProxyConfig) -> Result<(), ProxyError> {
        config.validate()?;
        let old = self.shared.current();
        let same_listeners = config.listeners.len() == old.config.listeners.len()
            && config
                .listeners
                .iter()
                .zip(&old.config.listeners)
                .all(|(a, b)| a.listen == b.listen);
        if !same_listeners || config.admin != old.config.admin {
            tracing::warn!("listen and admin addresses change only on restart");
        }
        if config.listeners.len() != self.shared.listens.len() {
            return Err(ConfigError::Invalid(
                "the number of listeners changes only on restart".to_owned(),
            )
            .into());
        }
        let old_max = old.config.max_connections;
        let new_max = config.max_connections;
        let state = build_state(
            config,
            Some(&old),
            &self.shared.next_id,
            &self.shared.hard_stop,
            &self.shared.closed,
        )?;
        let state = Arc::new(state);
        *self.shared.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&state);
        old.checks.cancel();
        for b in state.pools.iter().flat_map(|p| p.backends()) {
            start_checks(&state, &b);
        }
        // Backends that left end their checks; their open connections go on.
        for gone in old.pools.iter().flat_map(|p| p.backends()) {
            if !state
                .pools
                .iter()
                .any(|p| p.backends().iter().any(|b| Arc::ptr_eq(b, &gone)))
            {
                gone.retire();
            }
        }
        resolve::spawn(self.clone(), state);
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

/// Builds a configuration generation, reusing backends of `old` with the same listener,
/// name and address (its health checks are started by the caller).
fn build_state(
    config: ProxyConfig,
    old: Option<&State>,
    ids: &AtomicU64,
    hard_stop: &CancellationToken,
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
    let checks_off = config.check.kind == CheckKind::None;
    let mut pools = Vec::with_capacity(config.listeners.len());
    for (index, l) in config.listeners.iter().enumerate() {
        let previous = old
            .and_then(|o| o.pools.get(index))
            .map(|p| p.backends())
            .unwrap_or_default();
        let mut backends: Vec<Arc<Backend>> = Vec::new();
        for bc in &l.backends {
            for &addr in &bc.addrs {
                if backends.iter().any(|b| b.addr() == addr) {
                    continue;
                }
                let reused = previous
                    .iter()
                    .find(|b| b.addr() == addr && b.name() == bc.name)
                    .filter(|b| same_settings(b, bc))
                    .cloned();
                // At start every backend is up (as HAProxy's); one that appears in a
                // reload waits for its checks.
                let up = checks_off || old.is_none();
                backends.push(reused.unwrap_or_else(|| new_backend(ids, hard_stop, bc, addr, up)));
            }
        }
        pools.push(Arc::new(Pool::new(backends, l.balance)));
    }
    Ok(State {
        check: Arc::new(config.check.clone()),
        pools,
        config,
        acceptor,
        connector,
        checks: closed.child_token(),
    })
}

/// A backend is reused across a reload only if its options did not change.
fn same_settings(b: &Backend, c: &BackendConfig) -> bool {
    let s = b.settings();
    s.weight == c.weight
        && s.backup == c.backup
        && s.maxconn == c.maxconn
        && s.slowstart == c.slowstart
}
