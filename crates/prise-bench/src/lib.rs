//! prise-bench: `prise bench`, the load generator for the hub.
//!
//! # Design
//!
//! Four benchmarks, each bounded in count and time, each printing one JSON
//! line on stdout (for scripts) and a human summary on stderr, with a
//! progress bar on stderr:
//!
//! - `connect`: N idle connections, spread over loopback source addresses;
//!   with `--pid`, the server's RSS growth per connection;
//! - `fanout`: N subscribers in one room, one publisher at a bounded rate;
//!   deliveries per second, latency p50/p99/max, lost, duplicated and
//!   out-of-order messages, and (with `--pid`) deliveries per server CPU-second;
//! - `echo`: clients publishing and waiting for the acknowledgement in a loop;
//!   acks per second, latency, acks per server CPU-second;
//! - `bigroom`: one process's share of a room of thousands, driven phase by
//!   phase from stdin by `scripts/bench-bigroom.sh` (join times, the
//!   largest join answer, deliveries of messages to the room).
//!
//! ```text
//!  clients (client.rs: tcp | ws | sio) ──▶ server under test
//!  /proc/PID/{status,stat} ──▶ RSS and CPU of the server (procfs.rs)
//! ```
//!
//! The bench speaks the hub's protocols and never links the hub, so it can
//! measure any server with the same events (e.g. a Node Socket.IO server).
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used)]

mod bigroom;
pub mod client;
mod procfs;

use client::{Client, Target};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Most connections one `connect` run opens (one process holds at most
/// 20,000 files here; run several processes for more).
pub const MAX_CONNECTIONS: usize = 19_000;
/// Longest run of `fanout` or `echo`.
pub const MAX_DURATION: Duration = Duration::from_secs(600);

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The target URL is not usable.
    #[error("bad target: {0}")]
    Target(String),
    /// A socket error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server answered something unexpected.
    #[error("protocol: {0}")]
    Protocol(String),
    /// An argument is out of bounds.
    #[error("{0}")]
    Bounds(String),
}

/// Arguments shared by every benchmark.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Server: tcp://IP:PORT (line protocol), ws://IP:PORT[/ws] (WebSocket JSON), sio://IP:PORT (Socket.IO).
    #[arg(long, default_value = "ws://127.0.0.1:7878/ws")]
    pub target: String,
    /// Spread connections over this many source addresses 127.0.0.1, 127.0.0.2, …
    #[arg(long, default_value_t = 1)]
    pub sources: u8,
    /// Process id of the server, to report its memory and CPU.
    #[arg(long)]
    pub pid: Option<u32>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl Common {
    fn source(&self, i: usize) -> Option<IpAddr> {
        (self.sources > 1).then(|| {
            // i % sources < 255, so the last octet stays in 1..=255.
            let n = (i % usize::from(self.sources)) as u8;
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, n + 1))
        })
    }
}

/// `prise bench` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchCommand {
    /// Open N idle connections and hold them; report the server's RSS per connection.
    Connect {
        #[command(flatten)]
        /// Target and measurement options.
        common: Common,
        /// Connections to open.
        #[arg(long, short = 'n', default_value_t = 1000)]
        connections: usize,
        /// Connections being opened at once.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// How long to hold them before measuring (lets the server settle).
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        hold: Duration,
    },
    /// N subscribers in one room, one publisher at a fixed rate.
    Fanout {
        #[command(flatten)]
        /// Target and measurement options.
        common: Common,
        /// Subscribers.
        #[arg(long, short = 'n', default_value_t = 100)]
        subscribers: usize,
        /// Messages per second offered by the publisher.
        #[arg(long, default_value_t = 100)]
        rate: u32,
        /// How long to publish.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Padding added to each message, in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Room to use.
        #[arg(long, default_value = "bench")]
        room: String,
    },
    /// One process's share of a big room, phase by phase from stdin
    /// (`join`, `publish M`, `count M`, `quit`): see scripts/bench-bigroom.sh.
    Bigroom {
        #[command(flatten)]
        /// Target and measurement options.
        common: Common,
        /// Members this process connects and joins.
        #[arg(long, short = 'n', default_value_t = 1000)]
        members: usize,
        /// Room to use.
        #[arg(long, default_value = "big")]
        room: String,
        /// Joins in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// This process publishes when told (`publish M`), from one more connection.
        #[arg(long)]
        publisher: bool,
    },
    /// Clients publishing and waiting for each acknowledgement, in a loop.
    Echo {
        #[command(flatten)]
        /// Target and measurement options.
        common: Common,
        /// Concurrent clients.
        #[arg(long, short = 'n', default_value_t = 16)]
        clients: usize,
        /// How long to run.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Padding added to each message, in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
}

/// Arguments of `prise bench`.
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct BenchArgs {
    /// The benchmark.
    #[command(subcommand)]
    pub command: BenchCommand,
}

fn progress(len: u64, quiet: bool, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b.set_message(what.to_owned());
    b
}

fn latency_json(h: &Histogram<u64>) -> Value {
    let ms = |v: u64| v as f64 / 1000.0;
    json!({
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
        "samples": h.len(),
    })
}

/// Runs a benchmark; writes the JSON line to `out` and the summary to `summary`.
///
/// # Errors
/// Bad arguments or a failure to reach the server.
pub async fn run(
    args: BenchArgs,
    out: &mut dyn Write,
    summary: &mut dyn Write,
) -> Result<Value, BenchError> {
    let report = match args.command {
        BenchCommand::Connect {
            common,
            connections,
            concurrency,
            hold,
        } => connect(&common, connections, concurrency, hold).await?,
        BenchCommand::Fanout {
            common,
            subscribers,
            rate,
            duration,
            size,
            room,
        } => fanout(&common, subscribers, rate, duration, size, &room).await?,
        BenchCommand::Echo {
            common,
            clients,
            duration,
            size,
        } => echo(&common, clients, duration, size).await?,
        BenchCommand::Bigroom {
            common,
            members,
            room,
            concurrency,
            publisher,
        } => bigroom::bigroom(&common, members, &room, concurrency, publisher, out).await?,
    };
    writeln!(out, "{report}")?;
    writeln!(summary, "{}", human(&report))?;
    Ok(report)
}

fn human(r: &Value) -> String {
    match r["bench"].as_str() {
        Some("connect") => format!(
            "connect: {} of {} connections open in {:.2}s ({} failed){}",
            r["open"],
            r["requested"],
            r["connect_seconds"].as_f64().unwrap_or(0.0),
            r["failed"],
            r["server_rss_bytes_per_connection"]
                .as_f64()
                .map(|b| format!(
                    "; server RSS +{:.0} B per connection ({:.2} KiB)",
                    b,
                    b / 1024.0
                ))
                .unwrap_or_default()
        ),
        Some("fanout") => format!(
            "fanout: {} deliveries/s to {} subscribers (offered {} msg/s, published {}); latency p50 {} ms, p99 {} ms, max {} ms; lost {}, duplicated {}, out of order {}{}",
            r["deliveries_per_second"].as_f64().map_or(0.0, f64::round),
            r["subscribers"],
            r["rate"],
            r["published"],
            r["latency"]["p50_ms"],
            r["latency"]["p99_ms"],
            r["latency"]["max_ms"],
            r["lost"],
            r["duplicated"],
            r["out_of_order"],
            r["deliveries_per_server_cpu_second"]
                .as_f64()
                .map(|v| format!("; {v:.0} deliveries per server CPU-second"))
                .unwrap_or_default()
        ),
        Some("echo") => format!(
            "echo: {} acks/s over {} clients; latency p50 {} ms, p99 {} ms, max {} ms{}",
            r["acks_per_second"].as_f64().map_or(0.0, f64::round),
            r["clients"],
            r["latency"]["p50_ms"],
            r["latency"]["p99_ms"],
            r["latency"]["max_ms"],
            r["acks_per_server_cpu_second"]
                .as_f64()
                .map(|v| format!("; {v:.0} acks per server CPU-second"))
                .unwrap_or_default()
        ),
        Some("bigroom") => format!(
            "bigroom: {} of {} members joined {} ({} failed, {} dropped); joins done {} to {} ms after the signal; largest join answer {} bytes; {} deliveries",
            r["joined"],
            r["members"],
            r["room"],
            r["failed"],
            r["dropped"],
            r["first_join_unix_ms"]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(r["join_sent_unix_ms"].as_u64().unwrap_or(0)),
            r["last_join_unix_ms"]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(r["join_sent_unix_ms"].as_u64().unwrap_or(0)),
            r["largest_join_answer_bytes"],
            r["deliveries"],
        ),
        _ => r.to_string(),
    }
}

async fn connect(
    common: &Common,
    connections: usize,
    concurrency: usize,
    hold: Duration,
) -> Result<Value, BenchError> {
    if connections == 0 || connections > MAX_CONNECTIONS {
        return Err(BenchError::Bounds(format!(
            "--connections must be 1..={MAX_CONNECTIONS} (run several processes for more)"
        )));
    }
    let target = Target::parse(&common.target)?;
    let rss_before = common.pid.and_then(procfs::rss_bytes);
    let bar = progress(connections as u64, common.quiet, "connecting");
    let started = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..connections {
        let permit = Arc::clone(&sem)
            .acquire_owned()
            .await
            .map_err(|_| BenchError::Bounds("semaphore closed".into()))?;
        let target = target.clone();
        let source = common.source(i);
        let bar = bar.clone();
        tasks.spawn(async move {
            let r = tokio::time::timeout(Duration::from_secs(30), Client::connect(&target, source))
                .await;
            drop(permit);
            bar.inc(1);
            match r {
                Ok(Ok(c)) => Ok(c),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("connect timed out".to_owned()),
            }
        });
    }
    let mut open = Vec::with_capacity(connections);
    let mut failed = 0usize;
    let mut first_error = None;
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(c)) => open.push(c),
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    tokio::time::sleep(hold).await;
    let rss_after = common.pid.and_then(procfs::rss_bytes);
    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) if !open.is_empty() => {
            Some((a.saturating_sub(b)) as f64 / open.len() as f64)
        }
        _ => None,
    };
    let report = json!({
        "bench": "connect",
        "target": common.target,
        "requested": connections,
        "open": open.len(),
        "failed": failed,
        "first_error": first_error,
        "connect_seconds": connect_seconds,
        "server_rss_before_bytes": rss_before,
        "server_rss_after_bytes": rss_after,
        "server_rss_bytes_per_connection": per_conn,
    });
    drop(open);
    Ok(report)
}

/// Per-subscriber bookkeeping of what arrived.
#[derive(Default)]
struct Seen {
    next: u64,
    received: u64,
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
}

impl Seen {
    fn record(&mut self, n: u64) {
        self.received += 1;
        if n == self.next {
            self.next += 1;
        } else if n > self.next {
            self.lost += n - self.next;
            self.next = n + 1;
        } else {
            // Older than expected: either counted lost earlier (now late) or seen twice.
            if self.lost > 0 {
                self.lost -= 1;
                self.out_of_order += 1;
            } else {
                self.duplicated += 1;
            }
        }
    }
}

/// Longest wait for the server to go quiet before a timed run.
const SETTLE_MAX: Duration = Duration::from_secs(30);
/// The server counts as quiet below this share of one core.
const SETTLE_IDLE: f64 = 0.05;

/// Waits until the server is quiet: with `--pid`, until its CPU use over a
/// 250 ms window falls below [`SETTLE_IDLE`] of one core (at most
/// [`SETTLE_MAX`]); without, a fixed half second.
async fn settle(pid: Option<u32>) {
    let Some(pid) = pid else {
        tokio::time::sleep(Duration::from_millis(500)).await;
        return;
    };
    let window = Duration::from_millis(250);
    let deadline = Instant::now() + SETTLE_MAX;
    let mut last = procfs::cpu_seconds(pid);
    while Instant::now() < deadline {
        tokio::time::sleep(window).await;
        let now = procfs::cpu_seconds(pid);
        match (last, now) {
            (Some(a), Some(b)) if b - a < SETTLE_IDLE * window.as_secs_f64() => return,
            (_, None) => return,
            _ => last = now,
        }
    }
}

async fn fanout(
    common: &Common,
    subscribers: usize,
    rate: u32,
    duration: Duration,
    size: usize,
    room: &str,
) -> Result<Value, BenchError> {
    if subscribers == 0 || subscribers > MAX_CONNECTIONS {
        return Err(BenchError::Bounds(format!(
            "--subscribers must be 1..={MAX_CONNECTIONS}"
        )));
    }
    if duration > MAX_DURATION || rate == 0 {
        return Err(BenchError::Bounds(format!(
            "--duration must be at most {}s and --rate positive",
            MAX_DURATION.as_secs()
        )));
    }
    let target = Target::parse(&common.target)?;
    let epoch = Instant::now();
    let mut subs = Vec::with_capacity(subscribers);
    let bar = progress(subscribers as u64, common.quiet, "subscribing");
    for i in 0..subscribers {
        let mut c = Client::connect(&target, common.source(i)).await?;
        c.join(room).await?;
        subs.push(c);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let total = (u64::from(rate) * duration.as_millis() as u64) / 1000;
    let received_all = Arc::new(AtomicU64::new(0));
    let mut readers = tokio::task::JoinSet::new();
    for mut c in subs {
        let received_all = Arc::clone(&received_all);
        readers.spawn(async move {
            let mut seen = Seen::default();
            let mut hist =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            while seen.next < total {
                let Ok(m) = c.next_message().await else { break };
                let (Some(n), Some(t)) = (m.content["n"].as_u64(), m.content["t"].as_u64()) else {
                    continue;
                };
                let now = epoch.elapsed().as_micros() as u64;
                let _ = hist.record(now.saturating_sub(t).max(1));
                seen.record(n);
                received_all.fetch_add(1, Ordering::Relaxed);
            }
            (seen, hist)
        });
    }
    let mut publisher = Client::connect(&target, common.source(subscribers)).await?;
    publisher.join(room).await?;
    // Each join is announced to the members already there (a hub with
    // presence sends n(n-1)/2 `userJoined` pushes for n subscribers): let
    // that settle so the timed part measures the messages alone.
    settle(common.pid).await;
    let cpu_before = common.pid.and_then(procfs::cpu_seconds);
    let pad = "x".repeat(size);
    let bar = progress(total, common.quiet, "publishing");
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut published = 0u64;
    for n in 0..total {
        tick.tick().await;
        let t = epoch.elapsed().as_micros() as u64;
        publisher
            .publish(room, &json!({"n": n, "t": t, "pad": pad}))
            .await?;
        published += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();
    // Let the last deliveries arrive (bounded).
    let expected = total * subscribers as u64;
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    while received_all.load(Ordering::Relaxed) < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = common.pid.and_then(procfs::cpu_seconds);
    readers.abort_all();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let (mut lost, mut dup, mut ooo, mut received) = (0, 0, 0, 0);
    while let Some(r) = readers.join_next().await {
        if let Ok((seen, h)) = r {
            let _ = hist.add(&h);
            lost += seen.lost + total.saturating_sub(seen.next);
            dup += seen.duplicated;
            ooo += seen.out_of_order;
            received += seen.received;
        }
    }
    let received = received.max(received_all.load(Ordering::Relaxed));
    if received < expected && lost == 0 {
        lost = expected - received;
    }
    let cpu = match (cpu_before, cpu_after) {
        (Some(b), Some(a)) => Some(a - b),
        _ => None,
    };
    Ok(json!({
        "bench": "fanout",
        "target": common.target,
        "subscribers": subscribers,
        "rate": rate,
        "published": published,
        "expected_deliveries": expected,
        "deliveries": received,
        "seconds": elapsed,
        "deliveries_per_second": received as f64 / elapsed,
        "latency": latency_json(&hist),
        "lost": lost,
        "duplicated": dup,
        "out_of_order": ooo,
        "server_cpu_seconds": cpu,
        "deliveries_per_server_cpu_second": cpu.filter(|c| *c > 0.0).map(|c| received as f64 / c),
    }))
}

async fn echo(
    common: &Common,
    clients: usize,
    duration: Duration,
    size: usize,
) -> Result<Value, BenchError> {
    if clients == 0 || clients > MAX_CONNECTIONS || duration > MAX_DURATION {
        return Err(BenchError::Bounds(format!(
            "--clients must be 1..={MAX_CONNECTIONS} and --duration at most {}s",
            MAX_DURATION.as_secs()
        )));
    }
    let target = Target::parse(&common.target)?;
    let mut conns = Vec::with_capacity(clients);
    for i in 0..clients {
        let mut c = Client::connect(&target, common.source(i)).await?;
        c.join(&format!("echo-{i}")).await?;
        conns.push(c);
    }
    settle(common.pid).await;
    let cpu_before = common.pid.and_then(procfs::cpu_seconds);
    let bar = progress(duration.as_secs().max(1), common.quiet, "echo");
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    let pad = "x".repeat(size);
    for (i, mut c) in conns.into_iter().enumerate() {
        let pad = pad.clone();
        tasks.spawn(async move {
            let room = format!("echo-{i}");
            let mut hist =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            let mut n = 0u64;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                if c.publish(&room, &json!({"n": n, "pad": pad}))
                    .await
                    .is_err()
                {
                    break;
                }
                let _ = hist.record((t0.elapsed().as_micros() as u64).max(1));
                n += 1;
            }
            hist
        });
    }
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_secs(1)).await;
                bar.inc(1);
            }
        })
    };
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    while let Some(r) = tasks.join_next().await {
        if let Ok(h) = r {
            let _ = hist.add(&h);
        }
    }
    ticker.abort();
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = match (cpu_before, common.pid.and_then(procfs::cpu_seconds)) {
        (Some(b), Some(a)) => Some(a - b),
        _ => None,
    };
    let acks = hist.len();
    Ok(json!({
        "bench": "echo",
        "target": common.target,
        "clients": clients,
        "acks": acks,
        "seconds": elapsed,
        "acks_per_second": acks as f64 / elapsed,
        "latency": latency_json(&hist),
        "server_cpu_seconds": cpu,
        "acks_per_server_cpu_second": cpu.filter(|c| *c > 0.0).map(|c| acks as f64 / c),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_counts_gaps_duplicates_and_reordering() {
        let mut s = Seen::default();
        for n in [0, 1, 3, 2, 2, 4] {
            s.record(n);
        }
        assert_eq!((s.lost, s.out_of_order, s.duplicated, s.next), (0, 1, 1, 5));
        let mut s = Seen::default();
        for n in [0, 2] {
            s.record(n);
        }
        assert_eq!(s.lost, 1);
    }
}
