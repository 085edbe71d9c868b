//! What keeps a dead or slow backend from piling up requests: a bounded
//! number of calls in flight, and a circuit breaker. After
//! [`TRIP_AFTER`] failures in a row the breaker opens: calls fail at once,
//! without reaching the backend, for [`OPEN_FOR`]; then one call probes,
//! and its success closes the breaker again.

use super::http::Failure;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// Failures in a row that open the breaker.
pub(crate) const TRIP_AFTER: u32 = 5;
/// How long an open breaker refuses calls before one probes.
pub(crate) const OPEN_FOR: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

/// The in-flight bound and the breaker of one backend.
#[derive(Debug)]
pub(crate) struct Gate {
    slots: Semaphore,
    breaker: Mutex<Breaker>,
}

/// Leave to call the backend; say how it went with [`Pass::done`].
#[derive(Debug)]
pub(crate) struct Pass<'a> {
    gate: &'a Gate,
    _slot: SemaphorePermit<'a>,
    probe: bool,
    reported: bool,
}

impl Gate {
    /// A gate letting `concurrency` calls through at once (at least one).
    pub(crate) fn new(concurrency: usize) -> Self {
        Self {
            slots: Semaphore::new(concurrency.clamp(1, Semaphore::MAX_PERMITS)),
            breaker: Mutex::new(Breaker::default()),
        }
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits (until `deadline`) for a free slot, unless the breaker is open.
    ///
    /// # Errors
    /// [`Failure::CircuitOpen`] while the breaker is open (or another call
    /// probes), [`Failure::Timeout`] when no slot frees in time.
    pub(crate) async fn enter(&self, deadline: Instant) -> Result<Pass<'_>, Failure> {
        let probe = {
            let mut b = self.breaker();
            match b.open_until {
                Some(until) if Instant::now() < until || b.probing => {
                    return Err(Failure::CircuitOpen);
                }
                Some(_) => {
                    b.probing = true;
                    true
                }
                None => false,
            }
        };
        let slot = tokio::time::timeout_at(deadline, self.slots.acquire()).await;
        match slot {
            Ok(Ok(slot)) => Ok(Pass {
                gate: self,
                _slot: slot,
                probe,
                reported: false,
            }),
            _ => {
                if probe {
                    self.breaker().probing = false;
                }
                Err(Failure::Timeout)
            }
        }
    }

    /// Is the breaker open now?
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.breaker().open_until.is_some()
    }
}

impl Pass<'_> {
    /// The call answered (`true`) or failed (`false`).
    pub(crate) fn done(mut self, ok: bool) {
        self.reported = true;
        let mut b = self.gate.breaker();
        if self.probe {
            b.probing = false;
        }
        if ok {
            *b = Breaker::default();
        } else {
            b.failures = b.failures.saturating_add(1);
            if self.probe || b.failures >= TRIP_AFTER {
                b.open_until = Some(Instant::now() + OPEN_FOR);
                tracing::warn!(failures = b.failures, "hook backend failing: calls paused");
            }
        }
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        // A call given up by its caller says nothing about the backend.
        if !self.reported && self.probe {
            self.gate.breaker().probing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(50)
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_failures_and_closes_after_a_good_probe() {
        let g = Gate::new(4);
        for _ in 0..TRIP_AFTER {
            g.enter(soon()).await.unwrap().done(false);
        }
        assert!(matches!(g.enter(soon()).await, Err(Failure::CircuitOpen)));
        tokio::time::advance(OPEN_FOR).await;
        let probe = g.enter(soon()).await.unwrap();
        // One probe at a time.
        assert!(matches!(g.enter(soon()).await, Err(Failure::CircuitOpen)));
        probe.done(true);
        assert!(!g.is_open());
        g.enter(soon()).await.unwrap().done(true);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_at_once() {
        let g = Gate::new(1);
        for _ in 0..TRIP_AFTER {
            g.enter(soon()).await.unwrap().done(false);
        }
        tokio::time::advance(OPEN_FOR).await;
        g.enter(soon()).await.unwrap().done(false);
        assert!(matches!(g.enter(soon()).await, Err(Failure::CircuitOpen)));
    }

    #[tokio::test(start_paused = true)]
    async fn calls_beyond_the_bound_wait_then_time_out() {
        let g = Gate::new(1);
        let held = g.enter(soon()).await.unwrap();
        assert!(matches!(g.enter(soon()).await, Err(Failure::Timeout)));
        drop(held);
        g.enter(soon()).await.unwrap().done(true);
    }
}
