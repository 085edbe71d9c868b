//! `prise probe URL…`: is it up, and how long do the connect and the
//! handshakes take?
//!
//! Every target is probed at once; each does `--count` attempts spaced by
//! `--interval`, timing the TCP connect, the TLS handshake (tls://, wss://)
//! and the WebSocket handshake (ws://, wss://) separately. A target is up
//! when every attempt succeeded. Exit 0 when all targets are up, 1 otherwise.

use std::io::Write as _;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde::Serialize;

use crate::endpoint::{Endpoint, Scheme};
use crate::error::NetError;
use crate::tls::ClientTlsArgs;
use crate::transport::{self, BoxStream, ConnectOptions, SocketArgs, WsClientArgs};

/// Arguments of `prise probe`.
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct ProbeArgs {
    /// Targets: tcp://, tls://, ws://, wss://host:port, or unix:/path.
    #[arg(value_name = "URL", required = true)]
    pub urls: Vec<Endpoint>,
    /// Attempts per target.
    #[arg(long, short = 'c', default_value_t = 1, value_name = "N")]
    pub count: u32,
    /// Time between attempts.
    #[arg(long, short = 'i', default_value = "1s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Bound on each attempt.
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// One JSON object per target on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    /// TLS options.
    pub tls: ClientTlsArgs,
    #[command(flatten)]
    /// WebSocket options.
    pub ws: WsClientArgs,
    /// Connect through a proxy: socks5://host:port (user:pass@ before the host to authenticate) or http://host:port (CONNECT).
    #[arg(long, value_name = "URL")]
    pub proxy: Option<crate::proxy_client::ProxyUrl>,
}

/// Latency summary of one phase, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    /// Fastest.
    pub min: f64,
    /// Mean.
    pub avg: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
}

impl Stats {
    /// Summarises samples; `None` when there are none.
    pub fn of(samples: &[Duration]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        let rank = ((ms.len() as f64) * 0.99).ceil() as usize;
        Some(Self {
            min: ms[0],
            avg: ms.iter().sum::<f64>() / ms.len() as f64,
            p99: ms[rank.clamp(1, ms.len()) - 1],
        })
    }
}

/// The timings of one successful attempt.
#[derive(Debug, Clone, Copy, Default)]
struct Attempt {
    connect: Duration,
    tls: Option<Duration>,
    ws: Option<Duration>,
}

/// The result for one target.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    /// The target.
    pub url: String,
    /// Did every attempt succeed?
    pub up: bool,
    /// Successful attempts.
    pub ok: u32,
    /// Attempts made.
    pub count: u32,
    /// TCP (or Unix) connect latency.
    pub connect_ms: Option<Stats>,
    /// TLS handshake latency.
    pub tls_ms: Option<Stats>,
    /// WebSocket handshake latency.
    pub ws_ms: Option<Stats>,
    /// Total time to a usable connection.
    pub total_ms: Option<Stats>,
    /// The last failure, if any.
    pub error: Option<String>,
}

async fn attempt(ep: &Endpoint, opts: &ConnectOptions) -> Result<Attempt, NetError> {
    let start = Instant::now();
    let mut a = Attempt::default();
    if ep.scheme == Scheme::Unix {
        tokio::net::UnixStream::connect(ep.unix_path())
            .await
            .map_err(|e| NetError::from_io(e, &ep.path))?;
        a.connect = start.elapsed();
        return Ok(a);
    }
    // Through a proxy, "connect" includes the proxy's handshake.
    let tcp = crate::proxy_client::dial(ep, &opts.socket, opts.proxy.as_ref()).await?;
    a.connect = start.elapsed();
    let stream: BoxStream = if ep.scheme.is_tls() {
        let t = Instant::now();
        let alpn: &[&[u8]] = if ep.scheme.is_ws() {
            &[b"http/1.1"]
        } else {
            &[]
        };
        let tls = transport::tls_handshake(tcp, ep, &opts.tls, alpn).await?;
        a.tls = Some(t.elapsed());
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    if ep.scheme.is_ws() {
        let t = Instant::now();
        let (mut ws, _) = transport::ws_handshake(stream, ep, opts).await?;
        a.ws = Some(t.elapsed());
        let _ = ws.close(None).await;
    }
    Ok(a)
}

/// Probes one target `count` times.
pub async fn probe(
    ep: &Endpoint,
    opts: &ConnectOptions,
    count: u32,
    interval: Duration,
) -> ProbeResult {
    let timeout = opts.timeout.unwrap_or(Duration::from_secs(5));
    let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(1)));
    let mut done = Vec::new();
    let mut error = None;
    for _ in 0..count.max(1) {
        ticks.tick().await;
        match tokio::time::timeout(timeout, attempt(ep, opts)).await {
            Ok(Ok(a)) => done.push(a),
            Ok(Err(e)) => error = Some(e.to_string()),
            Err(_) => {
                error = Some(format!(
                    "timed out after {}",
                    humantime::format_duration(timeout)
                ))
            }
        }
    }
    let phase = |f: &dyn Fn(&Attempt) -> Option<Duration>| {
        Stats::of(&done.iter().filter_map(f).collect::<Vec<_>>())
    };
    let count = count.max(1);
    let ok = u32::try_from(done.len()).unwrap_or(u32::MAX);
    ProbeResult {
        url: ep.to_string(),
        up: ok == count,
        ok,
        count,
        connect_ms: phase(&|a| Some(a.connect)),
        tls_ms: phase(&|a| a.tls),
        ws_ms: phase(&|a| a.ws),
        total_ms: phase(&|a| {
            Some(a.connect + a.tls.unwrap_or_default() + a.ws.unwrap_or_default())
        }),
        error,
    }
}

fn line(r: &ProbeResult) -> String {
    let mut s = format!(
        "{} {} {}/{}",
        r.url,
        if r.up { "up" } else { "DOWN" },
        r.ok,
        r.count
    );
    for (name, st) in [
        ("connect", r.connect_ms),
        ("tls", r.tls_ms),
        ("ws", r.ws_ms),
        ("total", r.total_ms),
    ] {
        if let Some(st) = st {
            s.push_str(&format!(
                " {name} min/avg/p99 {:.3}/{:.3}/{:.3} ms",
                st.min, st.avg, st.p99
            ));
        }
    }
    if let Some(e) = &r.error {
        s.push_str(&format!(" ({e})"));
    }
    s
}

/// Runs `prise probe`.
///
/// # Errors
/// [`NetError::TargetsDown`] (exit 1) when any target is down; usage errors.
pub async fn run(args: ProbeArgs) -> Result<(), NetError> {
    for url in &args.urls {
        crate::proxy_client::check_scheme(url, args.proxy.as_ref())?;
    }
    if let Some(udp) = args.urls.iter().find(|u| u.scheme == Scheme::Udp) {
        return Err(NetError::Usage(format!(
            "cannot probe {udp}: udp has no handshake"
        )));
    }
    let opts = ConnectOptions {
        socket: SocketArgs::default(),
        tls: args.tls.clone(),
        ws: args.ws.clone(),
        timeout: Some(args.timeout),
        proxy: args.proxy.clone(),
        ..ConnectOptions::default()
    };
    let results = join_all(
        args.urls
            .iter()
            .map(|u| probe(u, &opts, args.count, args.interval)),
    )
    .await;
    let mut out = std::io::stdout().lock();
    for r in &results {
        let text = if args.json {
            serde_json::to_string(r).unwrap_or_default()
        } else {
            line(r)
        };
        writeln!(out, "{text}").map_err(|e| NetError::io("writing output", e))?;
    }
    let down = results.iter().filter(|r| !r.up).count();
    if down > 0 {
        return Err(NetError::TargetsDown {
            down,
            total: results.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_nearest_rank() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|&m| Duration::from_millis(m))
                .collect::<Vec<_>>()
        };
        let s = Stats::of(&ms(&[3, 1, 2])).unwrap();
        assert_eq!((s.min, s.avg, s.p99), (1.0, 2.0, 3.0));
        let many: Vec<u64> = (1..=200).collect();
        assert_eq!(Stats::of(&ms(&many)).unwrap().p99, 198.0);
        assert!(Stats::of(&[]).is_none());
    }
}
