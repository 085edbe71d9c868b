//! Shared presence over Redis (see [`crate::presence`] for the versioned
//! views the hub keeps).
//!
//! Each room's members live in the hash `pres:{room}` (user → the nodes
//! holding a session of theirs), changed only by scripts that also bump the
//! room's presence version and publish `joined`/`left`. A node registers a
//! user's first local session and removes its last one; one task per node
//! reconciles a set of dirty (room, user) pairs against the local truth, so a
//! join racing a leave never leaves a ghost. The same task refreshes the
//! node's heartbeat and reaps the members of nodes whose heartbeat expired.

use super::{Shared, unavailable};
use crate::broker::{BrokerError, DeliverySink};
use crate::presence::{PresenceApplied, PresenceEvent, PresenceSnapshot};
use prise_proto::message::User;
use std::sync::Arc;
use std::time::Duration;

/// A (room, user id) pair whose shared presence must follow the local one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Membership {
    pub(super) room: String,
    pub(super) user_id: String,
}

/// When [`reap`] removes a node's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reap {
    /// Only once the node's heartbeat has expired (another node, found dead).
    IfDead,
    /// Even while its heartbeat lives (this node, at shutdown).
    Always,
}

impl Shared {
    pub(super) fn mark_dirty(&self, room: &str, user: &User) {
        self.dirty.lock().unwrap_or_else(|e| e.into_inner()).insert(
            Membership {
                room: room.to_owned(),
                user_id: user.id.clone(),
            },
            user.clone(),
        );
        self.dirty_notify.notify_one();
    }
}

/// Fields a presence hash is read by, per HSCAN call.
const SCAN_PAGE: usize = 1000;

/// The users of one HSCAN page (field, value, field, value, …).
fn parse_page(flat: &[String], users: &mut Vec<User>) {
    #[derive(serde::Deserialize)]
    struct Record {
        u: User,
    }
    users.extend(flat.chunks(2).filter_map(|kv| match kv {
        [_, v] => serde_json::from_str::<Record>(v).ok().map(|r| r.u),
        _ => None,
    }));
}

/// [`crate::broker::Broker::presence_join`]: registers this node for `user`
/// in `room`, in O(1) of the room's size.
pub(super) async fn join(s: &Shared, room: &str, user: &User) -> Result<(), BrokerError> {
    let user_json =
        serde_json::to_string(user).map_err(|e| BrokerError::Unavailable(e.to_string()))?;
    let ttl = u64::try_from(s.config.presence_ttl.as_millis()).unwrap_or(u64::MAX);
    let mut conn = s.conn.clone();
    let _first: i64 = s
        .scripts
        .join
        .key(s.keys.presence(room))
        .key(s.keys.presence_version(room))
        .key(s.keys.node_rooms(&s.node_id))
        .key(s.keys.nodes())
        .key(s.keys.node(&s.node_id))
        .arg(room)
        .arg(&s.node_id)
        .arg(&user.id)
        .arg(user_json)
        .arg(s.keys.events())
        .arg(ttl)
        .invoke_async(&mut conn)
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// Reads a room's members by pages (HSCAN, [`SCAN_PAGE`] fields a call), so
/// Redis never builds a whole large hash into one reply. The version is read
/// first: every event after it reaches the view, which converges even though
/// the pages are not one atomic read (see
/// [`crate::broker::DeliverySink::presence_install`]).
pub(super) async fn read(s: &Shared, room: &str) -> Result<PresenceSnapshot, BrokerError> {
    let mut conn = s.conn.clone();
    let key = s.keys.presence(room);
    let version: Option<u64> = redis::cmd("GET")
        .arg(s.keys.presence_version(room))
        .query_async(&mut conn)
        .await
        .map_err(unavailable)?;
    let mut users = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, flat): (u64, Vec<String>) = redis::cmd("HSCAN")
            .arg(&key)
            .arg(cursor)
            .arg("COUNT")
            .arg(SCAN_PAGE)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        parse_page(&flat, &mut users);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    // HSCAN may return a field twice; the view keeps one entry per id.
    Ok(PresenceSnapshot {
        version: version.unwrap_or(0),
        users,
    })
}

/// Removes `node`'s members from every room's presence (when its heartbeat
/// expired, or [`Reap::Always`] for this node at shutdown). Answers the
/// number of users who left, or -1 when the heartbeat still lives.
pub(super) async fn reap(s: &Shared, node: &str, when: Reap) -> Result<i64, redis::RedisError> {
    let mut conn = s.conn.clone();
    s.scripts
        .reap
        .key(s.keys.nodes())
        .key(s.keys.node_rooms(node))
        .key(s.keys.node(node))
        .arg(node)
        .arg(s.keys.prefix())
        .arg(s.keys.events())
        .arg(match when {
            Reap::IfDead => "0",
            Reap::Always => "1",
        })
        .invoke_async(&mut conn)
        .await
}

/// A `joined` (`kind` "j") or `left` ("l") event from the channel: applied
/// to the room's view, which is read again when the event shows a gap.
pub(super) async fn on_event(s: &Shared, sink: &dyn DeliverySink, kind: &str, rest: &str) {
    let mut p = rest.splitn(3, '\n');
    let (Some(room), Some(version), Some(user)) = (p.next(), p.next(), p.next()) else {
        return;
    };
    let (Ok(version), Ok(user)) = (version.parse(), serde_json::from_str::<User>(user)) else {
        return;
    };
    let event = PresenceEvent {
        version,
        joined: kind == "j",
        user,
    };
    if sink.presence_event(room, event) == PresenceApplied::Refetch {
        match read(s, room).await {
            Ok(snap) => {
                sink.presence_install(room, snap, false);
            }
            Err(e) => tracing::warn!(error = %e, "reading presence failed"),
        }
    }
}

/// Keeps this node's heartbeat, reaps dead nodes, and brings the shared
/// presence in line with the local one.
pub(super) async fn presence_task(s: Arc<Shared>) {
    let ttl = s.config.presence_ttl.max(Duration::from_millis(300));
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let mut tick = tokio::time::interval(ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = s.shutdown.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = heartbeat(&s, ttl_ms).await {
                    tracing::debug!(error = %e, "presence heartbeat failed");
                }
            }
            _ = s.dirty_notify.notified() => {}
        }
        let dirty = std::mem::take(&mut *s.dirty.lock().unwrap_or_else(|e| e.into_inner()));
        let Some(sink) = s.sink() else {
            return;
        };
        let mut failed = Vec::new();
        for (membership, user) in dirty {
            let Membership { room, user_id: uid } = &membership;
            let r = if sink.local_member(room, uid) {
                join(&s, room, &user).await
            } else {
                let mut conn = s.conn.clone();
                s.scripts
                    .leave
                    .key(s.keys.presence(room))
                    .key(s.keys.presence_version(room))
                    .arg(room)
                    .arg(&s.node_id)
                    .arg(uid)
                    .arg(s.keys.events())
                    .invoke_async::<i64>(&mut conn)
                    .await
                    .map(|_| ())
                    .map_err(unavailable)
            };
            if r.is_err() {
                failed.push((membership, user));
            }
        }
        if !failed.is_empty() {
            // Kept for the next tick (the set is bounded by local memberships).
            let mut d = s.dirty.lock().unwrap_or_else(|e| e.into_inner());
            for (membership, user) in failed {
                d.entry(membership).or_insert(user);
            }
        }
    }
}

async fn heartbeat(s: &Shared, ttl_ms: u64) -> Result<(), redis::RedisError> {
    let mut conn = s.conn.clone();
    // The heartbeat carries the advertised HTTP address (see `owners`).
    let value = s
        .advertised
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_else(|| "1".to_owned());
    let nodes: Vec<String> = redis::pipe()
        .cmd("SET")
        .arg(s.keys.node(&s.node_id))
        .arg(value)
        .arg("PX")
        .arg(ttl_ms)
        .ignore()
        .cmd("SADD")
        .arg(s.keys.nodes())
        .arg(&s.node_id)
        .ignore()
        .cmd("SMEMBERS")
        .arg(s.keys.nodes())
        .query_async::<(Vec<String>,)>(&mut conn)
        .await?
        .0;
    for node in nodes.iter().filter(|n| **n != s.node_id) {
        let n = reap(s, node, Reap::IfDead).await?;
        if n >= 0 {
            tracing::info!(node = %node, left = n, "reaped the presence of a dead node");
        }
    }
    Ok(())
}
