//! prise-server: the listeners and transports of `prise serve`.
//!
//! # Design
//!
//! ```text
//!  --http  ──▶ hyper (h1/h2, upgrades) ──▶ axum routes: /  /ws  /sse  /stats  /metrics  /healthz  /readyz
//!                                                         ├──▶ ws.rs (WebSocket JSON) ─┤
//!                                                         ├──▶ sse.rs (Server-Sent Events) ─┤
//!                                                         └──▶ /api: reads, control API ─┤
//!  --tcp   ──▶ tcp.rs (line protocol, one task per connection) ──────────────────────┤
//!                                                                                     ▼
//!                                                                            prise_hub::Hub
//! ```
//!
//! Both listeners accept through one step (`accept.rs`): from a balancer
//! trusted with `--trust-proxy`, a PROXY protocol header names the client
//! first; the per-IP limits then admit the client by that address.
//!
//! Shutdown is a value passed down: one [`CancellationToken`] that every
//! accept loop and connection task selects on, and one [`TaskTracker`] that
//! [`run`] waits on (with a deadline) before flushing the store. On shutdown a
//! WebSocket gets close 1001 and a TCP client `BYE`.
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used)]

mod accept;
pub mod config;
pub mod config_file;
pub mod hooks;
mod http;
pub mod policy_file;
pub mod security;
mod transport;
pub mod webhooks;

pub use config::{ServeArgs, StoreKind};
pub use security::{Security, SecurityArgs};

use prise_hub::Hub;
use prise_hub::clock::SystemClock;
use prise_hub::redis_broker::RedisCluster;
use prise_hub::store::{HistoryStore, MemoryStore, SqliteStore, StoreError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
pub use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The history store failed.
    #[error("history store: {0}")]
    Store(#[from] StoreError),
    /// Keys, certificates or API key files could not be loaded.
    #[error(transparent)]
    Security(#[from] security::SecurityError),
    /// A hook setting could not be applied.
    #[error(transparent)]
    Hooks(#[from] hooks::HookError),
    /// The webhook outbox could not be opened.
    #[error(transparent)]
    Outbox(#[from] webhooks::OutboxError),
    /// Redis could not be reached at startup.
    #[error("{0}")]
    Redis(#[from] prise_hub::redis_broker::RedisError),
}

/// The addresses the server listens on, once bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// The HTTP listener.
    pub http: SocketAddr,
    /// The TCP line-protocol listener.
    pub tcp: SocketAddr,
}

/// Messages per second over the last second, as f64 bits.
#[derive(Debug, Default)]
pub(crate) struct Rate(AtomicU64);

impl Rate {
    pub(crate) fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
}

/// What every listener and connection task shares.
pub(crate) struct Shared {
    pub(crate) hub: Hub,
    pub(crate) sio: prise_sio::SioLayer,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    pub(crate) rate: Rate,
    /// Authentication, limits, origins and TLS.
    pub(crate) security: Security,
    /// The backend's hooks.
    pub(crate) hooks: hooks::Hooks,
    /// The webhooks' outbox, with `--webhook-url`.
    pub(crate) webhooks: Option<webhooks::Webhooks>,
    /// permessage-deflate on `/ws` (`--ws-deflate`).
    pub(crate) ws_deflate: Option<prise_ws::DeflateConfig>,
    /// Interval of the keep-alive comments on `/sse` (`--sse-keepalive`).
    pub(crate) sse_keepalive: Duration,
}

impl Shared {
    /// What the request layer needs.
    pub(crate) fn ctx(&self) -> transport::client::Ctx<'_> {
        transport::client::Ctx {
            hub: &self.hub,
            security: &self.security,
            hooks: &self.hooks,
        }
    }
}

/// Opens the configured store.
///
/// # Errors
/// Fails when the data directory or the database cannot be opened.
pub fn open_store(args: &ServeArgs) -> Result<Arc<dyn HistoryStore>, ServeError> {
    Ok(match args.store {
        StoreKind::Memory => Arc::new(MemoryStore::new(args.retention())),
        StoreKind::Sqlite => {
            std::fs::create_dir_all(&args.data).map_err(|source| ServeError::DataDir {
                path: args.data.clone(),
                source,
            })?;
            Arc::new(SqliteStore::open(
                &args.data.join("prise.db"),
                args.retention(),
            )?)
        }
    })
}

/// Starts the hub: over the local store, or as a node of a Redis cluster.
async fn start_hub(args: &ServeArgs) -> Result<(Hub, Option<RedisCluster>), ServeError> {
    let clock: Arc<dyn prise_hub::clock::Clock> = Arc::new(SystemClock);
    match args.redis_config() {
        Some(config) => {
            let cluster = RedisCluster::connect(config).await?;
            let hub = Hub::with_broker(args.hub_config(), cluster.store(), clock.clone(), |sink| {
                cluster.broker(sink, clock)
            });
            tracing::info!(node = cluster.node_id(), "node of a redis cluster");
            Ok((hub, Some(cluster)))
        }
        None => {
            let store = open_store(args)?;
            Ok((Hub::start(args.hub_config(), store, clock).await?, None))
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Runs the hub until `shutdown` is cancelled, then closes every connection
/// (within `args.shutdown_timeout`) and flushes the store.
///
/// `on_ready` is called once both listeners are bound, with their addresses.
///
/// # Errors
/// Fails when a listener cannot be bound or the store cannot be opened.
pub async fn run(
    args: ServeArgs,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(Bound),
) -> Result<(), ServeError> {
    let security = Security::build(&args.security, args.http, args.tcp, &args.data)?;
    let (hub, cluster) = start_hub(&args).await?;
    let hooks = hooks::Hooks::build(&args.hooks, &args.policies, hub.node_id())?;
    let webhook_tasks = TaskTracker::new();
    let webhooks_stop = CancellationToken::new();
    let webhooks = start_webhooks(
        &args,
        &hub,
        cluster.as_ref(),
        &webhook_tasks,
        &shutdown,
        &webhooks_stop,
    )?;
    http::prometheus();
    let http_listener = bind(args.http).await?;
    let tcp_listener = bind(args.tcp).await?;
    let bound = Bound {
        http: http_listener
            .local_addr()
            .map_err(|source| ServeError::Bind {
                addr: args.http,
                source,
            })?,
        tcp: tcp_listener
            .local_addr()
            .map_err(|source| ServeError::Bind {
                addr: args.tcp,
                source,
            })?,
    };
    let sio_config = sio_config(&args);
    let poll_timeout = sio_config.engine.poll_timeout;
    let tracker = TaskTracker::new();
    let shared = Arc::new_cyclic(|weak| Shared {
        hub: hub.clone(),
        sio: prise_sio::SioLayer::with_handler(
            sio_config,
            Arc::new(transport::sio::HubSio::new(weak.clone())),
        ),
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
        rate: Rate::default(),
        security,
        hooks,
        webhooks,
        ws_deflate: args.ws_deflate(),
        // A zero interval would be a busy loop.
        sse_keepalive: args.sse_keepalive.max(Duration::from_millis(10)),
    });
    if let Some(cluster) = &cluster {
        join_cluster(&args, &shared, cluster, bound.http, poll_timeout).await;
    }
    let listeners = TaskTracker::new();
    listeners.spawn(http::serve(http_listener, Arc::clone(&shared)));
    listeners.spawn(transport::tcp::serve(tcp_listener, Arc::clone(&shared)));
    listeners.spawn(sample_rate(Arc::clone(&shared)));
    listeners.spawn(sweep_limits(Arc::clone(&shared)));
    listeners.close();
    tracing::info!(http = %bound.http, tcp = %bound.tcp, "prise serve ready");
    on_ready(bound);

    shutdown.cancelled().await;
    tracing::info!("shutting down");
    listeners.wait().await;
    shared.sio.shutdown(args.shutdown_timeout).await;
    shared.tracker.close();
    if tokio::time::timeout(args.shutdown_timeout, shared.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = shared.tracker.len(),
            "connections still open at the shutdown deadline"
        );
    }
    // Every session's close is reported: write the last reports.
    webhooks_stop.cancel();
    webhook_tasks.close();
    if tokio::time::timeout(args.shutdown_timeout, webhook_tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("webhook outbox still writing at the shutdown deadline");
    }
    if let Some(cluster) = cluster {
        cluster.shutdown().await;
    }
    hub.flush().await.map_err(|e| match e {
        prise_hub::HubError::Store(s) => ServeError::Store(s),
        other => ServeError::Store(StoreError::Database(other.to_string())),
    })?;
    tracing::info!("stopped");
    Ok(())
}

/// Opens the webhook outbox (the store's SQLite file, or memory) and starts
/// its writer and sender, with `--webhook-url`.
fn start_webhooks(
    args: &ServeArgs,
    hub: &Hub,
    cluster: Option<&RedisCluster>,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
    stop: &CancellationToken,
) -> Result<Option<webhooks::Webhooks>, ServeError> {
    if args.webhooks.webhook_url.is_none() {
        return Ok(None);
    }
    let outbox = match (cluster, args.store) {
        (Some(c), _) => webhooks::outbox::Outbox::Redis(c.webhook_outbox()),
        (None, StoreKind::Memory) => webhooks::outbox::Outbox::memory(),
        (None, StoreKind::Sqlite) => webhooks::outbox::Outbox::sqlite(&args.data.join("prise.db"))?,
    };
    let secret = hooks::secret(&args.hooks)?;
    Ok(webhooks::Webhooks::start(
        &args.webhooks,
        secret.as_deref(),
        outbox,
        hub,
        tasks,
        shutdown,
        stop,
    )?)
}

/// Publishes this node's HTTP address and lets its Socket.IO engine
/// forward requests of sessions held by other nodes (see `forward`).
async fn join_cluster(
    args: &ServeArgs,
    shared: &Shared,
    cluster: &RedisCluster,
    http: SocketAddr,
    poll_timeout: Duration,
) {
    if shared.security.tls.is_some() {
        tracing::warn!(
            "with TLS on, long-polling requests are not forwarded between nodes \
             (they need plain HTTP): put a TLS-terminating balancer in front instead"
        );
        return;
    }
    let address = args.advertise.clone().unwrap_or_else(|| http.to_string());
    if args.advertise.is_none() && http.ip().is_unspecified() {
        tracing::warn!(
            %http,
            "listening on every interface: set --advertise to an address other nodes can reach"
        );
    }
    if let Err(e) = cluster.advertise(&address).await {
        tracing::warn!(error = %e, "cannot publish this node's address yet");
    }
    let link = http::forward::ClusterLink::new(
        cluster.clone(),
        args.max_frame,
        poll_timeout,
        shared.shutdown.clone(),
        shared.tracker.clone(),
    );
    shared.sio.set_cluster(Arc::new(link));
    let every = (args.presence_ttl / 3).max(Duration::from_millis(500));
    shared.tracker.spawn(http::forward::exempt_peers(
        cluster.clone(),
        Arc::clone(&shared.security.ips),
        every,
        shared.shutdown.clone(),
    ));
    tracing::info!(%address, "socket.io sessions reachable from every node");
}

/// The Socket.IO settings for the hub: recovery on, limits from the hub's.
fn sio_config(args: &ServeArgs) -> prise_sio::SioConfig {
    let mut config = prise_sio::SioConfig::default();
    config.recovery = true;
    config.engine.max_payload = args.max_frame;
    config.engine.max_queued_packets = args.queue_depth;
    config.engine.max_sessions = args.max_connections;
    // The same allow-list as /ws: browsers on other sites reach
    // long-polling only from these origins.
    config.engine.cors.allowed_origins = args.security.allowed_origins.clone();
    config.engine.cors.credentials = false;
    config.engine.ws = prise_ws::WsConfig::capped(args.max_frame, args.ws_deflate());
    config.namespaces = args.policies.namespaces().map(|n| n.name.clone()).collect();
    config
}

/// Samples the publish counter once a second for the dashboard's rate.
async fn sample_rate(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last = shared.hub.stats().messages();
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            _ = tick.tick() => {
                let now = shared.hub.stats().messages();
                shared.rate.set((now - last) as f64);
                last = now;
            }
        }
    }
}

/// Drops idle per-IP rate-limit entries so the table stays bounded.
async fn sweep_limits(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(security::ratelimit::SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            _ = tick.tick() => {
                shared.security.ips.sweep();
            }
        }
    }
}
