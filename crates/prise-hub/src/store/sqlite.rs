//! SQLite history, the embedded default (`--data DIR`, file `prise.db`).
//!
//! # Design
//!
//! ```text
//!  append(batch) ──▶ bounded channel ──▶ writer thread: drain what is queued,
//!                                        one transaction, COMMIT, then answer
//!                                        every waiter (ack only after commit)
//!  read / head   ──▶ spawn_blocking on a separate read connection (WAL lets
//!                    readers run beside the writer)
//! ```
//!
//! WAL with `synchronous = NORMAL`: a committed message survives a crash or
//! `kill -9` of the process (power loss may drop the last commits). Retention
//! by count runs after each commit for the rooms it touched; by age every
//! [`AGE_SWEEP_EVERY`]. Messages are stored with their hub-wide `seq` as the
//! rowid, so recovery across rooms is one indexed range scan.

use super::{
    HistoryPage, HistoryQuery, HistoryStore, Retention, RoomHead, SessionSnapshot, StoreError,
    new_epoch,
};
use futures_util::future::{BoxFuture, FutureExt};
use prise_proto::message::{Epoch, MESSAGE_EVENT, Message, Offset};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// How often messages older than the retention age are swept.
pub(super) const AGE_SWEEP_EVERY: Duration = Duration::from_secs(10);
/// Depth of the writer's queue; appends wait when it is full.
const WRITER_QUEUE: usize = 1024;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rooms (
    name TEXT PRIMARY KEY,
    epoch TEXT NOT NULL,
    last INTEGER NOT NULL DEFAULT 0,
    dropped_seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    room TEXT NOT NULL,
    offset INTEGER NOT NULL,
    id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    content TEXT NOT NULL,
    ts INTEGER NOT NULL,
    event TEXT NOT NULL DEFAULT 'message',
    args INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_room_offset ON messages(room, offset);
CREATE INDEX IF NOT EXISTS messages_ts ON messages(ts);
CREATE TABLE IF NOT EXISTS sessions (
    pid TEXT PRIMARY KEY,
    snapshot TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
";

/// Columns added since the first schema, with their definitions: a
/// database created before them gets them, with their defaults, when it is
/// opened (every existing message is a chat message with one argument).
const ADDED_COLUMNS: &[(&str, &str)] = &[
    ("event", "TEXT NOT NULL DEFAULT 'message'"),
    ("args", "INTEGER NOT NULL DEFAULT 0"),
];

/// Brings a database of an older schema up to this one.
fn migrate(conn: &Connection) -> Result<(), rusqlite::Error> {
    let mut have = Vec::new();
    {
        let mut info = conn.prepare("PRAGMA table_info(messages)")?;
        let mut rows = info.query([])?;
        while let Some(row) = rows.next()? {
            have.push(row.get::<_, String>(1)?);
        }
    }
    for (column, definition) in ADDED_COLUMNS {
        if !have.iter().any(|c| c == column) {
            conn.execute_batch(&format!(
                "ALTER TABLE messages ADD COLUMN {column} {definition};"
            ))?;
        }
    }
    Ok(())
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Op {
    Append(Vec<Arc<Message>>, Reply<()>),
    CreateRoom(String, Reply<RoomHead>),
    SaveSession(String, SessionSnapshot, Reply<()>),
    TakeSession(String, u64, Reply<Option<SessionSnapshot>>),
    Clear(String, Reply<usize>),
    Flush(Reply<()>),
}

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// History in a SQLite file, written by one dedicated thread.
pub struct SqliteStore {
    writer: mpsc::SyncSender<Op>,
    reader: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(db_err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db_err)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(db_err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(db_err)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` and starts its writer thread.
    ///
    /// # Errors
    /// Fails when the file cannot be opened or its schema created.
    pub fn open(path: &Path, retention: Retention) -> Result<Self, StoreError> {
        let conn = open(path)?;
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        migrate(&conn).map_err(db_err)?;
        let reader = open(path)?;
        let (tx, rx) = mpsc::sync_channel(WRITER_QUEUE);
        std::thread::Builder::new()
            .name("prise-sqlite-writer".into())
            .spawn(move || Writer { conn, retention }.run(rx))
            .map_err(|e| StoreError::Database(e.to_string()))?;
        Ok(Self {
            writer: tx,
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    fn call<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> Op,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        let (tx, rx) = oneshot::channel();
        let op = make(tx);
        // The queue is bounded. Room in it (the usual case): the operation is
        // queued at once, no thread hand-off per call; a full queue waits on
        // a blocking thread, never on the runtime's workers.
        let queued = match self.writer.try_send(op) {
            Ok(()) => Ok(None),
            Err(mpsc::TrySendError::Full(op)) => Ok(Some((self.writer.clone(), op))),
            Err(mpsc::TrySendError::Disconnected(_)) => Err(StoreError::Closed),
        };
        async move {
            if let Some((writer, op)) = queued? {
                tokio::task::spawn_blocking(move || writer.send(op))
                    .await
                    .map_err(|_| StoreError::Closed)?
                    .map_err(|_| StoreError::Closed)?;
            }
            rx.await.map_err(|_| StoreError::Closed)?
        }
        .boxed()
    }

    fn read_with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, StoreError>> {
        let reader = Arc::clone(&self.reader);
        async move {
            tokio::task::spawn_blocking(move || {
                let conn = reader.lock().unwrap_or_else(|e| e.into_inner());
                f(&conn).map_err(db_err)
            })
            .await
            .map_err(|_| StoreError::Closed)?
        }
        .boxed()
    }
}

fn head_of(conn: &Connection, room: &str) -> Result<Option<RoomHead>, rusqlite::Error> {
    let row: Option<(String, u64)> = conn
        .query_row(
            "SELECT epoch, last FROM rooms WHERE name = ?1",
            [room],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((epoch, last)) = row else {
        return Ok(None);
    };
    let first: Option<u64> = conn.query_row(
        "SELECT min(offset) FROM messages WHERE room = ?1",
        [room],
        |r| r.get(0),
    )?;
    Ok(Some(RoomHead {
        epoch: Epoch(epoch),
        last: Offset(last),
        first: Offset(first.unwrap_or(last + 1)),
    }))
}

fn row_to_message(r: &rusqlite::Row<'_>) -> Result<Arc<Message>, rusqlite::Error> {
    let content: String = r.get(6)?;
    Ok(Arc::new(Message {
        seq: r.get(0)?,
        room_id: r.get(1)?,
        offset: Offset(r.get(2)?),
        id: r.get(3)?,
        user_id: r.get(4)?,
        user_name: r.get(5)?,
        content: serde_json::from_str(&content).unwrap_or(serde_json::Value::String(content)),
        timestamp: r.get(7)?,
        event: {
            let e: String = r.get(8)?;
            if e == MESSAGE_EVENT {
                MESSAGE_EVENT.into()
            } else {
                e.into()
            }
        },
        args: r.get(9)?,
    }))
}

const COLUMNS: &str = "seq, room, offset, id, user_id, user_name, content, ts, event, args";

struct Writer {
    conn: Connection,
    retention: Retention,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Op>) {
        let mut last_sweep = Instant::now();
        while let Ok(first) = rx.recv() {
            // Group every append already queued into one transaction.
            let mut appends: Vec<(Vec<Arc<Message>>, Reply<()>)> = Vec::new();
            let mut others = Vec::new();
            let mut next = Some(first);
            while let Some(op) = next.take() {
                match op {
                    Op::Append(b, r) => appends.push((b, r)),
                    other => others.push(other),
                }
                if appends.len() < 256 {
                    next = rx.try_recv().ok();
                }
            }
            if !appends.is_empty() {
                let result = self.append(appends.iter().flat_map(|(b, _)| b.iter()));
                for (_, reply) in appends {
                    let _ = reply.send(
                        result
                            .as_ref()
                            .map(|_| ())
                            .map_err(|e| StoreError::Database(e.to_string())),
                    );
                }
            }
            for op in others {
                self.other(op);
            }
            if last_sweep.elapsed() >= AGE_SWEEP_EVERY {
                last_sweep = Instant::now();
                if let Err(e) = self.sweep_age() {
                    tracing::warn!(error = %e, "history age sweep failed");
                }
            }
        }
    }

    fn append<'a>(
        &mut self,
        messages: impl Iterator<Item = &'a Arc<Message>>,
    ) -> Result<(), rusqlite::Error> {
        let tx = self.conn.transaction()?;
        let mut rooms = HashSet::new();
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO messages
                 (seq, room, offset, id, user_id, user_name, content, ts, event, args)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            let mut upsert = tx.prepare_cached(
                "INSERT INTO rooms (name, epoch, last) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO UPDATE SET last = excluded.last",
            )?;
            for m in messages {
                insert.execute(params![
                    m.seq,
                    m.room_id,
                    m.offset.0,
                    m.id,
                    m.user_id,
                    m.user_name,
                    m.content.to_string(),
                    m.timestamp,
                    m.event.as_ref(),
                    m.args
                ])?;
                upsert.execute(params![m.room_id, new_epoch().0, m.offset.0])?;
                rooms.insert(m.room_id.clone());
            }
            let keep = i64::try_from(self.retention.count).unwrap_or(i64::MAX);
            let mut dropped = tx.prepare_cached(
                "UPDATE rooms SET dropped_seq = max(dropped_seq, coalesce(
                     (SELECT max(seq) FROM messages WHERE room = ?1 AND offset <= last - ?2), 0))
                 WHERE name = ?1",
            )?;
            let mut delete = tx.prepare_cached(
                "DELETE FROM messages WHERE room = ?1
                 AND offset <= (SELECT last FROM rooms WHERE name = ?1) - ?2",
            )?;
            for room in &rooms {
                dropped.execute(params![room, keep])?;
                delete.execute(params![room, keep])?;
            }
        }
        tx.commit()
    }

    fn clear(&mut self, room: &str) -> Result<usize, rusqlite::Error> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE rooms SET dropped_seq = max(dropped_seq, coalesce(
                 (SELECT max(seq) FROM messages WHERE room = ?1), 0))
             WHERE name = ?1",
            [room],
        )?;
        let n = tx.execute("DELETE FROM messages WHERE room = ?1", [room])?;
        tx.commit()?;
        Ok(n)
    }

    fn sweep_age(&mut self) -> Result<(), rusqlite::Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let cutoff =
            u64::try_from(now.saturating_sub(self.retention.age.as_millis())).unwrap_or(u64::MAX);
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE rooms SET dropped_seq = max(dropped_seq, coalesce(
                 (SELECT max(seq) FROM messages WHERE room = rooms.name AND ts < ?1), 0))",
            [cutoff],
        )?;
        tx.execute("DELETE FROM messages WHERE ts < ?1", [cutoff])?;
        tx.execute(
            "DELETE FROM sessions WHERE expires_at < ?1",
            [u64::try_from(now).unwrap_or(u64::MAX)],
        )?;
        tx.commit()
    }

    fn other(&mut self, op: Op) {
        match op {
            Op::Append(..) => {}
            Op::CreateRoom(room, reply) => {
                let r = self
                    .conn
                    .execute(
                        "INSERT OR IGNORE INTO rooms (name, epoch, last) VALUES (?1, ?2, 0)",
                        params![room, new_epoch().0],
                    )
                    .and_then(|_| head_of(&self.conn, &room))
                    .map_err(db_err)
                    .and_then(|h| h.ok_or(StoreError::Database("room vanished".into())));
                let _ = reply.send(r);
            }
            Op::SaveSession(pid, snap, reply) => {
                let json = serde_json::to_string(&snap).unwrap_or_default();
                let r = self
                    .conn
                    .execute(
                        "INSERT OR REPLACE INTO sessions (pid, snapshot, expires_at) VALUES (?1, ?2, ?3)",
                        params![pid, json, snap.expires_at],
                    )
                    .map(|_| ())
                    .map_err(db_err);
                let _ = reply.send(r);
            }
            Op::TakeSession(pid, now, reply) => {
                let r = self
                    .conn
                    .query_row(
                        "DELETE FROM sessions WHERE pid = ?1 RETURNING snapshot, expires_at",
                        [&pid],
                        |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)),
                    )
                    .optional()
                    .map_err(db_err)
                    .map(|row| {
                        row.filter(|(_, exp)| *exp > now)
                            .and_then(|(json, _)| serde_json::from_str(&json).ok())
                    });
                let _ = reply.send(r);
            }
            Op::Clear(room, reply) => {
                let r = self.clear(&room).map_err(db_err);
                let _ = reply.send(r);
            }
            Op::Flush(reply) => {
                let r = self
                    .conn
                    .execute_batch("PRAGMA wal_checkpoint(PASSIVE);")
                    .map_err(db_err);
                let _ = reply.send(r);
            }
        }
    }
}

impl HistoryStore for SqliteStore {
    fn room_head<'a>(
        &'a self,
        room: &'a str,
        create: bool,
    ) -> BoxFuture<'a, Result<Option<RoomHead>, StoreError>> {
        let name = room.to_owned();
        let read = self.read_with(move |c| head_of(c, &name));
        async move {
            match read.await? {
                Some(h) => Ok(Some(h)),
                None if create => self
                    .call(|r| Op::CreateRoom(room.to_owned(), r))
                    .await
                    .map(Some),
                None => Ok(None),
            }
        }
        .boxed()
    }

    fn append(&self, batch: Vec<Arc<Message>>) -> BoxFuture<'_, Result<(), StoreError>> {
        self.call(|r| Op::Append(batch, r))
    }

    fn read<'a>(
        &'a self,
        room: &'a str,
        query: HistoryQuery,
    ) -> BoxFuture<'a, Result<HistoryPage, StoreError>> {
        let room = room.to_owned();
        self.read_with(move |c| {
            let head = head_of(c, &room)?;
            match query {
                HistoryQuery::After {
                    after,
                    until,
                    limit,
                } => {
                    let mut stmt = c.prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM messages WHERE room = ?1 AND offset > ?2
                         AND offset <= ?3 ORDER BY offset LIMIT ?4"
                    ))?;
                    let messages = stmt
                        .query_map(
                            params![
                                room,
                                after.0,
                                until.0,
                                i64::try_from(limit).unwrap_or(i64::MAX)
                            ],
                            row_to_message,
                        )?
                        .collect::<Result<Vec<_>, _>>()?;
                    let complete = head.is_none_or(|h| h.first <= after.next());
                    Ok(HistoryPage { messages, complete })
                }
                HistoryQuery::Last { count, until } => {
                    let mut stmt = c.prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM messages WHERE room = ?1 AND offset <= ?2
                         ORDER BY offset DESC LIMIT ?3"
                    ))?;
                    let mut messages = stmt
                        .query_map(
                            params![room, until.0, i64::try_from(count).unwrap_or(i64::MAX)],
                            row_to_message,
                        )?
                        .collect::<Result<Vec<_>, _>>()?;
                    messages.reverse();
                    Ok(HistoryPage {
                        messages,
                        complete: true,
                    })
                }
            }
        })
    }

    fn read_since_seq<'a>(
        &'a self,
        rooms: &'a [String],
        after_seq: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<HistoryPage, StoreError>> {
        let rooms = rooms.to_vec();
        self.read_with(move |c| {
            if rooms.is_empty() {
                return Ok(HistoryPage {
                    messages: Vec::new(),
                    complete: true,
                });
            }
            let marks = vec!["?"; rooms.len()].join(",");
            let n = rooms.len();
            let mut args: Vec<rusqlite::types::Value> =
                rooms.iter().map(|r| r.clone().into()).collect();
            args.push(i64::try_from(after_seq).unwrap_or(i64::MAX).into());
            let dropped: u64 = c.query_row(
                &format!("SELECT coalesce(max(dropped_seq), 0) FROM rooms WHERE name IN ({marks})"),
                rusqlite::params_from_iter(args.iter().take(n)),
                |r| r.get(0),
            )?;
            args.push(i64::try_from(limit + 1).unwrap_or(i64::MAX).into());
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM messages WHERE room IN ({marks}) AND seq > ?{}
                 ORDER BY seq LIMIT ?{}",
                n + 1,
                n + 2
            ))?;
            let mut messages = stmt
                .query_map(rusqlite::params_from_iter(args.iter()), row_to_message)?
                .collect::<Result<Vec<_>, _>>()?;
            let mut complete = dropped <= after_seq;
            if messages.len() > limit {
                messages.truncate(limit);
                complete = false;
            }
            Ok(HistoryPage { messages, complete })
        })
    }

    fn max_seq(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.read_with(|c| {
            c.query_row("SELECT coalesce(max(seq), 0) FROM messages", [], |r| {
                r.get(0)
            })
        })
    }

    fn save_session<'a>(
        &'a self,
        pid: &'a str,
        snapshot: SessionSnapshot,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.call(|r| Op::SaveSession(pid.to_owned(), snapshot, r))
    }

    fn take_session<'a>(
        &'a self,
        pid: &'a str,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Option<SessionSnapshot>, StoreError>> {
        self.call(|r| Op::TakeSession(pid.to_owned(), now_ms, r))
    }

    fn clear<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<usize, StoreError>> {
        self.call(|r| Op::Clear(room.to_owned(), r))
    }

    fn rooms(&self, limit: usize) -> BoxFuture<'_, Result<Vec<(String, Offset)>, StoreError>> {
        self.read_with(move |c| {
            let mut stmt =
                c.prepare_cached("SELECT name, last FROM rooms ORDER BY name LIMIT ?1")?;
            stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok((r.get(0)?, Offset(r.get(1)?)))
            })?
            .collect()
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.call(Op::Flush)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(
            &dir.path().join("prise.db"),
            Retention {
                count: super::super::conformance::RETAIN_COUNT,
                ..Retention::default()
            },
        )
        .unwrap();
        super::super::conformance::run(&store, true).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn history_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prise.db");
        let epoch;
        {
            let store = SqliteStore::open(&path, Retention::default()).unwrap();
            epoch = store.room_head("r", true).await.unwrap().unwrap().epoch;
            let batch = (1..=3)
                .map(|i| super::super::conformance::message("r", i, i))
                .collect();
            store.append(batch).await.unwrap();
        }
        let store = SqliteStore::open(&path, Retention::default()).unwrap();
        let head = store.room_head("r", false).await.unwrap().unwrap();
        assert_eq!(head.epoch, epoch, "the epoch is durable");
        assert_eq!(head.last, Offset(3));
        assert_eq!(store.max_seq().await.unwrap(), 3);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_database_of_the_first_schema_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prise.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE rooms (name TEXT PRIMARY KEY, epoch TEXT NOT NULL,
                    last INTEGER NOT NULL DEFAULT 0, dropped_seq INTEGER NOT NULL DEFAULT 0);
                 CREATE TABLE messages (seq INTEGER PRIMARY KEY, room TEXT NOT NULL,
                    offset INTEGER NOT NULL, id TEXT NOT NULL, user_id TEXT NOT NULL,
                    user_name TEXT NOT NULL, content TEXT NOT NULL, ts INTEGER NOT NULL);
                 INSERT INTO rooms VALUES ('r', 'E1', 1, 0);
                 INSERT INTO messages VALUES (1, 'r', 1, 'm1', 'u', 'alice', '\"hi\"', 5);",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path, Retention::default()).unwrap();
        let page = store
            .read(
                "r",
                HistoryQuery::After {
                    after: Offset(0),
                    until: Offset(1),
                    limit: 10,
                },
            )
            .await
            .unwrap();
        assert_eq!(page.messages.len(), 1);
        assert!(page.messages[0].is_chat(), "old messages are chat messages");
        assert_eq!(page.messages[0].content, serde_json::json!("hi"));
        let mut next = (*super::super::conformance::message("r", 2, 2)).clone();
        next.event = "move".into();
        store.append(vec![Arc::new(next)]).await.unwrap();
        drop(store);
        let store = SqliteStore::open(&path, Retention::default()).unwrap();
        let page = store
            .read(
                "r",
                HistoryQuery::Last {
                    count: 5,
                    until: Offset(2),
                },
            )
            .await
            .unwrap();
        assert_eq!(
            page.messages[1].event, "move",
            "opening twice migrates once"
        );
    }
}
