//! Rooms: the shards that hold them, a room's entry (epoch, `delivered`,
//! sessions, users), and joining and leaving.
//!
//! A room lives in one of [`SHARDS`] shards, each a `Mutex<HashMap>`; every
//! change to a room and every fan-out to it happens under its shard's lock.

use super::presence::{Change, JoinState, PendingDiff, Tell, View};
use super::roster::Roster;
use super::{Hub, Inner};
use crate::HubError;
use crate::activity::{Activity, ActivitySink};
use crate::policy::{EPHEMERAL_EPOCH, RoomPolicy, personal_owner};
use crate::presence::PresenceEvent;
use crate::session::{Session, SessionId};
use crate::store::{HistoryQuery, RoomHead, StoreError};
use prise_proto::limits::check_name;
use prise_proto::message::RoomInfo;
use prise_proto::message::{Epoch, Message, Offset, User};
use prise_proto::presence::{DEFAULT_PAGE, Page};
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, MutexGuard};

pub(super) const SHARDS: usize = 16;

#[derive(Debug)]
pub(super) struct Room {
    pub(super) name: Arc<str>,
    pub(super) epoch: Epoch,
    pub(super) delivered: Offset,
    pub(super) sessions: HashMap<SessionId, Arc<Session>>,
    /// The number of sessions of each distinct local user; an entry goes
    /// when it drops to 0.
    pub(super) users: HashMap<String, usize>,
    /// The distinct local users, sorted (a rename moves them).
    pub(super) local: Roster,
    /// With shared presence: the room's members on every node, once read.
    pub(super) view: Option<View>,
    /// With shared presence: events received before the view was read.
    pub(super) pending: Vec<PresenceEvent>,
    /// With shared presence: a join is reading the view; the others wait.
    pub(super) loading: Option<tokio::sync::watch::Receiver<bool>>,
    /// A large room's changes waiting for the next presence diff.
    pub(super) diff: Option<PendingDiff>,
}

impl Room {
    pub(super) fn new(name: Arc<str>, epoch: Epoch, delivered: Offset) -> Self {
        Self {
            name,
            epoch,
            delivered,
            sessions: HashMap::new(),
            users: HashMap::new(),
            local: Roster::default(),
            view: None,
            pending: Vec::new(),
            loading: None,
            diff: None,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Shard {
    pub(super) rooms: HashMap<Arc<str>, Room>,
    pub(super) generation: u64,
}

pub(super) fn shard_of(room: &str) -> usize {
    let mut h = DefaultHasher::new();
    room.hash(&mut h);
    // The modulo keeps the value below SHARDS, which fits in usize.
    (h.finish() % SHARDS as u64) as usize
}

/// What a join returns.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The room's name.
    pub room: Arc<str>,
    /// The room's epoch.
    pub epoch: Epoch,
    /// The room's last offset at the time of the join.
    pub offset: Offset,
    /// The first page of members (the joiner included), with the room's
    /// member count: a join's answer stays bounded however large the room.
    pub members: Page,
    /// Messages after `since`, oldest first, when `since` was given. Send them
    /// before anything else from the session's queue.
    pub replay: Vec<Arc<Message>>,
    /// With `since`: whether the replay covers everything after it.
    pub recovered: Option<bool>,
}

/// What adding a session to a room entry found, read under the shard lock in
/// the same critical section that added it.
struct Admission {
    /// The room's name, shared with its entry.
    name: Arc<str>,
    /// The room's epoch.
    epoch: Epoch,
    /// The last offset fanned out: the replay ends here, live delivery
    /// starts after it.
    delivered: Offset,
    /// This is the user's first session in the room on this node.
    first_local: bool,
    /// Without shared presence: the join's announcement, to send after the
    /// lock is released.
    tell: Tell,
}

impl Hub {
    pub(super) fn shard(&self, room: &str) -> MutexGuard<'_, Shard> {
        // A poisoned shard lock means a panic while holding it; every update
        // under the lock leaves the maps consistent, so the data is usable.
        self.inner.shards[shard_of(room)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The policy of a room, once its name is checked: a valid name of a
    /// namespace this server serves.
    ///
    /// # Errors
    /// [`HubError::BadName`], [`HubError::UnknownNamespace`].
    pub fn room_policy(&self, room: &str) -> Result<&RoomPolicy, HubError> {
        let policies = &self.inner.config.policies;
        check_name(room, self.inner.config.limits.max_room_name).map_err(HubError::BadName)?;
        if policies.namespace_of(room).is_none() {
            let ns = room.split(':').next().unwrap_or(room);
            return Err(HubError::UnknownNamespace(ns.to_owned()));
        }
        Ok(policies.room(room))
    }

    /// The head a join starts from: the store's, or none for an ephemeral
    /// room (nothing of it is ever stored).
    async fn join_head(&self, room: &str, durable: bool) -> Result<RoomHead, HubError> {
        if !durable {
            return Ok(RoomHead {
                epoch: Epoch(EPHEMERAL_EPOCH.to_owned()),
                last: Offset::ZERO,
                first: Offset(1),
            });
        }
        self.inner
            .store
            .room_head(room, true)
            .await?
            .ok_or(HubError::Store(StoreError::Closed))
    }

    /// Joins a room; with `since`, also returns what was published after that
    /// offset. `epoch` is the epoch the client's `since` belongs to: when it
    /// differs from the room's, the whole retained history is replayed and
    /// `recovered` is false. The room's policy applies: a personal room
    /// (`user:<id>`) admits only its user's sessions, `max_members` caps
    /// the distinct users on this node, an ephemeral room replays nothing.
    ///
    /// # Errors
    /// A bad room name, an unknown namespace, another user's personal room,
    /// a full room, too many rooms, or a store failure.
    pub async fn join(
        &self,
        session: &Arc<Session>,
        room: &str,
        since: Option<Offset>,
        epoch: Option<&Epoch>,
    ) -> Result<Joined, HubError> {
        let limits = &self.inner.config.limits;
        let policy = self.room_policy(room)?;
        let user = session.user();
        if personal_owner(room).is_some_and(|owner| owner != user.id) {
            return Err(HubError::NotYours(room.to_owned()));
        }
        let already = session.rooms().iter().any(|r| &**r == room);
        if !already && session.rooms().len() >= limits.max_rooms_per_session {
            return Err(HubError::TooManyRooms(limits.max_rooms_per_session));
        }
        let user = Arc::new(user);
        let announce =
            (!self.inner.shared && policy.announces()).then_some(limits.max_presence_fanout);
        let Admission {
            name,
            epoch: room_epoch,
            delivered,
            first_local,
            tell,
        } = loop {
            let generation = {
                let mut shard = self.shard(room);
                if let Some(r) = shard.rooms.get_mut(room) {
                    break Self::add_member(
                        r,
                        session,
                        &user,
                        policy,
                        announce,
                        self.inner.activity(),
                    )?;
                }
                shard.generation
            };
            let head = self.join_head(room, policy.durable()).await?;
            let total: usize = self.room_count();
            let mut shard = self.shard(room);
            if let Some(r) = shard.rooms.get_mut(room) {
                break Self::add_member(
                    r,
                    session,
                    &user,
                    policy,
                    announce,
                    self.inner.activity(),
                )?;
            }
            if shard.generation != generation {
                continue;
            }
            if total >= limits.max_rooms {
                let before = shard.rooms.len();
                Self::sweep(&mut shard);
                if total - before + shard.rooms.len() >= limits.max_rooms {
                    return Err(HubError::RoomLimit);
                }
            }
            let name: Arc<str> = Arc::from(room);
            let r = shard
                .rooms
                .entry(Arc::clone(&name))
                .or_insert_with(|| Room::new(name, head.epoch, head.last));
            break Self::add_member(r, session, &user, policy, announce, self.inner.activity())?;
        };
        if !already {
            session
                .rooms
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Arc::clone(&name));
        }
        self.inner.tell(&name, tell);
        if self.inner.shared {
            let state = JoinState {
                first_local,
                already_member: already,
            };
            self.join_shared(session, &name, &user, state).await?;
        }
        let members = self.presence_page(&name, None, Some(DEFAULT_PAGE));
        let mut joined = Joined {
            room: name,
            epoch: room_epoch.clone(),
            offset: delivered,
            members,
            replay: Vec::new(),
            recovered: None,
        };
        if let Some(since) = since
            && policy.durable()
        {
            let same_epoch = epoch.is_none_or(|e| *e == room_epoch);
            let from = if same_epoch && since <= delivered {
                since
            } else {
                Offset::ZERO
            };
            let limit = limits.max_history;
            let page = self
                .inner
                .store
                .read(
                    room,
                    HistoryQuery::After {
                        after: from,
                        until: delivered,
                        limit,
                    },
                )
                .await?;
            let truncated = page.messages.last().is_some_and(|m| m.offset < delivered)
                && page.messages.len() == limit;
            joined.recovered = Some(same_epoch && from == since && page.complete && !truncated);
            joined.replay = page.messages;
        }
        Ok(joined)
    }

    fn room_count(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).rooms.len())
            .sum()
    }

    /// Removes rooms without members from a shard.
    pub(super) fn sweep(shard: &mut Shard) {
        let before = shard.rooms.len();
        shard.rooms.retain(|_, r| !r.sessions.is_empty());
        if shard.rooms.len() != before {
            shard.generation += 1;
        }
    }

    /// Adds the session under the shard lock, in O(1) (O(log n) for the
    /// sorted roster), unless the room is at its `max_members`; with
    /// `announce` (the fan-out cap, without shared presence, where the
    /// room's policy announces) the user's first session is announced.
    fn add_member(
        r: &mut Room,
        session: &Arc<Session>,
        user: &Arc<User>,
        policy: &RoomPolicy,
        announce: Option<usize>,
        activity: Option<&dyn ActivitySink>,
    ) -> Result<Admission, HubError> {
        let max = policy.max_members;
        if max > 0 && !r.users.contains_key(&user.id) && r.users.len() >= max {
            return Err(HubError::RoomFull(r.name.to_string(), max));
        }
        let mut first_local = false;
        let mut tell = Tell::default();
        if r.sessions.insert(session.id, Arc::clone(session)).is_none() {
            let count = r.users.entry(user.id.clone()).or_insert(0);
            *count += 1;
            if *count == 1 {
                first_local = true;
                r.local.insert(Arc::clone(user));
                if let Some(sink) = activity {
                    sink.record(Activity::MemberJoined {
                        room: Arc::clone(&r.name),
                        user: Arc::clone(user),
                        occupied: r.users.len() == 1,
                    });
                }
                if let Some(cap) = announce {
                    r.change(cap, Change::Joined, Arc::clone(user), &mut tell);
                }
            }
        }
        Ok(Admission {
            name: Arc::clone(&r.name),
            epoch: r.epoch.clone(),
            delivered: r.delivered,
            first_local,
            tell,
        })
    }

    /// Removes a session from a room; returns whether it was a member.
    pub(super) fn remove_member(&self, room: &str, session: &Arc<Session>) -> bool {
        let cap = self.inner.config.limits.max_presence_fanout;
        let shared = self.inner.shared;
        let policies = &self.inner.config.policies;
        let mut tell = Tell::default();
        let (left, name) = {
            let mut shard = self.shard(room);
            let Some(r) = shard.rooms.get_mut(room) else {
                return false;
            };
            let Some(s) = r.sessions.remove(&session.id) else {
                return false;
            };
            let uid = s.user().id;
            let mut left = None;
            if let Some(count) = r.users.get_mut(&uid) {
                *count -= 1;
                if *count == 0 {
                    r.users.remove(&uid);
                    left = r.local.remove(&uid);
                }
            }
            if let (Some(user), Some(sink)) = (&left, self.inner.activity()) {
                sink.record(Activity::MemberLeft {
                    room: Arc::clone(&r.name),
                    user: Arc::clone(user),
                    vacated: r.users.is_empty(),
                });
            }
            if let Some(user) = &left
                && !shared
                && policies.room(&r.name).announces()
            {
                r.change(cap, Change::Left, Arc::clone(user), &mut tell);
            }
            let name = Arc::clone(&r.name);
            if r.sessions.is_empty() {
                shard.rooms.remove(room);
                shard.generation += 1;
            }
            (left, name)
        };
        self.inner.tell(&name, tell);
        if let Some(user) = left
            && shared
        {
            self.inner.broker.presence_changed(&name, &user);
        }
        true
    }

    /// Leaves a room.
    ///
    /// # Errors
    /// [`HubError::NotMember`] when the session is not in the room.
    pub fn leave(&self, session: &Arc<Session>, room: &str) -> Result<(), HubError> {
        let was = {
            let mut rooms = session.rooms.lock().unwrap_or_else(|e| e.into_inner());
            let before = rooms.len();
            rooms.retain(|r| &**r != room);
            rooms.len() != before
        };
        if !was {
            return Err(HubError::NotMember(room.to_owned()));
        }
        self.remove_member(room, session);
        Ok(())
    }

    pub(super) fn require_member(
        &self,
        session: &Arc<Session>,
        room: &str,
    ) -> Result<(), HubError> {
        if session.rooms().iter().any(|r| &**r == room) {
            Ok(())
        } else {
            Err(HubError::NotMember(room.to_owned()))
        }
    }

    /// Rooms with members, sorted by name, at most `limit`.
    pub fn rooms(&self, limit: usize) -> Vec<RoomInfo> {
        let mut v = self.inner.collect_rooms(|r, v| {
            if !r.sessions.is_empty() {
                v.push(RoomInfo {
                    name: r.name.to_string(),
                    members: r.member_users(),
                    offset: r.delivered,
                });
            }
        });
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v.truncate(limit);
        v
    }
}

impl Inner {
    /// Collects from every room in memory, one shard locked at a time.
    pub(super) fn collect_rooms<T>(&self, mut f: impl FnMut(&Room, &mut Vec<T>)) -> Vec<T> {
        let mut v = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for r in shard.rooms.values() {
                f(r, &mut v);
            }
        }
        v
    }

    pub(super) fn lock_shard(&self, room: &str) -> MutexGuard<'_, Shard> {
        // See `Hub::shard` for why a poisoned lock is usable.
        self.shards[shard_of(room)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}
