//! The webhook outbox: every event is written here before it is sent, and
//! stays (delivered or not) for `--webhook-retain`, so a consumer that was
//! down reads what it missed (`GET /api/events?after=`). In the SQLite file
//! of the store (`DATA/prise.db`, tables `webhook_events` and
//! `webhook_cursor`) with `--store sqlite`; in memory with `--store memory`.
//! Bounded: beyond [`MAX_EVENTS`] kept, new events are refused (counted)
//! rather than undelivered ones dropped.

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

impl OutboxError {
    /// A blocking task that did not finish.
    pub(crate) fn join(e: &tokio::task::JoinError) -> Self {
        Self(e.to_string())
    }
}

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

    /// Appends `events` (time, JSON) in one transaction; how many were
    /// refused because the outbox is full.
    pub(crate) fn append(&self, events: &[(u64, String)]) -> Result<usize, OutboxError> {
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
        }
    }

    /// At most `limit` events after `after`, in order.
    pub(crate) fn read(&self, after: u64, limit: usize) -> Result<Vec<Stored>, OutboxError> {
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
        }
    }

    /// The last event delivered.
    pub(crate) fn cursor(&self) -> Result<u64, OutboxError> {
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
        }
    }

    /// Records that everything up to `seq` was delivered.
    pub(crate) fn set_cursor(&self, seq: u64) -> Result<(), OutboxError> {
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
        }
    }

    /// Drops delivered events older than `before_ms`.
    pub(crate) fn trim(&self, before_ms: u64) -> Result<(), OutboxError> {
        let delivered = self.cursor()?;
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(o: &Outbox) {
        assert_eq!(o.cursor().unwrap(), 0);
        o.append(&[(10, "a".into()), (20, "b".into()), (30, "c".into())])
            .unwrap();
        let all = o.read(0, 10).unwrap();
        assert_eq!(
            all.iter().map(|e| e.body.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        let after = o.read(all[0].seq, 1).unwrap();
        assert_eq!(after[0].body, "b");
        o.set_cursor(all[1].seq).unwrap();
        assert_eq!(o.cursor().unwrap(), all[1].seq);
        // Only delivered events go, however old.
        o.trim(1_000).unwrap();
        let left = o.read(0, 10).unwrap();
        assert_eq!(
            left.iter().map(|e| e.body.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
        assert!(left[0].seq > all[1].seq, "positions are never reused");
    }

    #[test]
    fn memory_and_sqlite_keep_order_cursor_and_retention() {
        exercise(&Outbox::memory());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prise.db");
        exercise(&Outbox::sqlite(&path).unwrap());
        // What was written is still there after a reopen.
        let o = Outbox::sqlite(&path).unwrap();
        assert_eq!(o.read(0, 10).unwrap().len(), 1);
        assert!(o.cursor().unwrap() > 0);
    }
}
