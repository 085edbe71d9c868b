//! The webhook outbox: every event is written here before it is sent, and
//! stays (delivered or not) for `--webhook-retain`, so a consumer that was
//! down reads what it missed (`GET /api/events?after=`). In the SQLite file
//! of the store (`DATA/prise.db`, tables `webhook_events` and
//! `webhook_cursor`) with `--store sqlite`; in memory with `--store memory`;
//! in the cluster's Redis stream with `--redis`
//! ([`prise_hub::redis_broker::WebhookOutbox`], where the presence scripts
//! append the transitions and one node at a time sends). Bounded: beyond
//! [`MAX_EVENTS`] kept, new events are refused (counted) rather than
//! undelivered ones dropped (Redis keeps about as many, oldest first).

use prise_hub::redis_broker::WebhookOutbox;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Most events kept.
pub(crate) const MAX_EVENTS: u64 = 1_000_000;

/// One stored event: its position and its JSON (without `id` and `seq`,
/// which are the position).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stored {
    pub(crate) seq: u64,
    pub(crate) at_ms: u64,
    pub(crate) body: String,
}

/// Why the outbox failed.
#[derive(Debug, thiserror::Error)]
#[error("webhook outbox: {0}")]
pub struct OutboxError(String);

impl From<rusqlite::Error> for OutboxError {
    fn from(e: rusqlite::Error) -> Self {
        Self(e.to_string())
    }
}

#[derive(Debug, Default)]
pub(crate) struct Memory {
    events: VecDeque<Stored>,
    next: u64,
    cursor: u64,
}

/// The outbox.
#[derive(Debug, Clone)]
pub(crate) enum Outbox {
    /// Lost at exit.
    Memory(Arc<Mutex<Memory>>),
    /// Durable.
    Sqlite(Arc<Mutex<Connection>>),
    /// Shared by the nodes of a cluster.
    Redis(WebhookOutbox),
}

impl From<redis::RedisError> for OutboxError {
    fn from(e: redis::RedisError) -> Self {
        Self(e.to_string())
    }
}

/// Runs `f` on the blocking pool (SQLite calls).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, OutboxError> + Send + 'static,
) -> Result<T, OutboxError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| OutboxError(e.to_string()))?
}

impl Outbox {
    /// Appends `events` (time, JSON) in one step; how many were refused
    /// because the outbox is full.
    pub(crate) async fn append(&self, events: Vec<(u64, String)>) -> Result<usize, OutboxError> {
        match self {
            Self::Redis(r) => {
                let bodies: Vec<String> = events.into_iter().map(|(_, b)| b).collect();
                r.append(&bodies).await?;
                Ok(0)
            }
            local => {
                let o = local.clone();
                blocking(move || o.append_local(&events)).await
            }
        }
    }

    /// At most `limit` events after `after`, in order.
    pub(crate) async fn read(&self, after: u64, limit: usize) -> Result<Vec<Stored>, OutboxError> {
        match self {
            Self::Redis(r) => Ok(r
                .read(after, limit)
                .await?
                .into_iter()
                .map(|e| Stored {
                    seq: e.seq,
                    at_ms: e.at_ms,
                    body: e.body,
                })
                .collect()),
            local => {
                let o = local.clone();
                blocking(move || o.read_local(after, limit)).await
            }
        }
    }

    /// The last event delivered.
    pub(crate) async fn cursor(&self) -> Result<u64, OutboxError> {
        match self {
            Self::Redis(r) => Ok(r.cursor().await?),
            local => {
                let o = local.clone();
                blocking(move || o.cursor_local()).await
            }
        }
    }

    /// Records that everything up to `seq` was delivered; false when this
    /// node no longer sends (a cluster's lease passed to another node).
    pub(crate) async fn set_cursor(&self, seq: u64) -> Result<bool, OutboxError> {
        match self {
            Self::Redis(r) => Ok(r.set_cursor(seq).await?),
            local => {
                let o = local.clone();
                blocking(move || o.set_cursor_local(seq).map(|()| true)).await
            }
        }
    }

    /// Drops delivered events older than `before_ms` (a cluster's stream
    /// is capped by length instead).
    pub(crate) async fn trim(&self, before_ms: u64) -> Result<(), OutboxError> {
        match self {
            Self::Redis(_) => Ok(()),
            local => {
                let o = local.clone();
                blocking(move || o.trim_local(before_ms)).await
            }
        }
    }

    /// May this node send now? Always on one node; in a cluster, while it
    /// holds the sender's lease for `ttl`.
    pub(crate) async fn lease(&self, ttl: std::time::Duration) -> Result<bool, OutboxError> {
        match self {
            Self::Redis(r) => Ok(r.lease(ttl).await?),
            _ => Ok(true),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Outbox {
    /// An outbox in memory.
    pub(crate) fn memory() -> Self {
        Self::Memory(Arc::default())
    }

    /// The outbox in the SQLite file at `path` (created if missing).
    pub(crate) fn sqlite(path: &Path) -> Result<Self, OutboxError> {
        let c = Connection::open(path)?;
        c.busy_timeout(std::time::Duration::from_secs(5))?;
        c.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS webhook_events (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 at_ms INTEGER NOT NULL,
                 body TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS webhook_cursor (
                 id INTEGER PRIMARY KEY CHECK (id = 1),
                 delivered INTEGER NOT NULL);",
        )?;
        Ok(Self::Sqlite(Arc::new(Mutex::new(c))))
    }

    fn append_local(&self, events: &[(u64, String)]) -> Result<usize, OutboxError> {
        match self {
            Self::Memory(m) => {
                let mut m = lock(m);
                let mut refused = 0;
                for (at_ms, body) in events {
                    if m.events.len() as u64 >= MAX_EVENTS {
                        refused += 1;
                        continue;
                    }
                    m.next += 1;
                    let seq = m.next;
                    m.events.push_back(Stored {
                        seq,
                        at_ms: *at_ms,
                        body: body.clone(),
                    });
                }
                Ok(refused)
            }
            Self::Sqlite(c) => {
                let mut c = lock(c);
                let tx = c.transaction()?;
                let kept: u64 =
                    tx.query_row("SELECT COUNT(*) FROM webhook_events", [], |r| r.get(0))?;
                let room = usize::try_from(MAX_EVENTS.saturating_sub(kept)).unwrap_or(usize::MAX);
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO webhook_events (at_ms, body) VALUES (?1, ?2)",
                    )?;
                    for (at_ms, body) in events.iter().take(room) {
                        insert.execute(params![at_ms, body])?;
                    }
                }
                tx.commit()?;
                Ok(events.len().saturating_sub(room))
            }
            Self::Redis(_) => Ok(0),
        }
    }

    fn read_local(&self, after: u64, limit: usize) -> Result<Vec<Stored>, OutboxError> {
        match self {
            Self::Memory(m) => {
                let m = lock(m);
                let start = m.events.partition_point(|e| e.seq <= after);
                Ok(m.events.iter().skip(start).take(limit).cloned().collect())
            }
            Self::Sqlite(c) => {
                let c = lock(c);
                let mut q = c.prepare_cached(
                    "SELECT seq, at_ms, body FROM webhook_events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )?;
                let rows = q.query_map(params![after, limit as u64], |r| {
                    Ok(Stored {
                        seq: r.get(0)?,
                        at_ms: r.get(1)?,
                        body: r.get(2)?,
                    })
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            }
            Self::Redis(_) => Ok(Vec::new()),
        }
    }

    fn cursor_local(&self) -> Result<u64, OutboxError> {
        match self {
            Self::Memory(m) => Ok(lock(m).cursor),
            Self::Sqlite(c) => Ok(lock(c)
                .query_row(
                    "SELECT delivered FROM webhook_cursor WHERE id = 1",
                    [],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(0)),
            Self::Redis(_) => Ok(0),
        }
    }

    fn set_cursor_local(&self, seq: u64) -> Result<(), OutboxError> {
        match self {
            Self::Memory(m) => {
                lock(m).cursor = seq;
                Ok(())
            }
            Self::Sqlite(c) => {
                lock(c).execute(
                    "INSERT INTO webhook_cursor (id, delivered) VALUES (1, ?1)
                     ON CONFLICT(id) DO UPDATE SET delivered = excluded.delivered",
                    params![seq],
                )?;
                Ok(())
            }
            Self::Redis(_) => Ok(()),
        }
    }

    fn trim_local(&self, before_ms: u64) -> Result<(), OutboxError> {
        let delivered = self.cursor_local()?;
        match self {
            Self::Memory(m) => {
                let mut m = lock(m);
                while m
                    .events
                    .front()
                    .is_some_and(|e| e.seq <= delivered && e.at_ms < before_ms)
                {
                    m.events.pop_front();
                }
                Ok(())
            }
            Self::Sqlite(c) => {
                lock(c).execute(
                    "DELETE FROM webhook_events WHERE seq <= ?1 AND at_ms < ?2",
                    params![delivered, before_ms],
                )?;
                Ok(())
            }
            Self::Redis(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exercise(o: &Outbox) {
        assert_eq!(o.cursor().await.unwrap(), 0);
        o.append(vec![(10, "a".into()), (20, "b".into()), (30, "c".into())])
            .await
            .unwrap();
        let all = o.read(0, 10).await.unwrap();
        assert_eq!(
            all.iter().map(|e| e.body.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        let after = o.read(all[0].seq, 1).await.unwrap();
        assert_eq!(after[0].body, "b");
        assert!(o.set_cursor(all[1].seq).await.unwrap());
        assert_eq!(o.cursor().await.unwrap(), all[1].seq);
        // Only delivered events go, however old.
        o.trim(1_000).await.unwrap();
        let left = o.read(0, 10).await.unwrap();
        assert_eq!(
            left.iter().map(|e| e.body.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
        assert!(left[0].seq > all[1].seq, "positions are never reused");
    }

    #[tokio::test]
    async fn memory_and_sqlite_keep_order_cursor_and_retention() {
        exercise(&Outbox::memory()).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prise.db");
        exercise(&Outbox::sqlite(&path).unwrap()).await;
        // What was written is still there after a reopen.
        let o = Outbox::sqlite(&path).unwrap();
        assert_eq!(o.read(0, 10).await.unwrap().len(), 1);
        assert!(o.cursor().await.unwrap() > 0);
    }
}
