//! Backends, their health state, and the pool that picks one for each new connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::watch;

use crate::config::Balance;

/// One backend server and what the proxy knows about it.
///
/// The state survives reloads: a backend that stays in the configuration keeps its health,
/// its counters and its open connections.
#[derive(Debug)]
pub struct Backend {
    addr: SocketAddr,
    up: watch::Sender<bool>,
    streaks: Mutex<Streaks>,
    active: AtomicUsize,
    connections: AtomicU64,
    failures: AtomicU64,
}

#[derive(Debug, Default)]
struct Streaks {
    ok: u32,
    fail: u32,
}

/// A snapshot of one backend, as `/status` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BackendStatus {
    /// Address.
    pub addr: SocketAddr,
    /// Whether new connections may go to it.
    pub up: bool,
    /// Connections open to it now.
    pub active: usize,
    /// Connections made to it since start.
    pub connections: u64,
    /// Failed connects and failed checks since start.
    pub failures: u64,
}

impl Backend {
    /// A backend that starts up (as HAProxy's servers do) and is taken down by failures.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            up: watch::Sender::new(true),
            streaks: Mutex::new(Streaks::default()),
            active: AtomicUsize::new(0),
            connections: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// The backend's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether new connections may go to it.
    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// A receiver that sees every change of the up/down state (for tests and the admin view).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }

    /// Connections open to this backend now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// A snapshot of the counters.
    pub fn status(&self) -> BackendStatus {
        BackendStatus {
            addr: self.addr,
            up: self.is_up(),
            active: self.active(),
            connections: self.connections.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }

    /// Records a successful check: `rise` in a row bring a down backend up.
    pub fn record_success(&self, rise: u32) {
        let mut s = self.lock();
        s.fail = 0;
        s.ok = s.ok.saturating_add(1);
        if s.ok >= rise && !self.is_up() {
            tracing::info!(backend = %self.addr, "backend up");
            self.up.send_replace(true);
        }
    }

    /// Records a failed check or connect: `fall` in a row take an up backend down.
    pub fn record_failure(&self, fall: u32) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut s = self.lock();
        s.ok = 0;
        s.fail = s.fail.saturating_add(1);
        if s.fail >= fall && self.is_up() {
            tracing::warn!(backend = %self.addr, "backend down");
            self.up.send_replace(false);
        }
    }

    /// Forces the state (used when active checks are off: every backend is up).
    pub fn force_up(&self) {
        *self.lock() = Streaks::default();
        self.up.send_if_modified(|up| !std::mem::replace(up, true));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Streaks> {
        // The lock is never held across a panic point, so poisoning cannot happen; recover
        // anyway rather than propagate.
        self.streaks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a connection as open until the guard drops.
    pub fn open(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.connections.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(Arc::clone(self))
    }
}

/// Keeps a backend's open-connection count raised while alive.
#[derive(Debug)]
pub struct ActiveGuard(Arc<Backend>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The backends of one configuration and the balancing algorithm over them.
#[derive(Debug)]
pub struct Pool {
    backends: Vec<Arc<Backend>>,
    balance: Balance,
    next: AtomicUsize,
}

impl Pool {
    /// A pool over `backends`.
    pub fn new(backends: Vec<Arc<Backend>>, balance: Balance) -> Self {
        Self {
            backends,
            balance,
            next: AtomicUsize::new(0),
        }
    }

    /// The backends, in configuration order.
    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    /// Picks a healthy backend not in `exclude`, or `None` when there is none.
    ///
    /// Round-robin takes each healthy backend in turn; least-connections takes the one with
    /// the fewest open connections, ties broken in turn so equal backends share the load.
    pub fn pick(&self, exclude: &[SocketAddr]) -> Option<Arc<Backend>> {
        let n = self.backends.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let candidates = (0..n)
            .map(|i| &self.backends[(start + i) % n])
            .filter(|b| b.is_up() && !exclude.contains(&b.addr));
        let chosen = match self.balance {
            Balance::RoundRobin => candidates.into_iter().next(),
            Balance::LeastConn => candidates.min_by_key(|b| b.active()),
        };
        chosen.cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn pool(balance: Balance) -> Pool {
        Pool::new(
            (1..=3).map(|p| Arc::new(Backend::new(addr(p)))).collect(),
            balance,
        )
    }

    #[test]
    fn round_robin_is_exact_and_skips_down() {
        let p = pool(Balance::RoundRobin);
        let picks: Vec<u16> = (0..6).map(|_| p.pick(&[]).unwrap().addr.port()).collect();
        assert_eq!(picks, [1, 2, 3, 1, 2, 3]);
        for _ in 0..3 {
            p.backends[1].record_failure(3);
        }
        assert!(!p.backends[1].is_up());
        assert!((0..10).all(|_| p.pick(&[]).unwrap().addr.port() != 2));
        assert_eq!(p.pick(&[addr(1), addr(3)]).map(|b| b.addr), None);
    }

    #[test]
    fn least_conn_prefers_idle() {
        let p = pool(Balance::LeastConn);
        let _g1 = p.backends[0].open();
        let _g2 = p.backends[2].open();
        assert_eq!(p.pick(&[]).unwrap().addr.port(), 2);
        let _g3 = p.backends[1].open();
        let _g4 = p.backends[1].open();
        let port = p.pick(&[]).unwrap().addr.port();
        assert!(port == 1 || port == 3);
    }

    #[test]
    fn rise_and_fall_need_streaks() {
        let b = Backend::new(addr(1));
        b.record_failure(3);
        b.record_failure(3);
        b.record_success(2);
        b.record_failure(3);
        b.record_failure(3);
        assert!(b.is_up());
        b.record_failure(3);
        assert!(!b.is_up());
        b.record_success(2);
        assert!(!b.is_up());
        b.record_success(2);
        assert!(b.is_up());
    }
}
