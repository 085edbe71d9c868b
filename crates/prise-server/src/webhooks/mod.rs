//! Webhooks: the hub tells the backend who comes and goes. Events
//! (`room_occupied`, `room_vacated`, `member_joined`, `member_left` — per
//! user: first session in, last session out — and `session_closed` with
//! its reason) are written to a durable outbox (`outbox.rs`) before they are
//! sent, then POSTed to `--webhook-url` as JSON arrays, in order, signed
//! like hooks, and retried with exponential backoff until the backend
//! answers 2xx: delivered at least once, never out of order. Each event has
//! a unique `id` (its position in the outbox, also `seq`). In a cluster the
//! presence scripts write the transitions (one event each, whichever node
//! made it) and one node at a time, the holder of a lease, sends.
//! docs/HOOKS.md is the contract.

mod args;
pub(crate) mod outbox;

pub use args::WebhookArgs;
pub use outbox::OutboxError;

use crate::hooks::Failure;
use crate::hooks::http::Endpoint;
use crate::hooks::sign::{SIGNATURE_HEADER, Signer};
use ::http::{HeaderName, HeaderValue};
use bytes::Bytes;
use outbox::{Outbox, Stored};
use prise_hub::CloseReason;
use prise_hub::activity::{Activity, ActivitySink};
use prise_proto::backoff::{Backoff, BackoffConfig};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Reports waiting to be written to the outbox; beyond it they are dropped
/// (counted in `prise_webhook_dropped_total`).
pub(crate) const QUEUE: usize = 65_536;
/// Most events per POST.
pub(crate) const BATCH: usize = 100;
/// How often delivered events past `--webhook-retain` are dropped.
const TRIM_EVERY: Duration = Duration::from_secs(60);
/// How often an idle sender looks for events written by other nodes.
const POLL: Duration = Duration::from_millis(500);
/// The cluster's sender lease: renewed every third of it.
const LEASE: Duration = Duration::from_secs(6);
/// Retry delays: from 250 ms doubling to 30 s.
const RETRY: BackoffConfig =
    BackoffConfig::new(Duration::from_millis(250), Duration::from_secs(30), None);

/// The reason of a `session_closed` event.
pub(crate) fn reason_name(reason: Option<CloseReason>) -> &'static str {
    match reason {
        None => "client",
        Some(CloseReason::AuthExpired) => "auth_expired",
        Some(CloseReason::SlowConsumer) => "slow_consumer",
        Some(CloseReason::Shutdown) => "shutdown",
        Some(CloseReason::Kicked) => "kicked",
    }
}

fn now_ms() -> u64 {
    prise_hub::clock::Clock::now_ms(&prise_hub::clock::SystemClock)
}

fn user_json(u: &prise_proto::message::User) -> Value {
    json!({"id": u.id, "name": u.name})
}

/// The events one report stands for, each as its JSON without `id`/`seq`.
fn events_of(a: &Activity) -> Vec<Value> {
    match a {
        Activity::MemberJoined {
            room,
            user,
            occupied,
        } => {
            let mut out = Vec::with_capacity(2);
            if *occupied {
                out.push(json!({"event": "room_occupied", "room": &**room}));
            }
            out.push(json!({"event": "member_joined", "room": &**room, "user": user_json(user)}));
            out
        }
        Activity::MemberLeft {
            room,
            user,
            vacated,
        } => {
            let mut out =
                vec![json!({"event": "member_left", "room": &**room, "user": user_json(user)})];
            if *vacated {
                out.push(json!({"event": "room_vacated", "room": &**room}));
            }
            out
        }
        Activity::SessionClosed {
            session,
            user,
            transport,
            reason,
        } => vec![json!({
            "event": "session_closed",
            "session": session.0,
            "user": user_json(user),
            "transport": transport.as_str(),
            "reason": reason_name(*reason),
        })],
    }
}

/// An event as it is sent and listed: its JSON with `id`, `seq` and `at`.
pub(crate) fn rendered(e: &Stored) -> Value {
    let mut v: Value = serde_json::from_str(&e.body).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("id".into(), Value::String(e.seq.to_string()));
        m.insert("seq".into(), json!(e.seq));
        m.insert("at".into(), json!(e.at_ms));
    }
    v
}

/// The sink the hub reports to: a bounded queue to the outbox writer.
struct Sink(mpsc::Sender<(u64, Activity)>);

impl ActivitySink for Sink {
    fn record(&self, activity: Activity) {
        if self.0.try_send((now_ms(), activity)).is_err() {
            metrics::counter!("prise_webhook_dropped_total").increment(1);
        }
    }
}

/// The webhooks of a server: the outbox, and (with a URL) its sender.
#[derive(Debug, Clone)]
pub(crate) struct Webhooks {
    outbox: Outbox,
}

impl Webhooks {
    /// Starts the outbox writer and, with `--webhook-url`, the sender, on
    /// `tracker`; reports of `hub` go to the outbox from now on. `None`
    /// without a URL: nothing is recorded.
    ///
    /// # Errors
    /// A bad URL, an unreadable secret file, an outbox that cannot be opened.
    pub(crate) fn start(
        args: &WebhookArgs,
        hook_secret: Option<&str>,
        outbox: Outbox,
        hub: &prise_hub::Hub,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
        stop: &CancellationToken,
    ) -> Result<Option<Self>, crate::hooks::HookError> {
        let Some(url) = &args.webhook_url else {
            return Ok(None);
        };
        let endpoint = Endpoint::new(url, 2).map_err(crate::hooks::HookError::Url)?;
        let secret = args.secret()?.or_else(|| hook_secret.map(str::to_owned));
        if secret.is_none() {
            tracing::warn!(
                "webhooks are not signed: set --webhook-secret-file (or --hook-secret-file)"
            );
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        hub.set_activity(Arc::new(Sink(tx)));
        let written = Arc::new(Notify::new());
        tracker.spawn(write(
            outbox.clone(),
            rx,
            Arc::clone(&written),
            stop.clone(),
        ));
        tracker.spawn(send(Sender {
            outbox: outbox.clone(),
            endpoint,
            signer: secret.map(|s| Signer::new(s.as_bytes())),
            timeout: args.webhook_timeout,
            written,
            shutdown: shutdown.clone(),
            retain: args.webhook_retain,
        }));
        Ok(Some(Self { outbox }))
    }

    /// Events after `after` (at most `limit`), delivered or not.
    ///
    /// # Errors
    /// The outbox could not be read.
    pub(crate) async fn events(&self, after: u64, limit: usize) -> Result<Vec<Value>, OutboxError> {
        let read = self.outbox.read(after, limit).await?;
        Ok(read.iter().map(rendered).collect())
    }
}

/// Writes reports to the outbox in batches until `stop`, then what is
/// queued (the closes of the shutdown).
async fn write(
    outbox: Outbox,
    mut rx: mpsc::Receiver<(u64, Activity)>,
    written: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut reports = Vec::with_capacity(BATCH);
    loop {
        let stopping = tokio::select! {
            n = rx.recv_many(&mut reports, 1024) => n == 0,
            () = stop.cancelled() => {
                while let Ok(r) = rx.try_recv() {
                    reports.push(r);
                }
                true
            }
        };
        let events: Vec<(u64, String)> = reports
            .drain(..)
            .flat_map(|(at, a)| events_of(&a).into_iter().map(move |e| (at, e.to_string())))
            .collect();
        match outbox.append(events).await {
            Ok(0) => {}
            Ok(refused) => {
                metrics::counter!("prise_webhook_dropped_total").increment(refused as u64);
                tracing::warn!(refused, "webhook outbox full: events dropped");
            }
            Err(e) => tracing::error!(error = %e, "webhook events not written"),
        }
        written.notify_one();
        if stopping {
            return;
        }
    }
}

struct Sender {
    outbox: Outbox,
    endpoint: Endpoint,
    signer: Option<Signer>,
    timeout: Duration,
    written: Arc<Notify>,
    shutdown: CancellationToken,
    retain: Duration,
}

impl Sender {
    async fn post(&self, batch: &[Stored]) -> Result<(), Failure> {
        let body = Bytes::from(Value::Array(batch.iter().map(rendered).collect()).to_string());
        let mut headers = vec![(
            HeaderName::from_static("x-prise-webhook"),
            HeaderValue::from_static("events"),
        )];
        if let Some(s) = &self.signer
            && let Ok(v) = HeaderValue::from_str(&s.header(&body))
        {
            headers.push((HeaderName::from_static(SIGNATURE_HEADER), v));
        }
        match tokio::time::timeout(self.timeout, self.endpoint.post(&headers, body)).await {
            Ok(r) => r.map(|_| ()),
            Err(_) => Err(Failure::Timeout),
        }
    }
}

/// Waits `d`; `false` when the server shuts down first.
async fn pause(s: &Sender, d: Duration) -> bool {
    tokio::select! {
        () = s.shutdown.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}

/// Sends the outbox in order, batch by batch, retrying a batch until the
/// backend takes it; stops at shutdown (what is left is sent after a
/// restart, with a durable outbox). In a cluster only while this node
/// holds the sender's lease, from the cursor the previous holder left.
async fn send(s: Sender) {
    let mut backoff = Backoff::new(
        RETRY,
        <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng(),
    );
    let mut trim = tokio::time::interval(TRIM_EVERY);
    trim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leased_at: Option<tokio::time::Instant> = None;
    let mut cursor = 0;
    loop {
        if leased_at.is_none_or(|at| at.elapsed() >= LEASE / 3) {
            let taken = leased_at.is_none();
            match s.outbox.lease(LEASE).await {
                Ok(true) => {
                    if taken {
                        // First start, or taken over: on from the cursor.
                        match s.outbox.cursor().await {
                            Ok(c) => cursor = c,
                            Err(e) => {
                                tracing::warn!(error = %e, "webhook cursor unreadable");
                                if !pause(&s, POLL).await {
                                    return;
                                }
                                continue;
                            }
                        }
                    }
                    leased_at = Some(tokio::time::Instant::now());
                }
                Ok(false) => {
                    leased_at = None;
                    if !pause(&s, LEASE / 3).await {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "webhook sender lease unavailable");
                    leased_at = None;
                    if !pause(&s, POLL).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let batch = match s.outbox.read(cursor, BATCH).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "webhook outbox unreadable");
                Vec::new()
            }
        };
        if batch.is_empty() {
            tokio::select! {
                () = s.shutdown.cancelled() => return,
                () = s.written.notified() => {}
                () = tokio::time::sleep(POLL) => {}
                _ = trim.tick() => {
                    let before = now_ms().saturating_sub(s.retain.as_millis() as u64);
                    if let Err(e) = s.outbox.trim(before).await {
                        tracing::warn!(error = %e, "webhook outbox not trimmed");
                    }
                }
            }
            continue;
        }
        match s.post(&batch).await {
            Ok(()) => {
                backoff.reset();
                cursor = batch.last().map_or(cursor, |e| e.seq);
                metrics::counter!("prise_webhook_events_total", "outcome" => "delivered")
                    .increment(batch.len() as u64);
                match s.outbox.set_cursor(cursor).await {
                    Ok(true) => {}
                    // The lease passed on: its new holder goes on from the
                    // cursor it finds (events may be sent again, never lost).
                    Ok(false) => leased_at = None,
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook cursor not saved: events may be sent again");
                    }
                }
            }
            Err(e) => {
                metrics::counter!("prise_webhook_events_total", "outcome" => "retried")
                    .increment(batch.len() as u64);
                let wait = backoff.next_delay().unwrap_or(RETRY.cap);
                tracing::warn!(error = %e, retry_in = ?wait, "webhook not delivered");
                if !pause(&s, wait).await {
                    return;
                }
            }
        }
    }
}
