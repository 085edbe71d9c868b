//! The backends of one listener and the choice of one for each new connection.
//!
//! A pool's membership changes at run time (backends added or removed through the admin
//! API, addresses appearing or vanishing when a name is resolved again), so the members, the
//! round-robin state and the consistent-hash ring live together behind one lock, taken once
//! per new connection. The choice itself is [`crate::balance`]'s pure functions over the
//! members that may take a connection now.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::backend::{ActiveGuard, Backend, BackendId};
use crate::balance::{self, Ring};
use crate::config::{Balance, MAX_BACKENDS};

/// The outcome of [`Pool::pick`].
#[derive(Debug)]
pub enum Pick {
    /// A backend, counted as open from now on.
    Chosen(Arc<Backend>, ActiveGuard),
    /// Backends can take connections but every candidate is at its `maxconn`: wait for
    /// `Pool::freed`.
    Full,
    /// No backend can take a connection.
    None,
}

/// Why a backend could not join a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// A backend with that address is already a member (and not being removed).
    #[error("a backend with this address is already in the pool")]
    Exists,
    /// The pool holds [`MAX_BACKENDS`] backends.
    #[error("the pool is full ({MAX_BACKENDS} backends)")]
    Full,
}

/// The backends of one listener and the balancing algorithm over them.
#[derive(Debug)]
pub struct Pool {
    balance: Balance,
    members: Mutex<Members>,
    /// Signalled when a connection to a backend with `maxconn` ends.
    freed: Arc<Notify>,
    queued: AtomicUsize,
}

#[derive(Debug)]
struct Members {
    backends: Vec<Arc<Backend>>,
    /// Smooth weighted round-robin state, one per member.
    current: Vec<i64>,
    /// When each member was last chosen (a pick counter), for least-connections ties.
    last_chosen: Vec<u64>,
    picks: u64,
    ring: Ring,
}

impl Members {
    fn new(backends: Vec<Arc<Backend>>) -> Self {
        let mut m = Self {
            backends,
            current: Vec::new(),
            last_chosen: Vec::new(),
            picks: 0,
            ring: Ring::default(),
        };
        m.rebuild();
        m
    }

    /// Resets the round-robin state and rebuilds the ring after a membership change.
    fn rebuild(&mut self) {
        self.current = vec![0; self.backends.len()];
        self.last_chosen = vec![0; self.backends.len()];
        let keys: Vec<(String, u32)> = self
            .backends
            .iter()
            .map(|b| (b.addr().to_string(), b.settings().weight))
            .collect();
        self.ring = Ring::new(keys.iter().map(|(k, w)| (k.as_str(), *w)));
    }
}

impl Pool {
    /// A pool over `backends`.
    pub fn new(backends: Vec<Arc<Backend>>, balance: Balance) -> Self {
        Self {
            balance,
            members: Mutex::new(Members::new(backends)),
            freed: Arc::new(Notify::new()),
            queued: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Members> {
        // Nothing panics while the lock is held; recover rather than propagate anyway.
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The balancing algorithm.
    pub fn balance(&self) -> Balance {
        self.balance
    }

    /// The backends now, in order.
    pub fn backends(&self) -> Vec<Arc<Backend>> {
        self.lock().backends.clone()
    }

    /// Adds a backend at the end.
    ///
    /// # Errors
    /// Its address is already a member, or the pool is full.
    pub(crate) fn join(&self, backend: Arc<Backend>) -> Result<(), JoinError> {
        let mut m = self.lock();
        let taken = m.backends.iter().any(|b| {
            b.addr() == backend.addr() && b.admin_state() != crate::backend::AdminState::Removing
        });
        if taken {
            return Err(JoinError::Exists);
        }
        if m.backends.len() >= MAX_BACKENDS {
            return Err(JoinError::Full);
        }
        m.backends.push(backend);
        m.rebuild();
        Ok(())
    }

    /// Removes a backend; its open connections are not touched.
    pub(crate) fn leave(&self, id: BackendId) -> Option<Arc<Backend>> {
        let mut m = self.lock();
        let i = m.backends.iter().position(|b| b.id() == id)?;
        let b = m.backends.remove(i);
        m.rebuild();
        Some(b)
    }

    /// Signalled whenever a connection to a backend with `maxconn` ends.
    pub(crate) fn freed(&self) -> &Arc<Notify> {
        &self.freed
    }

    /// Clients waiting for a backend below its `maxconn` now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Takes a place in the wait queue, if fewer than `max` clients wait.
    pub(crate) fn enter_queue(&self, max: usize) -> Option<QueueSlot<'_>> {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(QueueSlot(&self.queued))
    }

    /// Picks a backend for a client at `client`, skipping `exclude` (backends that already
    /// failed for this client).
    ///
    /// Candidates are the enabled, healthy primaries; when there is none, the enabled,
    /// healthy backups. Round-robin and least-connections choose among the candidates with
    /// room below their `maxconn`; `source` and `consistent` choose by the client's address
    /// and report [`Pick::Full`] when that backend has no room, so a client keeps its
    /// backend.
    pub fn pick(&self, client: IpAddr, exclude: &[BackendId]) -> Pick {
        let now = Instant::now();
        let mut guard = self.lock();
        let m = &mut *guard;
        let usable: Vec<usize> = (0..m.backends.len())
            .filter(|&i| {
                let b = &m.backends[i];
                b.is_available() && !exclude.contains(&b.id())
            })
            .collect();
        let primaries: Vec<usize> = usable
            .iter()
            .copied()
            .filter(|&i| !m.backends[i].settings().backup)
            .collect();
        let tier = if primaries.is_empty() {
            usable
        } else {
            primaries
        };
        if tier.is_empty() {
            return Pick::None;
        }
        let room = |i: &usize| m.backends[*i].has_room();
        let chosen = match self.balance {
            Balance::RoundRobin => {
                let weights = ramped(&m.backends, now);
                let with_room: Vec<usize> = tier.iter().copied().filter(room).collect();
                balance::smooth_wrr(&mut m.current, &weights, &with_room)
            }
            Balance::LeastConn => {
                let weights = ramped(&m.backends, now);
                let active: Vec<usize> = m.backends.iter().map(|b| b.active()).collect();
                let with_room: Vec<usize> = tier.iter().copied().filter(room).collect();
                let tied = balance::least_loaded(&active, &weights, &with_room);
                // Among equals, the one chosen longest ago: a fair rotation even when the
                // set of equals changes from one pick to the next.
                tied.into_iter().min_by_key(|&i| m.last_chosen[i])
            }
            Balance::Source => {
                let weights: Vec<u64> = m
                    .backends
                    .iter()
                    .map(|b| u64::from(b.settings().weight))
                    .collect();
                balance::weighted_hash(balance::hash_ip(client), &weights, &tier).filter(room)
            }
            Balance::Consistent => m
                .ring
                .lookup(balance::hash_ip(client), |i| tier.contains(&i))
                .filter(room),
        };
        let Some(i) = chosen else {
            return Pick::Full;
        };
        m.picks += 1;
        m.last_chosen[i] = m.picks;
        let backend = Arc::clone(&m.backends[i]);
        match backend.try_open(&self.freed) {
            Some(g) => Pick::Chosen(backend, g),
            // Another pool (an older configuration) took its last slot meanwhile.
            None => Pick::Full,
        }
    }
}

/// Effective (slow-start) weights of every member.
fn ramped(backends: &[Arc<Backend>], now: Instant) -> Vec<u64> {
    backends
        .iter()
        .map(|b| {
            let s = b.settings();
            balance::ramp(s.weight, b.up_for(now), s.slowstart)
        })
        .collect()
}

/// A place in a pool's wait queue, given back on drop.
#[derive(Debug)]
pub(crate) struct QueueSlot<'a>(&'a AtomicUsize);

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::AdminState;
    use crate::config::BackendConfig;
    use std::net::{Ipv4Addr, SocketAddr};

    fn backend(port: u16, f: impl FnOnce(&mut BackendConfig)) -> Arc<Backend> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut c = BackendConfig::new(addr);
        f(&mut c);
        Arc::new(Backend::new(BackendId(u64::from(port)), addr, &c))
    }

    fn pool(balance: Balance) -> Pool {
        Pool::new((1..=3).map(|p| backend(p, |_| ())).collect(), balance)
    }

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn port(p: &Pool) -> Option<u16> {
        match p.pick(CLIENT, &[]) {
            Pick::Chosen(b, _) => Some(b.addr().port()),
            _ => None,
        }
    }

    #[test]
    fn round_robin_shares_a_down_backend_among_all() {
        let p = pool(Balance::RoundRobin);
        let picks: Vec<u16> = (0..6).filter_map(|_| port(&p)).collect();
        assert_eq!(picks, [1, 2, 3, 1, 2, 3]);
        for _ in 0..3 {
            p.backends()[1].record_failure(3, None);
        }
        let picks: Vec<u16> = (0..6).filter_map(|_| port(&p)).collect();
        assert_eq!(picks.iter().filter(|&&x| x == 1).count(), 3);
        assert_eq!(picks.iter().filter(|&&x| x == 3).count(), 3);
        let all = [BackendId(1), BackendId(3)];
        assert!(matches!(p.pick(CLIENT, &all), Pick::None));
    }

    #[test]
    fn least_conn_prefers_idle_and_rotates_ties() {
        let p = pool(Balance::LeastConn);
        let bs = p.backends();
        let freed = Arc::clone(p.freed());
        let _g1 = bs[0].try_open(&freed);
        let _g2 = bs[2].try_open(&freed);
        assert_eq!(port(&p), Some(2));
        for _ in 0..3 {
            bs[1].record_failure(3, None);
        }
        // 1 and 3 tie with one open connection each; picks alternate.
        let picks: Vec<u16> = (0..4).filter_map(|_| port(&p)).collect();
        assert_eq!(picks.iter().filter(|&&x| x == 1).count(), 2, "{picks:?}");
    }

    #[test]
    fn backups_only_while_no_primary() {
        let p = Pool::new(
            vec![backend(1, |_| ()), backend(2, |c| c.backup = true)],
            Balance::RoundRobin,
        );
        assert!((0..4).all(|_| port(&p) == Some(1)));
        p.backends()[0].set_admin(AdminState::Draining);
        assert!((0..4).all(|_| port(&p) == Some(2)));
        p.backends()[0].set_admin(AdminState::Enabled);
        assert_eq!(port(&p), Some(1));
    }

    #[test]
    fn maxconn_full_then_none() {
        let p = Pool::new(
            vec![backend(1, |c| c.maxconn = Some(1))],
            Balance::RoundRobin,
        );
        let held = p.pick(CLIENT, &[]);
        assert!(matches!(held, Pick::Chosen(..)));
        assert!(matches!(p.pick(CLIENT, &[]), Pick::Full));
        drop(held);
        assert!(matches!(p.pick(CLIENT, &[]), Pick::Chosen(..)));
        let slot = p.enter_queue(1);
        assert!(slot.is_some());
        assert!(p.enter_queue(1).is_none());
        drop(slot);
        assert_eq!(p.queued(), 0);
    }

    #[test]
    fn join_refuses_duplicates_and_leave_removes() {
        let p = pool(Balance::Consistent);
        assert_eq!(p.join(backend(1, |_| ())), Err(JoinError::Exists));
        assert!(p.join(backend(4, |_| ())).is_ok());
        assert_eq!(p.backends().len(), 4);
        assert!(p.leave(BackendId(4)).is_some());
        assert!(p.leave(BackendId(4)).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn slowstart_ramps_a_returning_backend() {
        let p = Pool::new(
            vec![
                backend(1, |_| ()),
                backend(2, |c| {
                    c.slowstart = Some(std::time::Duration::from_secs(10))
                }),
            ],
            Balance::RoundRobin,
        );
        let b2 = &p.backends()[1];
        b2.set_admin(AdminState::Disabled);
        b2.set_admin(AdminState::Enabled);
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        // At 1 s of 10 it has about a tenth of the weight.
        let picks: Vec<u16> = (0..110).filter_map(|_| port(&p)).collect();
        let two = picks.iter().filter(|&&x| x == 2).count();
        assert!((5..=15).contains(&two), "{two}");
        tokio::time::advance(std::time::Duration::from_secs(10)).await;
        let picks: Vec<u16> = (0..100).filter_map(|_| port(&p)).collect();
        assert_eq!(picks.iter().filter(|&&x| x == 2).count(), 50);
    }
}
