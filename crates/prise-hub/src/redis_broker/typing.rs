//! Typing events between nodes: queued (bounded, dropped when full),
//! published by one task per node on the shared channel, and shown by every
//! other node to its local members. Not stored, not ordered with messages.

use super::Shared;
use crate::broker::DeliverySink;
use prise_proto::message::User;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Depth of the queue of outgoing typing events.
pub(super) const TYPING_QUEUE: usize = 1024;

/// [`crate::broker::Broker::typing`]: queues the event for [`typing_task`],
/// or drops it (counted) when the queue is full.
pub(super) fn queue(s: &Shared, room: &str, user: &User, typing: bool) {
    let Ok(user_json) = serde_json::to_string(user) else {
        return;
    };
    let event = format!(
        "t\n{}\n{room}\n{}\n{user_json}",
        s.node_id,
        if typing { 1 } else { 0 }
    );
    if s.typing_tx.try_send(event).is_err() {
        metrics::counter!("prise_redis_typing_dropped_total").increment(1);
    }
}

/// A typing event from the channel: shown here unless this node sent it.
pub(super) fn on_event(s: &Shared, sink: &dyn DeliverySink, rest: &str) {
    let mut p = rest.splitn(4, '\n');
    let (Some(node), Some(room), Some(on), Some(user)) = (p.next(), p.next(), p.next(), p.next())
    else {
        return;
    };
    if node == s.node_id {
        return;
    }
    if let Ok(user) = serde_json::from_str::<User>(user) {
        sink.remote_typing(room, user, on == "1");
    }
}

/// Publishes typing events from the bounded queue.
pub(super) async fn typing_task(s: Arc<Shared>, mut rx: mpsc::Receiver<String>) {
    loop {
        let event = tokio::select! {
            _ = s.shutdown.cancelled() => return,
            e = rx.recv() => match e { Some(e) => e, None => return },
        };
        let mut conn = s.conn.clone();
        let r: Result<i64, _> = redis::cmd("PUBLISH")
            .arg(s.keys.events())
            .arg(event)
            .query_async(&mut conn)
            .await;
        if r.is_err() {
            metrics::counter!("prise_redis_typing_dropped_total").increment(1);
        }
    }
}
