//! Rooms: the shards that hold them, a room's entry (epoch, `delivered`,
//! sessions, users), and joining and leaving.
//!
//! A room lives in one of [`SHARDS`] shards, each a `Mutex<HashMap>`; every
//! change to a room and every fan-out to it happens under its shard's lock.

use super::presence::{JoinState, View};
use super::{Hub, Inner};
use crate::HubError;
use crate::policy::{EPHEMERAL_EPOCH, RoomPolicy, personal_owner};
use crate::presence::PresenceEvent;
use crate::session::{Outbound, Session, SessionId};
use crate::store::{HistoryQuery, RoomHead, StoreError};
use prise_proto::limits::check_name;
use prise_proto::message::RoomInfo;
use prise_proto::message::{Epoch, Message, Offset, User};
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
    /// Distinct users with the number of their sessions in the room.
    pub(super) users: HashMap<String, RoomUser>,
    /// With shared presence: the room's members on every node, once read.
    pub(super) view: Option<View>,
    /// With shared presence: events received before the view was read.
    pub(super) pending: Vec<PresenceEvent>,
}

/// A distinct user of a room on this node.
#[derive(Debug)]
pub(super) struct RoomUser {
    /// The user as last seen (a rename updates it).
    pub(super) user: User,
    /// The user's sessions in the room; the entry goes when it drops to 0.
    pub(super) sessions: usize,
}

impl Room {
    pub(super) fn new(name: Arc<str>, epoch: Epoch, delivered: Offset) -> Self {
        Self {
            name,
            epoch,
            delivered,
            sessions: HashMap::new(),
            users: HashMap::new(),
            view: None,
            pending: Vec::new(),
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
    /// Members, the joiner included.
    pub members: Vec<User>,
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
    /// Members, the joiner included.
    members: Vec<User>,
    /// When this is the user's first session in the room on this node: the
    /// room's other sessions, to be told about the join. `None` otherwise.
    announce_to: Option<Vec<Arc<Session>>>,
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
        let Admission {
            name,
            epoch: room_epoch,
            delivered,
            members,
            announce_to: others,
        } = loop {
            let generation = {
                let mut shard = self.shard(room);
                if let Some(r) = shard.rooms.get_mut(room) {
                    break Self::add_member(r, session, &user, policy)?;
                }
                shard.generation
            };
            let head = self.join_head(room, policy.durable()).await?;
            let total: usize = self.room_count();
            let mut shard = self.shard(room);
            if let Some(r) = shard.rooms.get_mut(room) {
                break Self::add_member(r, session, &user, policy)?;
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
            break Self::add_member(r, session, &user, policy)?;
        };
        if !already {
            session
                .rooms
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Arc::clone(&name));
        }
        let mut members = members;
        if self.inner.shared {
            let state = JoinState {
                first_local: others.is_some(),
                already_member: already,
            };
            members = self.join_shared(session, &name, &user, state).await?;
        } else if let Some(others) = others
            && policy.announces()
        {
            self.inner.announce(
                &others,
                &Outbound::Joined {
                    room: Arc::clone(&name),
                    user: Arc::new(user.clone()),
                },
            );
        }
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

    fn add_member(
        r: &mut Room,
        session: &Arc<Session>,
        user: &User,
        policy: &RoomPolicy,
    ) -> Result<Admission, HubError> {
        let max = policy.max_members;
        if max > 0 && !r.users.contains_key(&user.id) && r.users.len() >= max {
            return Err(HubError::RoomFull(r.name.to_string(), max));
        }
        let mut others = None;
        if r.sessions.insert(session.id, Arc::clone(session)).is_none() {
            let entry = r.users.entry(user.id.clone()).or_insert_with(|| RoomUser {
                user: user.clone(),
                sessions: 0,
            });
            entry.sessions += 1;
            if entry.sessions == 1 {
                others = Some(
                    r.sessions
                        .values()
                        .filter(|s| s.id != session.id)
                        .cloned()
                        .collect(),
                );
            }
        }
        Ok(Admission {
            name: Arc::clone(&r.name),
            epoch: r.epoch.clone(),
            delivered: r.delivered,
            members: r.members(),
            announce_to: others,
        })
    }

    /// Removes a session from a room; returns whether it was a member.
    pub(super) fn remove_member(&self, room: &str, session: &Arc<Session>) -> bool {
        let (left, others, name) = {
            let mut shard = self.shard(room);
            let Some(r) = shard.rooms.get_mut(room) else {
                return false;
            };
            let Some(s) = r.sessions.remove(&session.id) else {
                return false;
            };
            let uid = s.user().id;
            let mut left = None;
            if let Some(entry) = r.users.get_mut(&uid) {
                entry.sessions -= 1;
                if entry.sessions == 0 {
                    left = r.users.remove(&uid).map(|e| e.user);
                }
            }
            let others: Vec<Arc<Session>> = r.sessions.values().cloned().collect();
            let name = Arc::clone(&r.name);
            if r.sessions.is_empty() {
                shard.rooms.remove(room);
                shard.generation += 1;
            }
            (left, others, name)
        };
        if let Some(user) = left {
            if self.inner.shared {
                self.inner.broker.presence_changed(&name, &user);
            } else if self.inner.config.policies.room(&name).announces() {
                self.inner.announce(
                    &others,
                    &Outbound::Left {
                        room: name,
                        user: Arc::new(user),
                    },
                );
            }
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
