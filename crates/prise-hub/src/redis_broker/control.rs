//! Control operations on every node ([`crate::control`]) and the shared
//! idempotency keys.
//!
//! ```text
//!  Hub::control ─▶ PUBLISH events "c\n{id}\n{op}"  ─▶ answers expected = receivers
//!  every node's subscriber ─▶ apply to its sessions (a task, at most 64 at once)
//!                          ─▶ PUBLISH events "r\n{id}\n{answer}"
//!  the asking node's subscriber ─▶ the waiting call, by id (bounded queue)
//! ```
//!
//! The asker waits at most [`CONTROL_WAIT`] and answers with the nodes that
//! answered by then (a node that died since is missing, not waited for).
//! An idempotency key is one Redis string with a TTL: empty while its call
//! runs (`SET NX`), then the call's answer.

use super::{Shared, unavailable};
use crate::broker::{BrokerError, DeliverySink};
use crate::control::{Claim, ControlOp, NodeAnswer};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Longest wait for the nodes' answers.
pub(super) const CONTROL_WAIT: Duration = Duration::from_secs(2);
/// Most control calls of one node waiting for answers at once.
const MAX_WAITING: usize = 64;
/// Most answers one call takes (nodes in the cluster).
const MAX_NODES: usize = 256;
/// Most operations from other nodes applied at once on this node.
pub(super) const MAX_APPLYING: usize = 64;

/// Removes a waiting call's entry however the call ends.
struct Waiting<'a> {
    s: &'a Shared,
    id: String,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.s
            .control_waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// Sends `op` to every node (this one included) and gathers the answers.
pub(super) async fn broadcast(s: &Shared, op: &ControlOp) -> Result<Vec<NodeAnswer>, BrokerError> {
    let id = ulid::Ulid::generate().to_string();
    let (tx, mut rx) = mpsc::channel(MAX_NODES);
    {
        let mut waiting = s.control_waiting.lock().unwrap_or_else(|e| e.into_inner());
        if waiting.len() >= MAX_WAITING {
            return Err(BrokerError::Unavailable(
                "too many control calls at once".into(),
            ));
        }
        waiting.insert(id.clone(), tx);
    }
    let _waiting = Waiting { s, id: id.clone() };
    let op = serde_json::to_string(op).map_err(|e| BrokerError::Unavailable(e.to_string()))?;
    let mut conn = s.conn.clone();
    let receivers: usize = redis::cmd("PUBLISH")
        .arg(s.keys.events())
        .arg(format!("c\n{id}\n{op}"))
        .query_async(&mut conn)
        .await
        .map_err(unavailable)?;
    let deadline = tokio::time::Instant::now() + CONTROL_WAIT;
    let mut answers = Vec::with_capacity(receivers.min(MAX_NODES));
    while answers.len() < receivers.min(MAX_NODES) {
        tokio::select! {
            a = rx.recv() => match a {
                Some(a) => answers.push(a),
                None => break,
            },
            () = tokio::time::sleep_until(deadline) => {
                tracing::warn!(
                    answered = answers.len(),
                    nodes = receivers,
                    "control call: not every node answered in time"
                );
                break;
            }
        }
    }
    answers.sort_by(|a: &NodeAnswer, b| a.node.cmp(&b.node));
    Ok(answers)
}

/// An operation from the channel: applied in a task, answered on the channel.
pub(super) fn on_request(s: &Arc<Shared>, sink: &dyn DeliverySink, rest: &str) {
    let Some((id, op)) = rest.split_once('\n') else {
        return;
    };
    let op: ControlOp = match serde_json::from_str(op) {
        Ok(op) => op,
        Err(e) => {
            tracing::warn!(error = %e, "undecodable control operation on the redis channel");
            return;
        }
    };
    let Ok(slot) = Arc::clone(&s.control_slots).try_acquire_owned() else {
        tracing::warn!("too many control operations at once; one is not applied");
        return;
    };
    let applied = sink.control(op);
    let id = id.to_owned();
    let shared = Arc::clone(s);
    s.tracker.spawn(async move {
        let mut answer = applied.await;
        answer.node.clone_from(&shared.node_id);
        drop(slot);
        let Ok(answer) = serde_json::to_string(&answer) else {
            return;
        };
        let mut conn = shared.conn.clone();
        let sent: Result<usize, _> = redis::cmd("PUBLISH")
            .arg(shared.keys.events())
            .arg(format!("r\n{id}\n{answer}"))
            .query_async(&mut conn)
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "answering a control operation failed");
        }
    });
}

/// An answer from the channel, for a call of this node (others ignore it).
pub(super) fn on_answer(s: &Shared, rest: &str) {
    let Some((id, answer)) = rest.split_once('\n') else {
        return;
    };
    let waiting = s.control_waiting.lock().unwrap_or_else(|e| e.into_inner());
    let Some(tx) = waiting.get(id) else {
        return;
    };
    match serde_json::from_str::<NodeAnswer>(answer) {
        Ok(a) => {
            let _ = tx.try_send(a);
        }
        Err(e) => tracing::warn!(error = %e, "undecodable control answer on the redis channel"),
    }
}

/// `SET NX` the key; when it exists, its answer (empty: still running).
pub(super) async fn claim(s: &Shared, key: &str, ttl: Duration) -> Result<Claim, BrokerError> {
    let mut conn = s.conn.clone();
    let k = s.keys.idempotency(key);
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let set: Option<String> = redis::cmd("SET")
        .arg(&k)
        .arg("")
        .arg("NX")
        .arg("PX")
        .arg(ttl_ms)
        .query_async(&mut conn)
        .await
        .map_err(unavailable)?;
    if set.is_some() {
        return Ok(Claim::First);
    }
    let value: Option<String> = redis::cmd("GET")
        .arg(&k)
        .query_async(&mut conn)
        .await
        .map_err(unavailable)?;
    Ok(match value {
        Some(v) if !v.is_empty() => Claim::Done(v),
        Some(_) => Claim::Pending,
        // Expired between the two commands: as good as new, try once more.
        None => Claim::Pending,
    })
}

/// Stores the answer (keeping the key's TTL from the claim) or drops the key.
pub(super) async fn settle(
    s: &Shared,
    key: &str,
    answer: Option<String>,
    ttl: Duration,
) -> Result<(), BrokerError> {
    let mut conn = s.conn.clone();
    let k = s.keys.idempotency(key);
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    match answer {
        Some(a) => {
            let _: Option<String> = redis::cmd("SET")
                .arg(&k)
                .arg(a)
                .arg("XX")
                .arg("PX")
                .arg(ttl_ms)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        None => {
            let _: usize = redis::cmd("DEL")
                .arg(&k)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
        }
    }
    Ok(())
}
