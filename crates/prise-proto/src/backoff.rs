//! Capped exponential backoff with full jitter: the one retry schedule of
//! the workspace (the toolkit's `--retry`, the Redis subscriber's
//! reconnects).
//!
//! Attempt `n` (from 0) waits a uniformly random time in
//! `[MIN_DELAY, min(cap, base · 2ⁿ)]` ("full jitter", which spreads many
//! clients retrying at once). The floor [`MIN_DELAY`] guarantees a retry
//! loop never spins, even when the draw is zero.
//!
//! Only the delays are computed here, from an attempt number and a random
//! source the caller supplies: no clock, no sleeping. Tests use a seeded RNG
//! and check the exact sequence; the caller waits with its own clock (tokio's
//! in the async crates, which tests can pause).

use std::time::Duration;

use rand::Rng;

/// Default base delay (first ceiling): 100 ms.
pub const DEFAULT_BASE: Duration = Duration::from_millis(100);
/// Default cap on one delay: 10 s.
pub const DEFAULT_CAP: Duration = Duration::from_secs(10);
/// Smallest delay ever returned, so a retry loop cannot busy-spin.
pub const MIN_DELAY: Duration = Duration::from_millis(1);

/// How many retries, and how long to wait between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackoffConfig {
    /// Ceiling of the first delay; doubles at each attempt.
    pub base: Duration,
    /// Largest ceiling.
    pub cap: Duration,
    /// Retries after the first attempt; `None` retries forever.
    pub max_retries: Option<u32>,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            base: DEFAULT_BASE,
            cap: DEFAULT_CAP,
            max_retries: Some(0),
        }
    }
}

impl BackoffConfig {
    /// Ceilings from `base` doubling up to `cap`; `max_retries` retries
    /// after the first attempt (`None`: forever).
    pub const fn new(base: Duration, cap: Duration, max_retries: Option<u32>) -> Self {
        Self {
            base,
            cap,
            max_retries,
        }
    }

    /// The same ceilings, retried forever.
    pub const fn forever(self) -> Self {
        Self {
            max_retries: None,
            ..self
        }
    }

    /// The ceiling of the delay before retry number `attempt` (from 0):
    /// `min(cap, base · 2^attempt)`, never below [`MIN_DELAY`].
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .unwrap_or(self.cap)
            .min(self.cap)
            .max(MIN_DELAY)
    }

    /// The delay before retry number `attempt` (from 0), drawn from `rng`:
    /// uniform in `[0, ceiling(attempt)]`, raised to [`MIN_DELAY`].
    pub fn delay<R: Rng + ?Sized>(&self, attempt: u32, rng: &mut R) -> Duration {
        let ceiling = self.ceiling(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        let drawn = Duration::from_nanos(rng.random_range(0..=nanos));
        drawn.max(MIN_DELAY)
    }
}

/// The state of one retry sequence.
#[derive(Debug)]
pub struct Backoff<R> {
    config: BackoffConfig,
    attempt: u32,
    rng: R,
}

impl<R: Rng> Backoff<R> {
    /// Starts a sequence drawing its jitter from `rng`.
    pub fn new(config: BackoffConfig, rng: R) -> Self {
        Self {
            config,
            attempt: 0,
            rng,
        }
    }

    /// Retries done so far.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The delay before the next retry, or `None` when retries are exhausted.
    pub fn next_delay(&mut self) -> Option<Duration> {
        if self
            .config
            .max_retries
            .is_some_and(|max| self.attempt >= max)
        {
            return None;
        }
        let delay = self.config.delay(self.attempt, &mut self.rng);
        self.attempt = self.attempt.saturating_add(1);
        Some(delay)
    }

    /// Starts the sequence over (after a success): the next delay is again
    /// drawn below `base`, and the retry budget is whole again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn config(max: Option<u32>) -> BackoffConfig {
        BackoffConfig {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1000),
            max_retries: max,
        }
    }

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let c = config(None);
        let ms: Vec<u128> = (0..6).map(|a| c.ceiling(a).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(c.ceiling(u32::MAX), Duration::from_millis(1000));
        let zero = BackoffConfig {
            base: Duration::ZERO,
            ..c
        };
        assert_eq!(zero.ceiling(3), MIN_DELAY);
    }

    #[test]
    fn delays_stay_within_their_jittered_bounds() {
        let c = config(None);
        let mut b = Backoff::new(c, StdRng::seed_from_u64(7));
        for attempt in 0..1000 {
            let d = b.next_delay().unwrap();
            assert!(
                d >= MIN_DELAY && d <= c.ceiling(attempt),
                "{attempt}: {d:?}"
            );
        }
    }

    #[test]
    fn jitter_spreads_over_the_whole_range() {
        // Full jitter: over many draws at the cap, both halves of the range occur.
        let c = config(None);
        let mut b = Backoff::new(c, StdRng::seed_from_u64(1));
        let draws: Vec<Duration> = (0..200).filter_map(|_| b.next_delay()).skip(10).collect();
        assert!(draws.iter().any(|d| *d < Duration::from_millis(300)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(700)));
    }

    #[test]
    fn seeded_sequences_repeat_and_stop_after_max_retries() {
        let a: Vec<_> = std::iter::from_fn({
            let mut b = Backoff::new(config(Some(3)), StdRng::seed_from_u64(42));
            move || b.next_delay()
        })
        .collect();
        let b: Vec<_> = std::iter::from_fn({
            let mut b = Backoff::new(config(Some(3)), StdRng::seed_from_u64(42));
            move || b.next_delay()
        })
        .collect();
        assert_eq!(a.len(), 3);
        assert_eq!(a, b);
        let mut none = Backoff::new(config(Some(0)), StdRng::seed_from_u64(0));
        assert_eq!(none.next_delay(), None);
    }

    #[test]
    fn the_sequence_draws_what_delay_computes() {
        let c = config(None);
        let mut b = Backoff::new(c, StdRng::seed_from_u64(9));
        let mut rng = StdRng::seed_from_u64(9);
        for attempt in 0..20 {
            assert_eq!(b.next_delay(), Some(c.delay(attempt, &mut rng)));
        }
    }

    #[test]
    fn reset_starts_over_below_the_base() {
        let c = config(Some(4));
        let mut b = Backoff::new(c, StdRng::seed_from_u64(5));
        while b.next_delay().is_some() {}
        assert_eq!(b.attempt(), 4);
        b.reset();
        assert_eq!(b.attempt(), 0);
        let d = b.next_delay().unwrap();
        assert!(d >= MIN_DELAY && d <= c.base, "{d:?}");
        assert_eq!(b.attempt(), 1);
    }

    #[test]
    fn zero_draws_are_raised_to_the_floor() {
        /// A source that always draws the bottom of the range.
        struct Zero;
        impl rand::RngCore for Zero {
            fn next_u32(&mut self) -> u32 {
                0
            }
            fn next_u64(&mut self) -> u64 {
                0
            }
            fn fill_bytes(&mut self, dst: &mut [u8]) {
                dst.fill(0);
            }
        }
        let c = config(None);
        for attempt in 0..8 {
            assert_eq!(c.delay(attempt, &mut Zero), MIN_DELAY);
        }
    }
}
