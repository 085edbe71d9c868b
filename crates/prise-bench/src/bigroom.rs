//! `prise bench bigroom`: one process's share of a room with thousands of
//! members, driven phase by phase from stdin so that a script can run
//! several processes (a process holds at most 20,000 files here) and
//! measure the server between phases (`scripts/bench-bigroom.sh`).
//!
//! ```text
//!  start      connect N clients (not joined), answer the server's pings
//!             ─▶ {"phase":"connected", …}
//!  "join"     every client joins the room (bounded concurrency)
//!             ─▶ {"phase":"joined", first/last join (Unix ms), largest answer, …}
//!  "publish M" (with --publisher) M messages, each after the last one's ack
//!             ─▶ {"phase":"published", …}
//!  "count M"  wait until every member received M messages (bounded wait)
//!             ─▶ {"phase":"received", deliveries, expected}
//!  "quit" / end of input ─▶ the summary
//! ```

use crate::client::{Client, Target};
use crate::{BenchError, Common, MAX_CONNECTIONS, MAX_DURATION, latency_json, progress};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{Semaphore, watch};

/// Longest wait for the members to receive what `count` asks for.
const COUNT_WAIT: Duration = Duration::from_secs(120);

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What the member tasks report.
struct State {
    joined: AtomicUsize,
    failed: AtomicUsize,
    /// Unix ms of the first and last completed join.
    first_join: AtomicU64,
    last_join: AtomicU64,
    largest_answer: AtomicUsize,
    received: AtomicU64,
    /// Connections that ended after joining.
    dropped: AtomicUsize,
    latency: Mutex<Histogram<u64>>,
}

impl State {
    fn new() -> Self {
        Self {
            joined: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            first_join: AtomicU64::new(u64::MAX),
            last_join: AtomicU64::new(0),
            largest_answer: AtomicUsize::new(0),
            received: AtomicU64::new(0),
            dropped: AtomicUsize::new(0),
            latency: Mutex::new(
                Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
            ),
        }
    }
}

/// One member: waits (answering pings) until told to join, joins, then
/// counts the messages it receives.
async fn member(
    mut c: Client,
    room: Arc<str>,
    mut go: watch::Receiver<bool>,
    joins: Arc<Semaphore>,
    st: Arc<State>,
) {
    loop {
        tokio::select! {
            r = go.wait_for(|g| *g) => {
                if r.is_err() {
                    return;
                }
                break;
            }
            r = c.next_message() => {
                if r.is_err() {
                    st.failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
    let Ok(permit) = joins.acquire().await else {
        return;
    };
    let t0 = Instant::now();
    match c.join(&room).await {
        Ok(size) => {
            let done = unix_ms();
            st.first_join.fetch_min(done, Ordering::Relaxed);
            st.last_join.fetch_max(done, Ordering::Relaxed);
            st.largest_answer.fetch_max(size, Ordering::Relaxed);
            if let Ok(mut h) = st.latency.lock() {
                let _ = h.record((t0.elapsed().as_micros() as u64).max(1));
            }
            st.joined.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            st.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    drop(permit);
    while c.next_message().await.is_ok() {
        st.received.fetch_add(1, Ordering::Relaxed);
    }
    st.dropped.fetch_add(1, Ordering::Relaxed);
}

fn emit(out: &mut dyn Write, v: &Value) -> Result<(), BenchError> {
    writeln!(out, "{v}")?;
    out.flush()?;
    Ok(())
}

/// Waits (polling: the members are many tasks with nothing to wait on in
/// common) until `done` holds or `limit` passes.
async fn until(limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs one process's share; phase lines go to `out` as they happen.
pub(crate) async fn bigroom(
    common: &Common,
    members: usize,
    room: &str,
    concurrency: usize,
    publisher: bool,
    out: &mut dyn Write,
) -> Result<Value, BenchError> {
    if members == 0 || members > MAX_CONNECTIONS {
        return Err(BenchError::Bounds(format!(
            "--members must be 1..={MAX_CONNECTIONS} (run several processes for more)"
        )));
    }
    let target = Target::parse(&common.target)?;
    let room: Arc<str> = Arc::from(room);
    let st = Arc::new(State::new());
    let (go_tx, go_rx) = watch::channel(false);
    let joins = Arc::new(Semaphore::new(concurrency.max(1)));
    let bar = progress(members as u64, common.quiet, "connecting");
    let started = Instant::now();
    let connecting = Arc::new(Semaphore::new(256));
    let mut dials = tokio::task::JoinSet::new();
    for i in 0..members {
        let permit = Arc::clone(&connecting)
            .acquire_owned()
            .await
            .map_err(|_| BenchError::Bounds("semaphore closed".into()))?;
        let target = target.clone();
        let source = common.source(i);
        dials.spawn(async move {
            let r = tokio::time::timeout(Duration::from_secs(30), Client::connect(&target, source))
                .await;
            drop(permit);
            r.ok().and_then(Result::ok)
        });
    }
    let mut tasks = tokio::task::JoinSet::new();
    let mut open = 0usize;
    while let Some(r) = dials.join_next().await {
        bar.inc(1);
        if let Ok(Some(c)) = r {
            open += 1;
            tasks.spawn(member(
                c,
                Arc::clone(&room),
                go_rx.clone(),
                Arc::clone(&joins),
                Arc::clone(&st),
            ));
        }
    }
    bar.finish_and_clear();
    // Connected when first asked to publish: an idle connection would miss
    // the server's pings meanwhile.
    let mut publishing: Option<Client> = None;
    emit(
        out,
        &json!({
            "phase": "connected", "open": open, "failed": members - open,
            "connect_seconds": started.elapsed().as_secs_f64(),
        }),
    )?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut published = 0u64;
    let mut join_sent = 0u64;
    while let Some(line) = lines.next_line().await? {
        let mut words = line.split_whitespace();
        let verb = words.next().unwrap_or("");
        let n: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        match verb {
            "join" => {
                join_sent = unix_ms();
                let _ = go_tx.send(true);
                let st2 = Arc::clone(&st);
                until(MAX_DURATION, || {
                    st2.joined.load(Ordering::Relaxed) + st2.failed.load(Ordering::Relaxed) >= open
                })
                .await;
                let latency = st.latency.lock().map(|h| latency_json(&h)).ok();
                emit(
                    out,
                    &json!({
                        "phase": "joined",
                        "joined": st.joined.load(Ordering::Relaxed),
                        "failed": st.failed.load(Ordering::Relaxed),
                        "join_sent_unix_ms": join_sent,
                        "first_join_unix_ms": st.first_join.load(Ordering::Relaxed),
                        "last_join_unix_ms": st.last_join.load(Ordering::Relaxed),
                        "largest_join_answer_bytes": st.largest_answer.load(Ordering::Relaxed),
                        "join_latency": latency,
                    }),
                )?;
            }
            "publish" => {
                if !publisher {
                    emit(out, &json!({"phase": "error", "error": "no --publisher"}))?;
                    continue;
                }
                let p = match &mut publishing {
                    Some(p) => p,
                    None => {
                        let mut p = Client::connect(&target, common.source(members)).await?;
                        p.join(&room).await?;
                        publishing.insert(p)
                    }
                };
                let t0 = Instant::now();
                for i in 0..n.min(100_000) {
                    p.publish(&room, &json!({"n": published + i, "t": unix_ms()}))
                        .await?;
                }
                published += n.min(100_000);
                emit(
                    out,
                    &json!({"phase": "published", "messages": n, "seconds": t0.elapsed().as_secs_f64()}),
                )?;
            }
            "count" => {
                let joined = st.joined.load(Ordering::Relaxed) as u64;
                let expected = n.saturating_mul(joined);
                let t0 = Instant::now();
                let st2 = Arc::clone(&st);
                until(COUNT_WAIT, || {
                    st2.received.load(Ordering::Relaxed) >= expected
                })
                .await;
                emit(
                    out,
                    &json!({
                        "phase": "received",
                        "deliveries": st.received.load(Ordering::Relaxed),
                        "expected": expected,
                        "seconds": t0.elapsed().as_secs_f64(),
                        "dropped": st.dropped.load(Ordering::Relaxed),
                    }),
                )?;
            }
            "quit" => break,
            other => emit(
                out,
                &json!({"phase": "error", "error": format!("unknown command {other:?}")}),
            )?,
        }
    }
    tasks.abort_all();
    Ok(json!({
        "bench": "bigroom",
        "target": common.target,
        "room": &*room,
        "members": members,
        "open": open,
        "joined": st.joined.load(Ordering::Relaxed),
        "failed": st.failed.load(Ordering::Relaxed),
        "dropped": st.dropped.load(Ordering::Relaxed),
        "join_sent_unix_ms": join_sent,
        "first_join_unix_ms": st.first_join.load(Ordering::Relaxed),
        "last_join_unix_ms": st.last_join.load(Ordering::Relaxed),
        "largest_join_answer_bytes": st.largest_answer.load(Ordering::Relaxed),
        "deliveries": st.received.load(Ordering::Relaxed),
    }))
}
