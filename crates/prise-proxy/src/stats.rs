//! Proxy-wide counters and their Prometheus text rendering.
//!
//! Plain atomics owned by one proxy instance (not a process-global recorder), so several
//! proxies in one process, as in tests, each report their own figures.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::backend::BackendStatus;

/// One per-backend series: name, type, help, and how to read it from a snapshot.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&BackendStatus) -> u64,
);

/// Counters of one proxy.
#[derive(Debug, Default)]
pub struct Stats {
    /// Client connections accepted.
    pub accepted: AtomicU64,
    /// Client connections open now.
    pub active: AtomicU64,
    /// Clients closed because no healthy backend could be connected.
    pub no_backend: AtomicU64,
    /// Failed connect attempts to backends.
    pub connect_failures: AtomicU64,
    /// Failed TLS handshakes (client side or backend side).
    pub tls_failures: AtomicU64,
    /// Connections closed by the idle timeout.
    pub idle_closed: AtomicU64,
    /// Bytes relayed from clients to backends.
    pub bytes_up: AtomicU64,
    /// Bytes relayed from backends to clients.
    pub bytes_down: AtomicU64,
    /// Bytes (of `bytes_up` + `bytes_down`) that moved by splice(2), never entering user space.
    pub bytes_spliced: AtomicU64,
    /// Configuration reloads applied.
    pub reloads: AtomicU64,
    /// Clients that had to wait because every candidate backend was at its `maxconn`.
    pub queued: AtomicU64,
    /// Clients closed because the wait queue was full.
    pub queue_full: AtomicU64,
    /// Clients closed after waiting the whole queue timeout.
    pub queue_timeouts: AtomicU64,
    /// Clients closed for a missing, malformed or late PROXY protocol header.
    pub bad_proxy_header: AtomicU64,
}

impl Stats {
    /// Renders the counters, the number of clients `queued` now and the per-backend gauges
    /// in the Prometheus text format.
    pub fn render(&self, backends: &[BackendStatus], queued: usize) -> String {
        let mut out = String::with_capacity(2048);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let counters = [
            (
                "prise_proxy_connections_total",
                "counter",
                "Client connections accepted.",
                get(&self.accepted),
            ),
            (
                "prise_proxy_connections_active",
                "gauge",
                "Client connections open now.",
                get(&self.active),
            ),
            (
                "prise_proxy_no_backend_total",
                "counter",
                "Clients closed because no backend could be connected.",
                get(&self.no_backend),
            ),
            (
                "prise_proxy_connect_failures_total",
                "counter",
                "Failed connect attempts to backends.",
                get(&self.connect_failures),
            ),
            (
                "prise_proxy_tls_failures_total",
                "counter",
                "Failed TLS handshakes.",
                get(&self.tls_failures),
            ),
            (
                "prise_proxy_idle_closed_total",
                "counter",
                "Connections closed by the idle timeout.",
                get(&self.idle_closed),
            ),
            (
                "prise_proxy_spliced_bytes_total",
                "counter",
                "Relayed bytes that moved by splice(2).",
                get(&self.bytes_spliced),
            ),
            (
                "prise_proxy_reloads_total",
                "counter",
                "Configuration reloads applied.",
                get(&self.reloads),
            ),
            (
                "prise_proxy_queued_total",
                "counter",
                "Clients that waited for a backend below its maxconn.",
                get(&self.queued),
            ),
            (
                "prise_proxy_queue_waiting",
                "gauge",
                "Clients waiting for a backend below its maxconn now.",
                queued as u64,
            ),
            (
                "prise_proxy_queue_full_total",
                "counter",
                "Clients closed because the wait queue was full.",
                get(&self.queue_full),
            ),
            (
                "prise_proxy_queue_timeouts_total",
                "counter",
                "Clients closed after the queue timeout.",
                get(&self.queue_timeouts),
            ),
            (
                "prise_proxy_bad_proxy_header_total",
                "counter",
                "Clients closed for a bad or missing PROXY protocol header.",
                get(&self.bad_proxy_header),
            ),
        ];
        for (name, kind, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP prise_proxy_bytes_total Bytes relayed.\n# TYPE prise_proxy_bytes_total counter\n\
             prise_proxy_bytes_total{{direction=\"upstream\"}} {}\n\
             prise_proxy_bytes_total{{direction=\"downstream\"}} {}",
            get(&self.bytes_up),
            get(&self.bytes_down)
        );
        let per_backend: [Series; 5] = [
            (
                "prise_proxy_backend_up",
                "gauge",
                "1 if the backend passes its health checks.",
                |b| u64::from(b.up),
            ),
            (
                "prise_proxy_backend_enabled",
                "gauge",
                "1 if the backend is enabled (not drained, disabled or being removed).",
                |b| u64::from(b.state == crate::backend::AdminState::Enabled),
            ),
            (
                "prise_proxy_backend_active",
                "gauge",
                "Connections open to the backend.",
                |b| b.active as u64,
            ),
            (
                "prise_proxy_backend_connections_total",
                "counter",
                "Connections made to the backend.",
                |b| b.connections,
            ),
            (
                "prise_proxy_backend_failures_total",
                "counter",
                "Failed connects and checks of the backend.",
                |b| b.failures,
            ),
        ];
        for (name, kind, help, f) in per_backend {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for b in backends {
                let _ = writeln!(
                    out,
                    "{name}{{backend=\"{}\",id=\"{}\"}} {}",
                    b.addr,
                    b.id,
                    f(b)
                );
            }
        }
        out
    }
}
