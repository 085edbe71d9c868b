//! Durable history: the [`HistoryStore`] seam and its implementations.
//!
//! A store keeps, per room, an epoch and the retained messages in offset
//! order, and remembers recoverable sessions for a while. The broker appends
//! (in order, one batch at a time); transports read. Implementations: memory
//! ([`MemoryStore`], lost at exit) and SQLite ([`SqliteStore`], the embedded
//! default). Every implementation passes the same suite (`conformance`).

use futures_util::future::BoxFuture;
use prise_proto::message::{Epoch, Message, Offset, User};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

mod memory;
pub mod redis;
mod sqlite;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use memory::MemoryStore;
pub use redis::RedisStore;
pub use sqlite::SqliteStore;

/// Default number of messages kept per room.
pub const DEFAULT_RETAIN_COUNT: usize = 10_000;
/// Default age after which messages are dropped: 7 days.
pub const DEFAULT_RETAIN_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// How much history each room keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Most messages kept per room.
    pub count: usize,
    /// Oldest message kept.
    pub age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            count: DEFAULT_RETAIN_COUNT,
            age: DEFAULT_RETAIN_AGE,
        }
    }
}

/// Where a room's history stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomHead {
    /// The history's generation.
    pub epoch: Epoch,
    /// Offset of the last message (0 when none yet).
    pub last: Offset,
    /// Offset of the oldest retained message (`last + 1` when none is retained).
    pub first: Offset,
}

/// Which messages to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryQuery {
    /// Messages with `after < offset <= until`, oldest first, at most `limit`.
    After {
        /// Exclusive lower bound.
        after: Offset,
        /// Inclusive upper bound (the caller's consistent view of the head).
        until: Offset,
        /// Most messages returned (the oldest ones).
        limit: usize,
    },
    /// The last `count` messages up to `until`, oldest first.
    Last {
        /// How many.
        count: usize,
        /// Inclusive upper bound.
        until: Offset,
    },
}

/// The answer to a read.
#[derive(Debug, Clone, Default)]
pub struct HistoryPage {
    /// Messages, oldest first.
    pub messages: Vec<Arc<Message>>,
    /// False when retention had already dropped some of what was asked for
    /// (the reader cannot fully resume).
    pub complete: bool,
}

/// What is kept of a session so a client can resume it later (Socket.IO
/// connection state recovery).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSnapshot {
    /// The user the session belonged to.
    pub user: User,
    /// The rooms it was in.
    pub rooms: Vec<String>,
    /// Milliseconds since the epoch after which it can no longer be resumed.
    pub expires_at: u64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(String),
    /// The store is shut down.
    #[error("store is closed")]
    Closed,
}

/// Durable per-room history. All methods are safe to call concurrently;
/// `append` calls are applied in call order.
pub trait HistoryStore: Send + Sync + 'static {
    /// The room's head. With `create`, a room without history gets an epoch
    /// (stored); without it, `None` is returned for an unknown room.
    fn room_head<'a>(
        &'a self,
        room: &'a str,
        create: bool,
    ) -> BoxFuture<'a, Result<Option<RoomHead>, StoreError>>;

    /// Appends messages (offsets already assigned, increasing per room).
    /// Resolves once they are as durable as the store makes them.
    fn append(&self, batch: Vec<Arc<Message>>) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Reads a room's retained messages.
    fn read<'a>(
        &'a self,
        room: &'a str,
        query: HistoryQuery,
    ) -> BoxFuture<'a, Result<HistoryPage, StoreError>>;

    /// Messages of the given rooms with `seq > after_seq`, in seq order, at most
    /// `limit`. `complete` is false when retention dropped some of them.
    fn read_since_seq<'a>(
        &'a self,
        rooms: &'a [String],
        after_seq: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<HistoryPage, StoreError>>;

    /// The highest seq stored (0 when empty).
    fn max_seq(&self) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Remembers a session for later recovery under `pid`.
    fn save_session<'a>(
        &'a self,
        pid: &'a str,
        snapshot: SessionSnapshot,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Takes (and forgets) a remembered session, if it has not expired at `now_ms`.
    fn take_session<'a>(
        &'a self,
        pid: &'a str,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Option<SessionSnapshot>, StoreError>>;

    /// Drops every retained message of `room`, as retention would: its
    /// epoch and offsets stay (the next message takes the next offset), a
    /// read from before the drop reports `complete: false`. Answers how many
    /// messages were dropped.
    fn clear<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<usize, StoreError>>;

    /// Room names with history, at most `limit`.
    fn rooms(&self, limit: usize) -> BoxFuture<'_, Result<Vec<(String, Offset)>, StoreError>>;

    /// Writes out everything pending; called on shutdown.
    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// True when remembered sessions outlive this process (a file, or a
    /// server shared by several nodes). The hub then keeps the recovery
    /// record of every live session current, so a client recovers even when
    /// the process that held it died without a chance to save it.
    fn sessions_outlive_process(&self) -> bool {
        true
    }
}

/// A fresh epoch: a ULID, unique per history generation.
pub fn new_epoch() -> Epoch {
    Epoch(ulid::Ulid::generate().to_string())
}
