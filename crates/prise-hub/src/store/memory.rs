//! In-memory history (`--store memory`): fast, bounded by retention, lost at exit.
//! Every start gives each room a new epoch, so clients know they cannot resume.

use super::{
    HistoryPage, HistoryQuery, HistoryStore, Retention, RoomHead, SessionSnapshot, StoreError,
    new_epoch,
};
use futures_util::future::{BoxFuture, FutureExt};
use prise_proto::message::{Epoch, Message, Offset};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// Most remembered sessions; beyond it the ones closest to expiry are dropped.
const MAX_SESSIONS: usize = 100_000;

#[derive(Debug)]
struct Room {
    epoch: Epoch,
    last: Offset,
    messages: VecDeque<Arc<Message>>,
    /// Seq of the newest message retention dropped (0 when none).
    dropped_seq: u64,
}

impl Room {
    fn first(&self) -> Offset {
        self.messages.front().map_or(self.last.next(), |m| m.offset)
    }
}

#[derive(Debug, Default)]
struct State {
    rooms: HashMap<String, Room>,
    sessions: HashMap<String, SessionSnapshot>,
    max_seq: u64,
}

/// History kept in memory, bounded by [`Retention`].
#[derive(Debug)]
pub struct MemoryStore {
    retention: Retention,
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new(retention: Retention) -> Self {
        Self {
            retention,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic while holding it; the state is still
        // structurally valid (every mutation is a single map/deque operation).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn head(room: &Room) -> RoomHead {
    RoomHead {
        epoch: room.epoch.clone(),
        last: room.last,
        first: room.first(),
    }
}

impl HistoryStore for MemoryStore {
    fn sessions_outlive_process(&self) -> bool {
        false
    }

    fn room_head<'a>(
        &'a self,
        room: &'a str,
        create: bool,
    ) -> BoxFuture<'a, Result<Option<RoomHead>, StoreError>> {
        let mut s = self.lock();
        let h = if create {
            Some(head(s.rooms.entry(room.to_owned()).or_insert_with(|| {
                Room {
                    epoch: new_epoch(),
                    last: Offset::ZERO,
                    messages: VecDeque::new(),
                    dropped_seq: 0,
                }
            })))
        } else {
            s.rooms.get(room).map(head)
        };
        futures_util::future::ready(Ok(h)).boxed()
    }

    fn append(&self, batch: Vec<Arc<Message>>) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut s = self.lock();
        let age_ms = u64::try_from(self.retention.age.as_millis()).unwrap_or(u64::MAX);
        for m in batch {
            s.max_seq = s.max_seq.max(m.seq);
            let room = s.rooms.entry(m.room_id.clone()).or_insert_with(|| Room {
                epoch: new_epoch(),
                last: Offset::ZERO,
                messages: VecDeque::new(),
                dropped_seq: 0,
            });
            room.last = m.offset;
            let cutoff = m.timestamp.saturating_sub(age_ms);
            room.messages.push_back(m);
            while room.messages.len() > self.retention.count
                || room.messages.front().is_some_and(|f| f.timestamp < cutoff)
            {
                if let Some(dropped) = room.messages.pop_front() {
                    room.dropped_seq = dropped.seq;
                }
            }
        }
        futures_util::future::ready(Ok(())).boxed()
    }

    fn read<'a>(
        &'a self,
        room: &'a str,
        query: HistoryQuery,
    ) -> BoxFuture<'a, Result<HistoryPage, StoreError>> {
        let s = self.lock();
        let page = match s.rooms.get(room) {
            None => HistoryPage {
                messages: Vec::new(),
                complete: matches!(query, HistoryQuery::After { after, .. } if after == Offset::ZERO)
                    || matches!(query, HistoryQuery::Last { .. }),
            },
            Some(r) => match query {
                HistoryQuery::After {
                    after,
                    until,
                    limit,
                } => {
                    let messages: Vec<_> = r
                        .messages
                        .iter()
                        .filter(|m| m.offset > after && m.offset <= until)
                        .take(limit)
                        .cloned()
                        .collect();
                    HistoryPage {
                        complete: r.first() <= after.next(),
                        messages,
                    }
                }
                HistoryQuery::Last { count, until } => {
                    let mut messages: Vec<_> = r
                        .messages
                        .iter()
                        .rev()
                        .filter(|m| m.offset <= until)
                        .take(count)
                        .cloned()
                        .collect();
                    messages.reverse();
                    HistoryPage {
                        complete: true,
                        messages,
                    }
                }
            },
        };
        futures_util::future::ready(Ok(page)).boxed()
    }

    fn read_since_seq<'a>(
        &'a self,
        rooms: &'a [String],
        after_seq: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<HistoryPage, StoreError>> {
        let s = self.lock();
        let mut messages = Vec::new();
        let mut complete = true;
        for name in rooms {
            if let Some(r) = s.rooms.get(name) {
                // Retention dropped something the reader has not seen when the
                // newest dropped message (just before the oldest kept one) is
                // newer than what the reader had.
                if r.dropped_seq > after_seq {
                    complete = false;
                }
                messages.extend(r.messages.iter().filter(|m| m.seq > after_seq).cloned());
            }
        }
        messages.sort_by_key(|m| m.seq);
        if messages.len() > limit {
            messages.truncate(limit);
            complete = false;
        }
        futures_util::future::ready(Ok(HistoryPage { messages, complete })).boxed()
    }

    fn max_seq(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        let seq = self.lock().max_seq;
        futures_util::future::ready(Ok(seq)).boxed()
    }

    fn save_session<'a>(
        &'a self,
        pid: &'a str,
        snapshot: SessionSnapshot,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut s = self.lock();
        if s.sessions.len() >= MAX_SESSIONS && !s.sessions.contains_key(pid) {
            // Full: drop the session closest to expiry (expired ones are
            // also refused by `take_session`, so they go first).
            if let Some(k) = s
                .sessions
                .iter()
                .min_by_key(|(_, v)| v.expires_at)
                .map(|(k, _)| k.clone())
            {
                s.sessions.remove(&k);
            }
        }
        s.sessions.insert(pid.to_owned(), snapshot);
        futures_util::future::ready(Ok(())).boxed()
    }

    fn take_session<'a>(
        &'a self,
        pid: &'a str,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Option<SessionSnapshot>, StoreError>> {
        let snap = self
            .lock()
            .sessions
            .remove(pid)
            .filter(|s| s.expires_at > now_ms);
        futures_util::future::ready(Ok(snap)).boxed()
    }

    fn clear<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<usize, StoreError>> {
        let mut s = self.lock();
        let n = s.rooms.get_mut(room).map_or(0, |r| {
            if let Some(newest) = r.messages.back() {
                r.dropped_seq = r.dropped_seq.max(newest.seq);
            }
            let n = r.messages.len();
            r.messages.clear();
            n
        });
        futures_util::future::ready(Ok(n)).boxed()
    }

    fn rooms(&self, limit: usize) -> BoxFuture<'_, Result<Vec<(String, Offset)>, StoreError>> {
        let s = self.lock();
        let mut v: Vec<_> = s.rooms.iter().map(|(k, r)| (k.clone(), r.last)).collect();
        v.sort();
        v.truncate(limit);
        futures_util::future::ready(Ok(v)).boxed()
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        futures_util::future::ready(Ok(())).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let store = MemoryStore::new(Retention {
            count: super::super::conformance::RETAIN_COUNT,
            ..Retention::default()
        });
        super::super::conformance::run(&store, false).await;
    }
}
