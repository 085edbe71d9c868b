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
        .key(s.keys.webhooks())
        .key(s.keys.webhooks_seq())
        .arg(room)
        .arg(&s.node_id)
        .arg(&user.id)
        .arg(user_json)
        .arg(s.keys.events())
        .arg(ttl)
        .arg(s.webhooks_flag())
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
        .arg(s.webhooks_flag())
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
                    .key(s.keys.webhooks())
                    .key(s.keys.webhooks_seq())
                    .arg(room)
                    .arg(&s.node_id)
                    .arg(uid)
                    .arg(s.keys.events())
                    .arg(s.webhooks_flag())
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

#[cfg(test)]
mod tests {
    use crate::clock::SystemClock;
    use crate::redis_broker::{RedisCluster, RedisConfig};
    use crate::testing::RedisServer;
    use crate::{Hub, HubConfig, Outbound, Session, Transport};
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::sync::mpsc::Receiver;

    type Member = (Arc<Session>, Receiver<Outbound>);

    /// A node of a cluster on `url`, ready (subscribed) before it returns.
    async fn node(url: &str, max_presence_fanout: usize) -> (Hub, RedisCluster) {
        let mut config = RedisConfig::new(url);
        config.prefix = "pages:".into();
        let cluster = RedisCluster::connect(config).await.expect("redis");
        let mut hub_config = HubConfig::default();
        hub_config.limits.max_presence_fanout = max_presence_fanout;
        hub_config.limits.max_connections = 10_000;
        hub_config.presence_interval = Duration::from_millis(100);
        let clock: Arc<dyn crate::clock::Clock> = Arc::new(SystemClock);
        let hub = Hub::with_broker(hub_config, cluster.store(), Arc::clone(&clock), |sink| {
            cluster.broker(sink, clock)
        });
        eventually(|| hub.ready()).await;
        (hub, cluster)
    }

    /// Waits for a condition that other tasks make true (pub/sub delivery
    /// between nodes has no event to wait on here).
    async fn eventually(mut f: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(tokio::time::Instant::now() < deadline, "timed out");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn join_many(hub: &Hub, n: usize) -> Vec<Member> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let (s, rx) = hub.connect(Transport::Ws, None).expect("connect");
            hub.join(&s, "big", None, None).await.expect("join");
            v.push((s, rx));
        }
        v
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn presence_is_paged_and_coalesced_across_nodes() {
        let server = RedisServer::start();
        let url = server.url();
        let (a, _ca) = node(&url, 5).await;
        let (b, _cb) = node(&url, 1000).await;
        let mut on_a = join_many(&a, 120).await;
        let on_b = join_many(&b, 120).await;
        eventually(|| a.presence_count("big") == 240 && b.presence_count("big") == 240).await;

        // A join's answer is one page and the count, on a node that already
        // has the room's view and on one that reads it by pages.
        let (late, _late_rx) = b.connect(Transport::Ws, None).expect("connect");
        let joined = b.join(&late, "big", None, None).await.expect("join");
        assert_eq!(joined.members.count, 241);
        assert_eq!(joined.members.members.len(), 100);
        assert!(!joined.members.complete());
        let (c, _cc) = node(&url, 1000).await;
        let (fresh, _fresh_rx) = c.connect(Transport::Ws, None).expect("connect");
        let joined = c.join(&fresh, "big", None, None).await.expect("join");
        assert_eq!(joined.members.count, 242, "the view read by HSCAN pages");
        assert_eq!(joined.members.members.len(), 100);

        // Many first joins at once on a node without the view: one reads it,
        // the others wait for that read; every answer counts the room.
        let (d, _cd) = node(&url, 1000).await;
        let mut joins = tokio::task::JoinSet::new();
        for _ in 0..40 {
            let d = d.clone();
            joins.spawn(async move {
                let (s, rx) = d.connect(Transport::Ws, None).expect("connect");
                let joined = d.join(&s, "big", None, None).await.expect("join");
                (joined.members.count, (s, rx))
            });
        }
        let mut on_d = Vec::new();
        while let Some(r) = joins.join_next().await {
            let (count, member) = r.expect("join task");
            assert!((243..=282).contains(&count), "count {count}");
            on_d.push(member);
        }
        eventually(|| d.presence_count("big") == 282).await;

        // Page on node A while members come and go on both nodes.
        let mut seen = Vec::new();
        let mut after = None;
        let mut churn = Vec::new();
        for round in 0.. {
            let page = a.presence_page("big", after.as_ref(), Some(30));
            assert!(page.members.len() <= 30);
            seen.extend(page.members.iter().map(|u| u.id.clone()));
            let hub = if round % 2 == 0 { &b } else { &a };
            let mut joined = join_many(hub, 3).await;
            if let Some((s, _)) = joined.pop() {
                hub.leave(&s, "big").expect("a member");
            }
            churn.extend(joined);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let unique: HashSet<_> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "no member listed twice");
        for (s, _) in on_a.iter().chain(&on_b).chain(&on_d) {
            assert!(unique.contains(&s.user().id), "a stable member is listed");
        }

        // Node A's room is above its cap of 5: its members got diffs, not
        // one push per join from node B.
        let (_, rx) = &mut on_a[0];
        let (mut joined, mut diffs) = (0, 0);
        while let Ok(ev) = rx.try_recv() {
            match ev {
                Outbound::Joined { .. } => joined += 1,
                Outbound::PresenceDiff(_) => diffs += 1,
                _ => {}
            }
        }
        assert!(joined <= 5, "{joined} single announcements");
        assert!(diffs >= 1, "no diff");
        // Every node ends with the same, exact count once the leaves are
        // reconciled and the events have arrived.
        let total = 240 + 2 + on_d.len() + churn.len();
        eventually(|| {
            [&a, &b, &c, &d]
                .iter()
                .all(|h| h.presence_count("big") == total)
        })
        .await;
    }
}
