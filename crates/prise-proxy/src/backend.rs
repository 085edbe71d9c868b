//! Backends: one server, its health (rise/fall), its administrative state (enabled,
//! draining, disabled, being removed), its counters, and the token that cuts its connections.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::BackendConfig;

/// A backend's identity for the admin API: unique for the life of the process, kept by a
/// backend that survives a reload, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct BackendId(pub u64);

impl fmt::Display for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What the operator (or the resolver) wants of a backend, apart from its health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    /// Takes new connections while healthy.
    Enabled,
    /// No new connection; established ones go on until they end or the drain timeout.
    Draining,
    /// No new connection, and established ones were closed.
    Disabled,
    /// Draining, then removed from its pool once its last connection ends (or at the drain
    /// timeout).
    Removing,
}

/// The outcome of the last health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// Whether it passed.
    pub ok: bool,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Static settings of a backend, from its configuration.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The configured name (`host:port`) it was resolved from.
    pub(crate) name: String,
    pub(crate) weight: u32,
    pub(crate) backup: bool,
    pub(crate) maxconn: Option<usize>,
    pub(crate) slowstart: Option<Duration>,
}

impl Settings {
    pub(crate) fn from_config(c: &BackendConfig) -> Self {
        Self {
            name: c.name.clone(),
            weight: c.weight,
            backup: c.backup,
            maxconn: c.maxconn,
            slowstart: c.slowstart,
        }
    }
}

/// One backend server and what the proxy knows about it.
///
/// The state survives reloads: a backend that stays in the configuration keeps its id,
/// health, administrative state, counters and open connections.
#[derive(Debug)]
pub struct Backend {
    id: BackendId,
    addr: SocketAddr,
    settings: Settings,
    up: watch::Sender<bool>,
    admin: watch::Sender<AdminState>,
    state: Mutex<Health>,
    active: AtomicUsize,
    connections: AtomicU64,
    failures: AtomicU64,
    /// Bumped by every drain, enable and disable, so a drain timer that fires after the
    /// state changed again does nothing.
    epoch: AtomicU64,
    /// Woken when `active` drops to zero.
    idle: Notify,
    /// Parent of every connection token (the proxy's hard stop).
    parent: CancellationToken,
    /// Cancelled to close every connection open now; replaced by a fresh child after.
    cut: Mutex<CancellationToken>,
    /// Cancelled when the backend leaves its pool: ends its health checks.
    retired: CancellationToken,
}

#[derive(Debug, Default)]
struct Health {
    ok: u32,
    fail: u32,
    /// When it last came up (for slow start); `None` when up since start.
    up_since: Option<Instant>,
    last_check: Option<CheckResult>,
}

/// A snapshot of one backend, as `/status` and `GET /backends` show it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BackendStatus {
    /// Identity for the admin API.
    pub id: BackendId,
    /// The configured name it came from (`host:port`).
    pub name: String,
    /// Address.
    pub addr: SocketAddr,
    /// Healthy: passes its checks.
    pub up: bool,
    /// Administrative state.
    pub state: AdminState,
    /// Configured weight.
    pub weight: u32,
    /// Used only while no primary can take connections.
    pub backup: bool,
    /// Most connections at once, if capped.
    pub maxconn: Option<usize>,
    /// Connections open to it now.
    pub active: usize,
    /// Connections made to it since start.
    pub connections: u64,
    /// Failed connects and failed checks since start.
    pub failures: u64,
    /// The last health check, if one ran.
    pub check: Option<CheckResult>,
}

impl Backend {
    /// A backend of `config` at `addr` that starts up (as HAProxy's servers do) and is taken
    /// down by failures.
    pub fn new(id: BackendId, addr: SocketAddr, config: &BackendConfig) -> Self {
        Self::with_health(
            id,
            addr,
            Settings::from_config(config),
            true,
            CancellationToken::new(),
        )
    }

    /// A backend starting `up` or down whose connections end when `parent` is cancelled.
    pub(crate) fn with_health(
        id: BackendId,
        addr: SocketAddr,
        settings: Settings,
        up: bool,
        parent: CancellationToken,
    ) -> Self {
        Self {
            id,
            addr,
            settings,
            up: watch::Sender::new(up),
            admin: watch::Sender::new(AdminState::Enabled),
            state: Mutex::new(Health::default()),
            active: AtomicUsize::new(0),
            connections: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            idle: Notify::new(),
            cut: Mutex::new(parent.child_token()),
            parent,
            retired: CancellationToken::new(),
        }
    }

    /// The backend's id.
    pub fn id(&self) -> BackendId {
        self.id
    }

    /// The backend's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The configured name it was resolved from.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether it passes its health checks.
    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// The administrative state.
    pub fn admin_state(&self) -> AdminState {
        *self.admin.borrow()
    }

    /// Whether new connections may go to it: healthy and enabled.
    pub fn is_available(&self) -> bool {
        self.is_up() && self.admin_state() == AdminState::Enabled
    }

    /// A receiver that sees every change of the up/down state (for tests and the admin view).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }

    /// A receiver that sees every change of the administrative state.
    pub fn subscribe_admin(&self) -> watch::Receiver<AdminState> {
        self.admin.subscribe()
    }

    /// Connections open to this backend now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Connections made to it since start.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// A snapshot of the counters.
    pub fn status(&self) -> BackendStatus {
        BackendStatus {
            id: self.id,
            name: self.settings.name.clone(),
            addr: self.addr,
            up: self.is_up(),
            state: self.admin_state(),
            weight: self.settings.weight,
            backup: self.settings.backup,
            maxconn: self.settings.maxconn,
            active: self.active(),
            connections: self.connections(),
            failures: self.failures.load(Ordering::Relaxed),
            check: self.lock().last_check.clone(),
        }
    }

    /// How long ago it came up, if it came up after start (for slow start).
    pub(crate) fn up_for(&self, now: Instant) -> Option<Duration> {
        self.lock()
            .up_since
            .map(|t| now.saturating_duration_since(t))
    }

    /// Records a successful check: `rise` in a row bring a down backend up.
    pub fn record_success(&self, rise: u32) {
        let mut s = self.lock();
        s.fail = 0;
        s.ok = s.ok.saturating_add(1);
        s.last_check = Some(CheckResult {
            ok: true,
            error: None,
        });
        if s.ok >= rise && !self.is_up() {
            tracing::info!(backend = %self.addr, "backend up");
            s.up_since = Some(Instant::now());
            self.up.send_replace(true);
        }
    }

    /// Records a failed check (`error` says why) or connect (`None`): `fall` in a row take
    /// an up backend down.
    pub fn record_failure(&self, fall: u32, error: Option<String>) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut s = self.lock();
        s.ok = 0;
        s.fail = s.fail.saturating_add(1);
        if let Some(error) = error {
            s.last_check = Some(CheckResult {
                ok: false,
                error: Some(error),
            });
        }
        if s.fail >= fall && self.is_up() {
            tracing::warn!(backend = %self.addr, "backend down");
            self.up.send_replace(false);
        }
    }

    /// Forces the state (used when active checks are off: every backend is up).
    pub fn force_up(&self) {
        let mut s = self.lock();
        s.ok = 0;
        s.fail = 0;
        if !self.is_up() {
            s.up_since = Some(Instant::now());
            self.up.send_replace(true);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        // The lock is never held across a panic point, so poisoning cannot happen; recover
        // anyway rather than propagate.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the administrative state; returns the new drain epoch.
    pub(crate) fn set_admin(&self, state: AdminState) -> u64 {
        if state == AdminState::Enabled && self.admin_state() != AdminState::Enabled {
            self.lock().up_since = Some(Instant::now());
        }
        self.admin.send_replace(state);
        self.epoch.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The drain epoch (see [`set_admin`](Self::set_admin)).
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// The token a new connection to this backend relays under.
    pub(crate) fn connection_token(&self) -> CancellationToken {
        self.cut.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Closes every connection open to it now; later connections are not affected.
    pub(crate) fn cut_connections(&self) {
        let mut cut = self.cut.lock().unwrap_or_else(|e| e.into_inner());
        cut.cancel();
        *cut = self.parent.child_token();
    }

    /// Completes once no connection is open to it.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.active() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Ends its health checks (it left its pool).
    pub(crate) fn retire(&self) {
        self.retired.cancel();
    }

    /// Cancelled once it has left its pool.
    pub(crate) fn retired(&self) -> &CancellationToken {
        &self.retired
    }

    /// Counts a connection as open until the guard drops, unless `maxconn` are open already.
    pub(crate) fn try_open(self: &Arc<Self>, freed: &Arc<Notify>) -> Option<ActiveGuard> {
        let max = self.settings.maxconn.unwrap_or(usize::MAX);
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        self.connections.fetch_add(1, Ordering::Relaxed);
        Some(ActiveGuard {
            backend: Arc::clone(self),
            freed: self.settings.maxconn.map(|_| Arc::clone(freed)),
        })
    }

    /// Whether it has room for one more connection.
    pub(crate) fn has_room(&self) -> bool {
        self.settings.maxconn.is_none_or(|m| self.active() < m)
    }
}

/// Keeps a backend's open-connection count raised while alive.
#[derive(Debug)]
pub struct ActiveGuard {
    backend: Arc<Backend>,
    /// The pool's queue signal, for a backend with `maxconn`.
    freed: Option<Arc<Notify>>,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if self.backend.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.backend.idle.notify_waiters();
        }
        if let Some(f) = &self.freed {
            f.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(maxconn: Option<usize>) -> Arc<Backend> {
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let mut c = BackendConfig::new(addr);
        c.maxconn = maxconn;
        Arc::new(Backend::new(BackendId(1), addr, &c))
    }

    #[test]
    fn rise_and_fall_need_streaks() {
        let b = backend(None);
        b.record_failure(3, None);
        b.record_failure(3, None);
        b.record_success(2);
        b.record_failure(3, None);
        b.record_failure(3, Some("refused".into()));
        assert!(b.is_up());
        b.record_failure(3, None);
        assert!(!b.is_up());
        assert_eq!(
            b.status().check.and_then(|c| c.error).as_deref(),
            Some("refused")
        );
        b.record_success(2);
        assert!(!b.is_up());
        b.record_success(2);
        assert!(b.is_up());
        assert_eq!(b.status().check.map(|c| c.ok), Some(true));
    }

    #[test]
    fn maxconn_caps_open_connections() {
        let b = backend(Some(2));
        let freed = Arc::new(Notify::new());
        let g1 = b.try_open(&freed).unwrap();
        let _g2 = b.try_open(&freed).unwrap();
        assert!(b.try_open(&freed).is_none());
        assert!(!b.has_room());
        drop(g1);
        assert!(b.has_room());
        assert!(b.try_open(&freed).is_some());
        assert_eq!(b.connections(), 3);
    }

    #[test]
    fn admin_state_gates_availability() {
        let b = backend(None);
        assert!(b.is_available());
        let e1 = b.set_admin(AdminState::Draining);
        assert!(!b.is_available());
        assert_eq!(b.epoch(), e1);
        b.set_admin(AdminState::Enabled);
        assert!(b.is_available());
        assert_ne!(b.epoch(), e1);
    }

    #[tokio::test]
    async fn cut_ends_only_connections_open_now() {
        let b = backend(None);
        let before = b.connection_token();
        b.cut_connections();
        assert!(before.is_cancelled());
        assert!(!b.connection_token().is_cancelled());
    }
}
