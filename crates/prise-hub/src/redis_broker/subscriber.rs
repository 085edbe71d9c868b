//! The subscriber: one task per node reading the shared channel (RESP3
//! pushes into a bounded queue) and feeding the hub in channel order.
//!
//! Messages are offered to the hub, which skips duplicates and reports gaps;
//! a gap is filled from the room's stream before the message is delivered.
//! After every (re)subscription, and when the queue overflowed, the node
//! catches up: every room in memory from its stream, presence views re-read,
//! local members re-registered. A lost subscription is retried with the
//! workspace's backoff ([`prise_proto::backoff`]: capped, exponential, full
//! jitter) drawing from an RNG the task owns.

use super::{COMMAND_TIMEOUT, Shared, control, presence, store_unavailable, typing, unavailable};
use crate::broker::{BrokerError, DeliverySink, Offered};
use crate::presence::PresenceApplied;
use crate::store::HistoryStore as _;
use crate::store::redis::decode_payload;
use prise_proto::backoff::{Backoff, BackoffConfig};
use prise_proto::message::{Epoch, Offset};
use rand::SeedableRng;
use rand::rngs::StdRng;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, PushInfo, PushKind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// Messages read from a stream at once when filling a gap or catching up.
const CATCH_UP_PAGE: usize = 1000;
/// Reconnect delays: the first drawn below 100 ms, the ceiling doubling up
/// to 5 s, retried for as long as the node runs.
const RECONNECT: BackoffConfig =
    BackoffConfig::new(Duration::from_millis(100), Duration::from_secs(5), None);
/// How often the subscription is checked with a PING.
const PING_EVERY: Duration = Duration::from_secs(1);

/// Receives the channel and feeds the hub, reconnecting on failure.
pub(super) async fn subscriber(s: Arc<Shared>) {
    let mut backoff = Backoff::new(RECONNECT, StdRng::from_os_rng());
    let mut first = true;
    while !s.shutdown.is_cancelled() {
        if !first {
            // Retries are unbounded (`max_retries: None`): always a delay.
            let delay = backoff.next_delay().unwrap_or(RECONNECT.cap);
            tokio::select! {
                _ = s.shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        first = false;
        let (tx, mut rx) = mpsc::channel::<PushInfo>(s.config.event_queue.max(16));
        let overflow = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&overflow);
        let sender = move |info: PushInfo| -> Result<(), ()> {
            if tx.try_send(info).is_err() {
                flag.store(true, Ordering::Relaxed);
            }
            Ok(())
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_push_sender(sender);
        let mut sub: MultiplexedConnection = match s
            .sub_client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                s.ready.store(false, Ordering::Relaxed);
                tracing::warn!(error = %e, "redis subscriber cannot connect; retrying");
                continue;
            }
        };
        if let Err(e) = sub.subscribe(s.keys.events()).await {
            s.ready.store(false, Ordering::Relaxed);
            tracing::warn!(error = %e, "redis subscribe failed; retrying");
            continue;
        }
        if let Err(e) = catch_up(&s).await {
            s.ready.store(false, Ordering::Relaxed);
            tracing::warn!(error = %e, "catching up from redis failed; retrying");
            continue;
        }
        if !s.ready.swap(true, Ordering::Relaxed) {
            tracing::info!(node = %s.node_id, "redis subscription ready");
        }
        metrics::gauge!("prise_redis_ready").set(1.0);
        backoff.reset();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ok = loop {
            tokio::select! {
                biased;
                _ = s.shutdown.cancelled() => return,
                info = rx.recv() => match info {
                    None => break false,
                    Some(info) => match info.kind {
                        PushKind::Message => {
                            if let Some(redis::Value::BulkString(b)) = info.data.last() {
                                handle(&s, &String::from_utf8_lossy(b)).await;
                            }
                        }
                        PushKind::Disconnection => break false,
                        _ => {}
                    },
                },
                _ = ping.tick() => {
                    let pong: Result<Result<String, _>, _> = tokio::time::timeout(
                        COMMAND_TIMEOUT,
                        redis::cmd("PING").query_async(&mut sub),
                    )
                    .await;
                    if !matches!(pong, Ok(Ok(_))) {
                        break false;
                    }
                }
            }
            if overflow.swap(false, Ordering::Relaxed) {
                tracing::warn!("pub/sub queue overflowed; catching up from the streams");
                metrics::counter!("prise_redis_catch_ups_total").increment(1);
                if let Err(e) = catch_up(&s).await {
                    tracing::warn!(error = %e, "catching up from redis failed");
                    break false;
                }
            }
        };
        if !ok {
            metrics::gauge!("prise_redis_ready").set(0.0);
            metrics::counter!("prise_redis_reconnects_total").increment(1);
            s.ready.store(false, Ordering::Relaxed);
            tracing::warn!(node = %s.node_id, "redis subscription lost; reconnecting");
        }
    }
}

/// After a (re)subscription or a lost event: brings every room in memory up
/// to its stream, re-reads presence views and re-registers local members.
async fn catch_up(s: &Shared) -> Result<(), BrokerError> {
    let Some(sink) = s.sink() else {
        return Ok(());
    };
    let mut conn = s.conn.clone();
    let head_seq: Option<u64> = redis::cmd("GET")
        .arg(s.keys.seq())
        .query_async(&mut conn)
        .await
        .map_err(unavailable)?;
    for (room, epoch, delivered) in sink.delivered_rooms() {
        let Some(head) = s
            .store
            .room_head(&room, false)
            .await
            .map_err(store_unavailable)?
        else {
            continue;
        };
        let after = if head.epoch == epoch {
            delivered
        } else {
            Offset::ZERO
        };
        fill(s, &*sink, &room, &head.epoch, after, head.last).await?;
    }
    sink.advance_seq(head_seq.unwrap_or(0));
    s.seen.send_if_modified(|v| {
        let new = head_seq.unwrap_or(0).max(*v);
        let changed = new != *v;
        *v = new;
        changed
    });
    for room in sink.presence_rooms() {
        let snap = presence::read(s, &room).await?;
        if sink.presence_install(&room, snap, true) == PresenceApplied::Refetch {
            let snap = presence::read(s, &room).await?;
            sink.presence_install(&room, snap, true);
        }
    }
    for (room, user) in sink.local_memberships() {
        s.mark_dirty(&room, &user);
    }
    Ok(())
}

/// Offers the messages of `room` with `after < offset <= until`, in pages.
async fn fill(
    s: &Shared,
    sink: &dyn DeliverySink,
    room: &str,
    epoch: &Epoch,
    mut after: Offset,
    until: Offset,
) -> Result<(), BrokerError> {
    while after < until {
        let page = s
            .store
            .range(room, after, until, CATCH_UP_PAGE)
            .await
            .map_err(store_unavailable)?;
        let Some(last) = page.last() else {
            break;
        };
        let last = last.offset;
        for m in page {
            if let Offered::Gap(_) = sink.offer(epoch, Arc::clone(&m)) {
                // Retention dropped what came before: deliver from here.
                sink.deliver(epoch, m);
            }
        }
        after = last;
    }
    Ok(())
}

/// One event from the channel.
async fn handle(s: &Arc<Shared>, payload: &str) {
    let Some(sink) = s.sink() else {
        return;
    };
    match payload.split_once('\n') {
        Some(("m", rest)) => {
            let mut p = rest.splitn(4, '\n');
            let (Some(epoch), Some(offset), Some(seq), Some(data)) =
                (p.next(), p.next(), p.next(), p.next())
            else {
                return;
            };
            let (Ok(offset), Ok(seq)) = (offset.parse::<u64>(), seq.parse::<u64>()) else {
                return;
            };
            let Ok(message) = decode_payload(data, Offset(offset), seq) else {
                tracing::warn!("undecodable message on the redis channel");
                return;
            };
            let epoch = Epoch(epoch.to_owned());
            if let Offered::Gap(delivered) = sink.offer(&epoch, Arc::clone(&message)) {
                let room = message.room_id.clone();
                let before = Offset(offset - 1);
                if let Err(e) = fill(s, &*sink, &room, &epoch, delivered, before).await {
                    tracing::warn!(error = %e, room = %room, "filling a gap failed");
                }
                if let Offered::Gap(_) = sink.offer(&epoch, Arc::clone(&message)) {
                    sink.deliver(&epoch, message);
                }
            }
            s.seen.send_if_modified(|v| {
                let changed = seq > *v;
                *v = (*v).max(seq);
                changed
            });
        }
        Some((kind @ ("j" | "l"), rest)) => presence::on_event(s, &*sink, kind, rest).await,
        Some(("t", rest)) => typing::on_event(s, &*sink, rest),
        Some(("c", rest)) => control::on_request(s, &*sink, rest),
        Some(("r", rest)) => control::on_answer(s, rest),
        _ => {}
    }
}
