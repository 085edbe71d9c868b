//! Which node holds which Engine.IO session, and where to reach it.
//!
//! ```text
//!  node A: handshake ─▶ SET {p}sio:{sid} A PX SID_TTL   (refreshed every SID_TTL/3 while it lives,
//!                                                         DEL when it ends)
//!          heartbeat ─▶ SET {p}node:A "host:port" PX presence TTL
//!  node B: request for sid ─▶ OWNER script: GET sio:{sid} → A, GET node:A → "host:port"
//! ```
//!
//! The address lives in the node's heartbeat key, so a node that died (its
//! heartbeat expired) owns nothing, whatever its session keys still say;
//! those expire on their own after [`SID_TTL`]. Node ids are new in each
//! process, so a restarted node never inherits the sessions of its
//! previous life even at the same address.

use super::{RedisCluster, Shared, unavailable};
use crate::broker::BrokerError;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Life of a session's owner key without refresh. Only bounds how long the
/// key of a session on a crashed node lingers; liveness comes from the
/// node's heartbeat.
pub const SID_TTL: Duration = Duration::from_secs(60);
/// Owner keys refreshed per round trip.
const REFRESH_BATCH: usize = 500;

/// KEYS: the session's owner key. ARGV: prefix. Answers `{node, address}`
/// when the owner's heartbeat is alive, nil otherwise.
pub(super) const OWNER_LUA: &str = r"
local n = redis.call('GET', KEYS[1])
if not n then return false end
local a = redis.call('GET', ARGV[1] .. 'node:' .. n)
if not a then return false end
return {n, a}
";

/// A live session's owner, as found in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The owner's node id.
    pub node: String,
    /// The HTTP address it advertised (`host:port`).
    pub address: String,
}

fn sid_key(s: &Shared, sid: &str) -> String {
    format!("{}sio:{sid}", s.keys.prefix())
}

fn ttl_ms() -> u64 {
    u64::try_from(SID_TTL.as_millis()).unwrap_or(u64::MAX)
}

impl RedisCluster {
    /// Publishes the HTTP address other nodes reach this one at (kept in
    /// its heartbeat key, so it disappears with the node).
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`] when Redis cannot be written now; the
    /// next heartbeat writes it anyway.
    pub async fn advertise(&self, address: &str) -> Result<(), BrokerError> {
        let s = &self.shared;
        *s.advertised.lock().unwrap_or_else(|e| e.into_inner()) = Some(address.to_owned());
        let ttl = u64::try_from(s.config.presence_ttl.as_millis()).unwrap_or(u64::MAX);
        let mut conn = s.conn.clone();
        redis::cmd("SET")
            .arg(s.keys.node(&s.node_id))
            .arg(address)
            .arg("PX")
            .arg(ttl.max(1))
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    /// Records that this node holds Engine.IO session `sid`.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`] when Redis cannot be written; the
    /// session is still refreshed (and so registered) on the next round.
    pub async fn claim_session(&self, sid: &str) -> Result<(), BrokerError> {
        let s = &self.shared;
        s.claimed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sid.to_owned());
        let mut conn = s.conn.clone();
        redis::cmd("SET")
            .arg(sid_key(s, sid))
            .arg(&s.node_id)
            .arg("PX")
            .arg(ttl_ms())
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    /// Forgets session `sid` (it ended on this node); nothing to do for a
    /// session this node never claimed.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`] when Redis cannot be written; the key
    /// then expires after [`SID_TTL`].
    pub async fn release_session(&self, sid: &str) -> Result<(), BrokerError> {
        let s = &self.shared;
        let claimed = s
            .claimed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(sid);
        if !claimed {
            return Ok(());
        }
        let mut conn = s.conn.clone();
        redis::cmd("DEL")
            .arg(sid_key(s, sid))
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    /// The HTTP addresses advertised by the other live nodes.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`] when Redis cannot be read.
    pub async fn peer_addresses(&self) -> Result<Vec<String>, BrokerError> {
        let s = &self.shared;
        let mut conn = s.conn.clone();
        let nodes: Vec<String> = redis::cmd("SMEMBERS")
            .arg(s.keys.nodes())
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let others: Vec<&String> = nodes.iter().filter(|n| **n != s.node_id).collect();
        if others.is_empty() {
            return Ok(Vec::new());
        }
        let mut get = redis::cmd("MGET");
        for n in &others {
            get.arg(s.keys.node(n));
        }
        let values: Vec<Option<String>> = get.query_async(&mut conn).await.map_err(unavailable)?;
        // `1`: a live node that advertises no address (an older version).
        Ok(values
            .into_iter()
            .flatten()
            .filter(|a| a.as_str() != "1")
            .collect())
    }

    /// The live node holding session `sid`, if any.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`] when Redis cannot be read.
    pub async fn session_owner(&self, sid: &str) -> Result<Option<Owner>, BrokerError> {
        let s = &self.shared;
        let mut conn = s.conn.clone();
        let found: Option<(String, String)> = s
            .scripts
            .owner
            .key(sid_key(s, sid))
            .arg(s.keys.prefix())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(found.map(|(node, address)| Owner { node, address }))
    }
}

/// Keeps the owner keys of this node's sessions from expiring.
pub(super) async fn refresh_task(s: Arc<Shared>) {
    let mut tick = tokio::time::interval(SID_TTL / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = s.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let sids: Vec<String> = s
            .claimed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        for chunk in sids.chunks(REFRESH_BATCH) {
            let mut pipe = redis::pipe();
            for sid in chunk {
                pipe.cmd("SET")
                    .arg(sid_key(&s, sid))
                    .arg(&s.node_id)
                    .arg("PX")
                    .arg(ttl_ms())
                    .ignore();
            }
            let mut conn = s.conn.clone();
            if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                tracing::debug!(error = %e, "cannot refresh engine.io session owners");
                break;
            }
        }
    }
}

/// The set of claimed sessions (bounded by the engine's session cap).
pub(super) type Claimed = std::sync::Mutex<HashSet<String>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis_broker::RedisConfig;
    use crate::testing::RedisServer;

    async fn node(url: &str) -> RedisCluster {
        let mut config = RedisConfig::new(url);
        config.prefix = "owners:".into();
        RedisCluster::connect(config).await.expect("redis")
    }

    #[tokio::test]
    async fn a_session_is_owned_while_claimed_and_its_node_lives() {
        let server = RedisServer::start();
        let (a, b) = (node(&server.url()).await, node(&server.url()).await);
        a.advertise("10.0.0.11:7878").await.unwrap();
        b.advertise("10.0.0.12:7878").await.unwrap();

        assert_eq!(b.session_owner("S1").await.unwrap(), None, "never claimed");
        a.claim_session("S1").await.unwrap();
        let owner = b.session_owner("S1").await.unwrap().expect("owned");
        assert_eq!(owner.node, a.node_id());
        assert_eq!(owner.address, "10.0.0.11:7878");

        // Releasing twice, or a session never claimed here, is harmless.
        a.release_session("S1").await.unwrap();
        a.release_session("S1").await.unwrap();
        b.release_session("S2").await.unwrap();
        assert_eq!(b.session_owner("S1").await.unwrap(), None, "released");

        // A node whose heartbeat is gone owns nothing.
        a.claim_session("S3").await.unwrap();
        let mut conn = a.shared.conn.clone();
        redis::cmd("DEL")
            .arg(a.shared.keys.node(a.node_id()))
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
        assert_eq!(b.session_owner("S3").await.unwrap(), None);
    }

    #[tokio::test]
    async fn peers_are_the_other_live_nodes_addresses() {
        let server = RedisServer::start();
        let (a, b) = (node(&server.url()).await, node(&server.url()).await);
        a.advertise("10.0.0.11:7878").await.unwrap();
        b.advertise("10.0.0.12:7878").await.unwrap();
        let mut conn = a.shared.conn.clone();
        // The nodes set is kept by the heartbeat task; add them directly.
        redis::cmd("SADD")
            .arg(a.shared.keys.nodes())
            .arg(a.node_id())
            .arg(b.node_id())
            .arg("gone")
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
        assert_eq!(a.peer_addresses().await.unwrap(), ["10.0.0.12:7878"]);
        assert_eq!(b.peer_addresses().await.unwrap(), ["10.0.0.11:7878"]);
    }
}
