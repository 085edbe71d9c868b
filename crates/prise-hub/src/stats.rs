//! Counters for the dashboard (`/stats`) and Prometheus (`/metrics`).

use crate::Transport;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Live counters of the hub. Updated on the hot path with relaxed atomics;
/// mirrored into the `metrics` registry as `prise_*` series.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    connections: [AtomicU64; Transport::COUNT],
    messages: AtomicU64,
    deliveries: AtomicU64,
    slow_consumers: AtomicU64,
    ephemeral_dropped: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            connections: Default::default(),
            messages: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            slow_consumers: AtomicU64::new(0),
            ephemeral_dropped: AtomicU64::new(0),
        }
    }
}

impl Stats {
    pub(crate) fn connected(&self, t: Transport) {
        let n = self.connections[t as usize].fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("prise_connections", "transport" => t.as_str()).set(n as f64);
        metrics::counter!("prise_connections_total", "transport" => t.as_str()).increment(1);
    }

    pub(crate) fn disconnected(&self, t: Transport) {
        let n = self.connections[t as usize].fetch_sub(1, Ordering::Relaxed) - 1;
        metrics::gauge!("prise_connections", "transport" => t.as_str()).set(n as f64);
    }

    pub(crate) fn published(&self, fanout: usize) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.deliveries.fetch_add(fanout as u64, Ordering::Relaxed);
        metrics::counter!("prise_messages_published_total").increment(1);
        metrics::counter!("prise_deliveries_total").increment(fanout as u64);
    }

    pub(crate) fn slow_consumer(&self, t: Transport) {
        self.slow_consumers.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("prise_slow_consumer_disconnects_total", "transport" => t.as_str())
            .increment(1);
    }

    pub(crate) fn ephemeral_dropped(&self, n: usize) {
        self.ephemeral_dropped
            .fetch_add(n as u64, Ordering::Relaxed);
        metrics::counter!("prise_ephemeral_dropped_total").increment(n as u64);
    }

    /// Ephemeral messages not delivered to a member whose queue was full,
    /// since start.
    pub fn ephemeral_drops(&self) -> u64 {
        self.ephemeral_dropped.load(Ordering::Relaxed)
    }

    /// Open connections on one transport.
    pub fn connections(&self, t: Transport) -> u64 {
        self.connections[t as usize].load(Ordering::Relaxed)
    }

    /// Open connections over all transports.
    pub fn connections_total(&self) -> u64 {
        self.connections
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Messages published since start.
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    /// Message deliveries to sessions since start.
    pub fn deliveries(&self) -> u64 {
        self.deliveries.load(Ordering::Relaxed)
    }

    /// Sessions disconnected as slow consumers since start.
    pub fn slow_consumers(&self) -> u64 {
        self.slow_consumers.load(Ordering::Relaxed)
    }

    /// Seconds since the hub started.
    pub fn uptime_seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}
