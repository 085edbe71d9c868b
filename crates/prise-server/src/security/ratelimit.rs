//! Rate limits: a token bucket per connection (requests per second with a
//! burst) and, per client IP address, a bucket for new connections plus a cap
//! on concurrent ones.
//!
//! Connections from the addresses of the other nodes of a Redis cluster
//! ([`IpLimiter::set_exempt`]) are not limited per IP: they carry requests
//! of many clients that the forwarding node already admitted.
//!
//! The per-IP table is bounded: entries with no open connection and a full
//! bucket are swept every [`SWEEP_EVERY`], and when the table holds
//! [`MAX_TRACKED_IPS`] addresses a new address is refused (`RATE_LIMITED`)
//! until a sweep frees room. Every refusal is counted in
//! `prise_refused_total{reason}`.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Default requests per second on one connection.
pub const DEFAULT_MESSAGE_RATE: f64 = 50.0;
/// Default burst of requests on one connection.
pub const DEFAULT_MESSAGE_BURST: u32 = 200;
/// Default new connections per second from one IP address.
pub const DEFAULT_IP_CONNECT_RATE: f64 = 50.0;
/// Default burst of new connections from one IP address.
pub const DEFAULT_IP_CONNECT_BURST: u32 = 200;
/// Default most concurrent connections from one IP address.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1024;
/// Most IP addresses tracked at once.
pub const MAX_TRACKED_IPS: usize = 100_000;
/// How often idle per-IP entries are dropped.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Counts a refusal in `prise_refused_total{reason}`.
pub fn refused(reason: &'static str) {
    metrics::counter!("prise_refused_total", "reason" => reason).increment(1);
}

/// A token bucket: `rate` tokens per second, at most `burst` stored.
/// A rate of 0 (or less) disables the limit.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full again (the entry can be forgotten).
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// Rate-limit settings.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RateConfig {
    /// Requests per second per connection (0 disables).
    pub message_rate: f64,
    /// Request burst per connection.
    pub message_burst: u32,
    /// New connections per second per IP (0 disables).
    pub ip_connect_rate: f64,
    /// New-connection burst per IP.
    pub ip_connect_burst: u32,
    /// Concurrent connections per IP (0 disables).
    pub max_connections_per_ip: usize,
}

impl Default for RateConfig {
    fn default() -> Self {
        Self {
            message_rate: DEFAULT_MESSAGE_RATE,
            message_burst: DEFAULT_MESSAGE_BURST,
            ip_connect_rate: DEFAULT_IP_CONNECT_RATE,
            ip_connect_burst: DEFAULT_IP_CONNECT_BURST,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
        }
    }
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IpRefusal {
    /// Too many new connections per second from this address.
    #[error("too many new connections from your address")]
    Rate,
    /// Too many open connections from this address.
    #[error("too many open connections from your address")]
    Concurrent,
    /// The table of addresses is full.
    #[error("server is tracking too many addresses")]
    Table,
}

impl IpRefusal {
    /// Label in `prise_refused_total{reason}`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Rate => "ip_rate",
            Self::Concurrent => "ip_concurrent",
            Self::Table => "ip_table_full",
        }
    }
}

#[derive(Debug)]
struct IpEntry {
    open: usize,
    bucket: TokenBucket,
}

/// Per-IP limits, shared by every listener.
#[derive(Debug)]
pub struct IpLimiter {
    config: RateConfig,
    table: Mutex<HashMap<IpAddr, IpEntry>>,
    /// Addresses of the other nodes of the cluster (bounded by its size).
    exempt: RwLock<HashSet<IpAddr>>,
}

/// Held by a connection; dropping it gives its slot back.
#[derive(Debug)]
pub struct IpPermit {
    limiter: Arc<IpLimiter>,
    ip: IpAddr,
    /// False for an exempt address: nothing to give back.
    counted: bool,
}

impl Drop for IpPermit {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        let mut t = self.limiter.lock();
        if let Some(e) = t.get_mut(&self.ip) {
            e.open = e.open.saturating_sub(1);
        }
    }
}

impl IpLimiter {
    /// A limiter with these settings.
    pub fn new(config: RateConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            table: Mutex::new(HashMap::new()),
            exempt: RwLock::new(HashSet::new()),
        })
    }

    /// Replaces the set of addresses admitted without per-IP limits: the
    /// other nodes of this server's cluster, whose connections carry
    /// requests forwarded for many clients.
    pub fn set_exempt(&self, ips: HashSet<IpAddr>) {
        *self.exempt.write().unwrap_or_else(|e| e.into_inner()) = ips;
    }

    fn is_exempt(&self, ip: IpAddr) -> bool {
        self.exempt
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&ip)
    }

    /// The settings.
    pub fn config(&self) -> &RateConfig {
        &self.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, IpEntry>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a new connection from `ip`, or says why not (and counts it).
    ///
    /// # Errors
    /// An [`IpRefusal`].
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<IpPermit, IpRefusal> {
        if self.is_exempt(ip) {
            return Ok(IpPermit {
                limiter: Arc::clone(self),
                ip,
                counted: false,
            });
        }
        let now = Instant::now();
        let mut t = self.lock();
        if !t.contains_key(&ip) && t.len() >= MAX_TRACKED_IPS {
            refused(IpRefusal::Table.reason());
            return Err(IpRefusal::Table);
        }
        let c = &self.config;
        let e = t.entry(ip).or_insert_with(|| IpEntry {
            open: 0,
            bucket: TokenBucket::new(c.ip_connect_rate, c.ip_connect_burst, now),
        });
        if c.max_connections_per_ip > 0 && e.open >= c.max_connections_per_ip {
            refused(IpRefusal::Concurrent.reason());
            return Err(IpRefusal::Concurrent);
        }
        if !e.bucket.try_take(now) {
            refused(IpRefusal::Rate.reason());
            return Err(IpRefusal::Rate);
        }
        e.open += 1;
        Ok(IpPermit {
            limiter: Arc::clone(self),
            ip,
            counted: true,
        })
    }

    /// Drops entries with no open connection and a full bucket; returns how
    /// many remain.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut t = self.lock();
        t.retain(|_, e| e.open > 0 || !e.bucket.is_full(now));
        t.shrink_to_fit();
        metrics::gauge!("prise_ratelimit_tracked_ips").set(t.len() as f64);
        t.len()
    }

    /// Open connections from `ip`.
    pub fn open(&self, ip: IpAddr) -> usize {
        self.lock().get(&ip).map_or(0, |e| e.open)
    }
}

/// The per-connection request limiter.
#[derive(Debug, Clone)]
pub struct MessageLimiter {
    bucket: TokenBucket,
}

impl MessageLimiter {
    /// A limiter for one connection.
    pub fn new(config: &RateConfig) -> Self {
        Self {
            bucket: TokenBucket::new(config.message_rate, config.message_burst, Instant::now()),
        }
    }

    /// Takes a token for one request; counts a refusal in
    /// `prise_refused_total{reason="rate_limited"}`.
    pub fn check(&mut self) -> bool {
        let ok = self.bucket.try_take(Instant::now());
        if !ok {
            refused("rate_limited");
        }
        ok
    }
}

/// Which listener a connection arrived on (for the refusal's wording).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    /// HTTP: a plain-text 429 response.
    Http,
    /// TCP lines: `ERR RATE_LIMITED`.
    Tcp,
}

/// Admits a freshly accepted connection, or refuses it: on a plain listener
/// the refusal is written without waiting (`429` or `ERR RATE_LIMITED`),
/// then the socket is dropped.
pub(crate) fn admit(
    shared: &crate::Shared,
    stream: &tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    client: std::net::SocketAddr,
    listener: Listener,
) -> Option<IpPermit> {
    match shared.security.ips.admit(client.ip()) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::debug!(%peer, %client, reason = e.reason(), "connection refused");
            if shared.security.tls.is_none() {
                let msg = e.to_string();
                let text = match listener {
                    Listener::Http => format!(
                        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\nRATE_LIMITED {msg}\n",
                        msg.len() + 14
                    ),
                    Listener::Tcp => format!("ERR RATE_LIMITED {msg}\nBYE rate limited\n"),
                };
                let _ = stream.try_write(text.as_bytes());
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3, t0);
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0));
        assert!(b.try_take(t0 + Duration::from_millis(100)));
        assert!(!b.try_take(t0 + Duration::from_millis(100)));
        assert!(b.is_full(t0 + Duration::from_secs(5)));
        let mut off = TokenBucket::new(0.0, 1, t0);
        assert!((0..1000).all(|_| off.try_take(t0)));
    }

    #[test]
    fn ip_limits_and_sweep() {
        let l = IpLimiter::new(RateConfig {
            ip_connect_rate: 1000.0,
            ip_connect_burst: 1000,
            max_connections_per_ip: 2,
            ..RateConfig::default()
        });
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let a = l.admit(ip).unwrap();
        let _b = l.admit(ip).unwrap();
        assert_eq!(l.admit(ip).unwrap_err(), IpRefusal::Concurrent);
        drop(a);
        assert_eq!(l.open(ip), 1);
        let _c = l.admit(ip).unwrap();
        let r = IpLimiter::new(RateConfig {
            ip_connect_rate: 0.001,
            ip_connect_burst: 1,
            ..RateConfig::default()
        });
        drop(r.admit(ip).unwrap());
        assert_eq!(r.admit(ip).unwrap_err(), IpRefusal::Rate);
        assert_eq!(r.sweep(), 1, "bucket not full yet: kept");
    }

    #[test]
    fn cluster_peers_are_not_limited_per_ip() {
        let l = IpLimiter::new(RateConfig {
            ip_connect_rate: 0.001,
            ip_connect_burst: 1,
            max_connections_per_ip: 1,
            ..RateConfig::default()
        });
        let peer: IpAddr = "10.0.0.12".parse().unwrap();
        let other: IpAddr = "10.0.0.99".parse().unwrap();
        l.set_exempt(HashSet::from([peer]));
        let held: Vec<_> = (0..10).map(|_| l.admit(peer).unwrap()).collect();
        assert_eq!(l.open(peer), 0, "exempt connections are not counted");
        let _one = l.admit(other).unwrap();
        assert!(l.admit(other).is_err(), "other addresses keep their limits");
        drop(held);
        l.set_exempt(HashSet::new());
        let _p = l.admit(peer).unwrap();
        assert!(
            l.admit(peer).is_err(),
            "a node that left the cluster is limited again"
        );
    }
}
