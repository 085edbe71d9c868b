//! `prise proxy`: a TCP reverse proxy and load balancer with active health checks.
//!
//! # Design
//!
//! A [`Proxy`] owns its listening sockets for its whole life. Everything else lives in a
//! *configuration generation* (one pool of backends per listener, balancing, timeouts, TLS
//! material, health-check and resolver tasks) behind an `Arc` that each new connection clones
//! at accept time. A
//! reload (SIGHUP re-reads the TOML file) builds a new generation and swaps the pointer:
//! connections already established keep the generation they started with, the listener is
//! never closed, and backends present in both generations keep their health and counters.
//!
//! A pool's membership changes at run time: the admin API adds, drains, disables and removes
//! backends ([`control`]), and names are resolved again every `--resolve-interval`. The
//! balancing algorithms ([`balance`]) are pure functions over the backends that can take a
//! connection (enabled, healthy, primary unless every primary is out), so a lost backend's
//! share goes to all the others by weight. A backend with `maxconn` sends further clients to
//! the listener's bounded wait queue. Each connection relays under its backend's token, which
//! a disable or a drain timeout cancels.
//!
//! Health is a per-backend up/down flag driven by HAProxy-style rise/fall streaks. Active
//! checks (TCP connect, TLS handshake, or send/expect) run in one task per backend; failed
//! connects of real traffic count as failures too (passive marking). Every state change is
//! published on a `watch` channel, which is what tests and the admin view observe.
//!
//! Relayed connections run on a fixed set of relay threads, each a single-threaded event
//! loop (see `--threads`): the accept loop hands each socket to the next thread in turn and a
//! connection then lives on that thread, with no cross-thread wake-ups on the data path.
//!
//! Shutdown is a `tokio_util` `CancellationToken`: the listener
//! closes at once, open connections drain until a deadline, then are cut.
//!
//! Every resource is bounded: a semaphore permit is taken *before* `accept` (max
//! connections), each connection holds two fixed buffers or two pipes of `buffer_size` bytes,
//! and health-check replies are read up to [`config::MAX_EXPECT_READ`] bytes.
//!
//! # Data flow
//!
//! ```text
//!  client ──TCP/TLS──▶ listener ──accept (permit)──▶ connection task
//!                                                      │ PROXY v1/v2 header in (--accept-proxy)
//!                                                      │ pick backend (roundrobin | leastconn |
//!                                                      │   source | consistent; weights, backups;
//!                                                      │   full ⇒ bounded queue; retry on failure)
//!                                                      │ connect (timeout) ─▶ PROXY v1/v2 header
//!                                                      │ TLS to backend (optional)
//!                                                      ▼
//!            plain ⇄ plain on Linux, per direction:
//!              bulk (a read fills 16 KiB):  socket ─splice─▶ pipe ─splice─▶ socket
//!              small messages:              socket ─read─▶ 16 KiB ─write─▶ socket
//!            otherwise (TLS, --no-splice): socket ─read─▶ buffer ─write─▶ socket
//!                                                      │ EOF on one side ⇒ shutdown(WR) on the other
//!                                                      ▼ both directions done / idle / drain deadline
//!                                                    close
//!  health task per backend ──probe every interval──▶ rise/fall ──▶ watch<up>
//!  resolver per generation ──every --resolve-interval──▶ join new addresses, drain vanished
//!  admin (axum) ── /metrics, /status, /backends ◀──▶ counters, snapshots, drain/enable/add/remove
//! ```
#![warn(clippy::unwrap_used)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod admin;
pub mod backend;
pub mod balance;
pub mod config;
mod conn;
pub mod control;
pub mod ctl;
pub mod health;
pub mod pool;
pub mod relay;
mod resolve;
pub mod server;
mod shard;
#[cfg(target_os = "linux")]
mod splice;
pub mod stats;
mod stream;
pub mod tls;

/// The PROXY protocol codec, shared with `prise serve --trust-proxy`.
pub use prise_proto::proxy_header as proxy_protocol;

pub use backend::{AdminState, Backend, BackendId, BackendStatus};
pub use config::{
    BackendConfig, Balance, CheckKind, ConfigError, ListenerConfig, ProxyArgs, ProxyCommand,
    ProxyConfig, ProxyProtocol,
};
pub use pool::{Pick, Pool};
pub use server::{Proxy, ProxyError, ProxyHandle};

use tokio_util::sync::CancellationToken;

/// Runs `prise proxy` until SIGTERM or SIGINT, then drains. SIGHUP rebuilds the
/// configuration from the same flags and the (re-read) TOML file; a bad new configuration
/// is logged and the old one stays in force.
///
/// # Errors
/// The first configuration, TLS material or listener could not be set up.
pub async fn run(args: ProxyArgs) -> Result<(), ProxyError> {
    let config = ProxyConfig::from_args(&args)?;
    let proxy = Proxy::bind(config).await?;
    let handle = proxy.handle();
    tracing::info!(listen = %handle.local_addr(), admin = ?handle.admin_addr(), "proxy listening");
    let shutdown = CancellationToken::new();
    signals(args, handle, shutdown.clone());
    proxy.run(shutdown).await;
    Ok(())
}

#[cfg(unix)]
fn signals(args: ProxyArgs, handle: ProxyHandle, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let streams = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = streams else {
        tracing::warn!("cannot install signal handlers; reload and drain by signal unavailable");
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    match ProxyConfig::from_args(&args).map_err(ProxyError::from)
                        .and_then(|c| handle.reload(c))
                    {
                        Ok(()) => {}
                        Err(e) => tracing::error!(error = %e, "reload failed, keeping the old configuration"),
                    }
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        tracing::info!("shutdown requested");
        shutdown.cancel();
    });
}

#[cfg(not(unix))]
fn signals(_args: ProxyArgs, _handle: ProxyHandle, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        shutdown.cancel();
    });
}
