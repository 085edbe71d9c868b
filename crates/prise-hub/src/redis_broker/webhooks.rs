//! The webhook outbox of a cluster: one Redis stream (`{prefix}webhooks`,
//! ids `seq-0`) that the presence scripts append each transition to, and
//! every node appends its closed sessions to; one node at a time (the
//! holder of a lease) sends it, from a cursor kept in Redis, so a node's
//! death hands the sending over without losing or reordering events.

use super::{RedisCluster, Shared};
use redis::streams::StreamRangeReply;
use std::sync::Arc;
use std::time::Duration;

/// One event of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    /// Its position: unique, increasing.
    pub seq: u64,
    /// When it was appended, milliseconds since the Unix epoch (Redis' clock).
    pub at_ms: u64,
    /// Its JSON, without `id`, `seq` and `at`.
    pub body: String,
}

/// The cluster's webhook outbox (see the module).
#[derive(Clone)]
pub struct WebhookOutbox {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WebhookOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookOutbox").finish_non_exhaustive()
    }
}

impl RedisCluster {
    /// The webhook outbox (the presence scripts fill it when
    /// [`super::RedisConfig::webhooks`] is on).
    pub fn webhook_outbox(&self) -> WebhookOutbox {
        WebhookOutbox {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl WebhookOutbox {
    /// Appends `events` (JSON bodies) in one step.
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn append(&self, events: &[String]) -> Result<(), redis::RedisError> {
        if events.is_empty() {
            return Ok(());
        }
        let s = &self.shared;
        let mut conn = s.conn.clone();
        let mut call = s.scripts.webhook_append.key(s.keys.webhooks());
        call.key(s.keys.webhooks_seq());
        for e in events {
            call.arg(e);
        }
        call.invoke_async::<i64>(&mut conn).await.map(|_| ())
    }

    /// At most `limit` events after `after`, in order.
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn read(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<WebhookEvent>, redis::RedisError> {
        let s = &self.shared;
        let mut conn = s.conn.clone();
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(s.keys.webhooks())
            .arg(format!("({after}-0"))
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut conn)
            .await?;
        Ok(reply
            .ids
            .iter()
            .filter_map(|e| {
                let seq = e.id.split('-').next()?.parse().ok()?;
                let at_ms = e.get::<u64>("at").unwrap_or(0);
                let body = e.get::<String>("e")?;
                Some(WebhookEvent { seq, at_ms, body })
            })
            .collect())
    }

    /// The last event delivered.
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn cursor(&self) -> Result<u64, redis::RedisError> {
        let s = &self.shared;
        let mut conn = s.conn.clone();
        let c: Option<u64> = redis::cmd("GET")
            .arg(s.keys.webhooks_cursor())
            .query_async(&mut conn)
            .await?;
        Ok(c.unwrap_or(0))
    }

    /// Moves the cursor to `seq`, if this node still holds the lease.
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn set_cursor(&self, seq: u64) -> Result<bool, redis::RedisError> {
        let s = &self.shared;
        let mut conn = s.conn.clone();
        let moved: i64 = s
            .scripts
            .webhook_cursor
            .key(s.keys.webhooks_sender())
            .key(s.keys.webhooks_cursor())
            .arg(&s.node_id)
            .arg(seq)
            .invoke_async(&mut conn)
            .await?;
        Ok(moved == 1)
    }

    /// Takes or keeps the sender's lease for `ttl`: true when this node is
    /// the one that sends.
    ///
    /// # Errors
    /// Redis is unreachable.
    pub async fn lease(&self, ttl: Duration) -> Result<bool, redis::RedisError> {
        let s = &self.shared;
        let mut conn = s.conn.clone();
        let held: i64 = s
            .scripts
            .webhook_lease
            .key(s.keys.webhooks_sender())
            .arg(&s.node_id)
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            .invoke_async(&mut conn)
            .await?;
        Ok(held == 1)
    }
}
