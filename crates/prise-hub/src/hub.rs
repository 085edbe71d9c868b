//! The hub: rooms, membership, presence, and fan-out to sessions.
//!
//! # Consistency of join and replay
//!
//! Each room keeps `delivered`, the last offset fanned out to its members,
//! updated under the room's shard lock in the same critical section as the
//! fan-out. A join adds the session under that lock and reads `delivered`:
//! every message after it reaches the session live (through its queue), every
//! message up to it is read from the store. The transport sends the replay
//! before it drains the queue, so the client sees each offset once, in order.
//!
//! A room entry is created by a join (with the head read from the store) or by
//! a delivery. A head read by a join may already hold messages the sequencer
//! has committed but not yet delivered; their delivery then finds them at or
//! below `delivered` and skips them (the members replay them instead). Removing an entry bumps its shard's generation; a join that
//! read the store head before a removal retries, so it never installs a stale
//! head.

use crate::broker::{Broker, DeliverySink, Draft, LocalBroker, Offered};
use crate::clock::Clock;
use crate::presence::{MAX_PENDING_EVENTS, PresenceApplied, PresenceEvent, PresenceSnapshot};
use crate::session::{CloseReason, Delivery, Outbound, Session, SessionId};
use crate::stats::Stats;
use crate::store::{HistoryPage, HistoryQuery, HistoryStore, SessionSnapshot, StoreError};
use crate::{HubConfig, HubError, Transport};
use prise_proto::limits::check_name;
use prise_proto::message::{Epoch, Message, Offset, User};
use prise_proto::wsjson::RoomInfo;
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

const SHARDS: usize = 16;

#[derive(Debug)]
struct Room {
    name: Arc<str>,
    epoch: Epoch,
    delivered: Offset,
    sessions: HashMap<SessionId, Arc<Session>>,
    /// Distinct users with the number of their sessions in the room.
    users: HashMap<String, (User, usize)>,
    /// With shared presence: the room's members on every node, once read.
    view: Option<View>,
    /// With shared presence: events received before the view was read.
    pending: Vec<PresenceEvent>,
}

/// A room's shared presence at a version (see [`crate::presence`]).
#[derive(Debug)]
struct View {
    version: u64,
    users: HashMap<String, User>,
}

fn sorted(mut v: Vec<User>) -> Vec<User> {
    v.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    v
}

impl Room {
    fn new(name: Arc<str>, epoch: Epoch, delivered: Offset) -> Self {
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

    fn members(&self) -> Vec<User> {
        match &self.view {
            Some(view) => sorted(view.users.values().cloned().collect()),
            None => sorted(self.users.values().map(|(u, _)| u.clone()).collect()),
        }
    }

    fn member_users(&self) -> usize {
        self.view
            .as_ref()
            .map_or(self.users.len(), |v| v.users.len())
    }

    /// Sessions to tell about `user`: every local session of another user.
    fn others_of(&self, user_id: &str) -> Vec<Arc<Session>> {
        self.sessions
            .values()
            .filter(|s| s.user().id != user_id)
            .cloned()
            .collect()
    }

    /// Applies one event to the view; returns whom to tell, or `Err` on a gap.
    fn apply(&mut self, event: &PresenceEvent) -> Result<Option<Vec<Arc<Session>>>, ()> {
        let Some(view) = &mut self.view else {
            return Ok(None);
        };
        if event.version <= view.version {
            return Ok(None);
        }
        if event.version != view.version + 1 {
            return Err(());
        }
        view.version = event.version;
        if event.joined {
            view.users.insert(event.user.id.clone(), event.user.clone());
        } else {
            view.users.remove(&event.user.id);
        }
        Ok(Some(self.others_of(&event.user.id)))
    }
}

#[derive(Debug, Default)]
struct Shard {
    rooms: HashMap<Arc<str>, Room>,
    generation: u64,
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

/// The result of resuming a suspended session.
#[derive(Debug, Clone)]
pub struct Resumed {
    /// Rooms rejoined.
    pub rooms: Vec<Arc<str>>,
    /// Missed messages over all rooms, in publish order.
    pub replay: Vec<Arc<Message>>,
}

pub(crate) struct Inner {
    pub(crate) config: HubConfig,
    pub(crate) store: Arc<dyn HistoryStore>,
    broker: Arc<dyn Broker>,
    pub(crate) clock: Arc<dyn Clock>,
    shards: Box<[Mutex<Shard>]>,
    pub(crate) stats: Stats,
    next_session: AtomicU64,
    /// Presence is shared with other nodes through the broker.
    shared: bool,
    /// Highest seq delivered so far.
    delivered_seq: AtomicU64,
}

/// The hub. Cheap to clone; every transport holds one.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

fn shard_of(room: &str) -> usize {
    let mut h = DefaultHasher::new();
    room.hash(&mut h);
    // The modulo keeps the value below SHARDS, which fits in usize.
    (h.finish() % SHARDS as u64) as usize
}

impl Hub {
    /// Starts a single-process hub over `store`.
    ///
    /// # Errors
    /// Fails when the store cannot be read.
    pub async fn start(
        config: HubConfig,
        store: Arc<dyn HistoryStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Hub, StoreError> {
        let first_seq = store.max_seq().await?;
        let broker_store = Arc::clone(&store);
        let broker_clock = Arc::clone(&clock);
        let hub = Self::with_broker(config, store, clock, move |sink| {
            Arc::new(LocalBroker::start(
                broker_store,
                sink,
                broker_clock,
                first_seq,
            ))
        });
        hub.inner.delivered_seq.store(first_seq, Ordering::Release);
        Ok(hub)
    }

    /// Builds a hub whose broker is made by `make_broker`, given the hub as
    /// the sink for committed messages.
    pub fn with_broker(
        config: HubConfig,
        store: Arc<dyn HistoryStore>,
        clock: Arc<dyn Clock>,
        make_broker: impl FnOnce(Weak<dyn DeliverySink>) -> Arc<dyn Broker>,
    ) -> Hub {
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let sink: Weak<dyn DeliverySink> = weak.clone();
            let broker = make_broker(sink);
            Inner {
                config,
                store,
                shared: broker.shared_presence(),
                broker,
                clock,
                shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
                stats: Stats::default(),
                next_session: AtomicU64::new(1),
                delivered_seq: AtomicU64::new(0),
            }
        });
        Hub { inner }
    }

    /// The hub's configuration.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// Counters for the dashboard and metrics.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// The injected clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The highest hub-wide seq delivered so far: a session connecting now
    /// has missed nothing at or below it.
    pub fn delivered_seq(&self) -> u64 {
        self.inner.delivered_seq.load(Ordering::Acquire)
    }

    /// The broker's node id.
    pub fn node_id(&self) -> &str {
        self.inner.broker.node_id()
    }

    /// Whether the hub can publish now (false while a shared engine such as
    /// Redis is unreachable); `/readyz` answers 503 when it is not.
    pub fn ready(&self) -> bool {
        self.inner.broker.ready()
    }

    fn shard(&self, room: &str) -> MutexGuard<'_, Shard> {
        // A poisoned shard lock means a panic while holding it; every update
        // under the lock leaves the maps consistent, so the data is usable.
        self.inner.shards[shard_of(room)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new session. Without a user, the session is anonymous with
    /// a generated id and name.
    ///
    /// # Errors
    /// [`HubError::Full`] when the connection limit is reached.
    pub fn connect(
        &self,
        transport: Transport,
        user: Option<User>,
    ) -> Result<(Arc<Session>, mpsc::Receiver<Outbound>), HubError> {
        let limits = &self.inner.config.limits;
        if self.inner.stats.connections_total() >= limits.max_connections as u64 {
            return Err(HubError::Full);
        }
        let id = SessionId(self.inner.next_session.fetch_add(1, Ordering::Relaxed));
        let user = user.unwrap_or_else(|| {
            let uid = ulid::Ulid::generate().to_string();
            let name = format!("guest-{}", &uid[uid.len() - 4..].to_ascii_lowercase());
            User { id: uid, name }
        });
        let (tx, rx) = mpsc::channel(limits.queue_depth.max(1));
        self.inner.stats.connected(transport);
        Ok((Arc::new(Session::new(id, transport, user, tx)), rx))
    }

    /// Unregisters a session: it leaves every room (others see it leave).
    /// Call once, when the transport is done with it.
    pub fn disconnect(&self, session: &Arc<Session>) {
        let rooms = std::mem::take(&mut *session.rooms.lock().unwrap_or_else(|e| e.into_inner()));
        for room in rooms {
            self.remove_member(&room, session);
        }
        self.inner.stats.disconnected(session.transport);
    }

    /// Changes the session's display name (also in the presence of its rooms).
    ///
    /// # Errors
    /// [`HubError::BadName`] when the name is invalid.
    pub fn rename(&self, session: &Arc<Session>, name: &str) -> Result<User, HubError> {
        check_name(name, self.inner.config.limits.max_name).map_err(HubError::BadName)?;
        let mut user = session.user();
        user.name = name.to_owned();
        session.set_user(user.clone());
        for room in session.rooms() {
            let mut shard = self.shard(&room);
            if let Some(r) = shard.rooms.get_mut(&room)
                && let Some(entry) = r.users.get_mut(&user.id)
            {
                entry.0 = user.clone();
            }
        }
        Ok(user)
    }

    /// Replaces the session's user (after authentication), before it joins rooms.
    pub fn set_user(&self, session: &Arc<Session>, user: User) {
        session.set_user(user);
    }

    fn send_all<'a>(&self, targets: impl Iterator<Item = &'a Arc<Session>>, event: &Outbound) {
        self.inner.send_all(targets, event);
    }

    /// Joins a room; with `since`, also returns what was published after that
    /// offset. `epoch` is the epoch the client's `since` belongs to: when it
    /// differs from the room's, the whole retained history is replayed and
    /// `recovered` is false.
    ///
    /// # Errors
    /// A bad room name, too many rooms, or a store failure.
    pub async fn join(
        &self,
        session: &Arc<Session>,
        room: &str,
        since: Option<Offset>,
        epoch: Option<&Epoch>,
    ) -> Result<Joined, HubError> {
        let limits = &self.inner.config.limits;
        check_name(room, limits.max_room_name).map_err(HubError::BadName)?;
        let already = session.rooms().iter().any(|r| &**r == room);
        if !already && session.rooms().len() >= limits.max_rooms_per_session {
            return Err(HubError::TooManyRooms(limits.max_rooms_per_session));
        }
        let user = session.user();
        let (name, room_epoch, delivered, members, others) = loop {
            let generation = {
                let mut shard = self.shard(room);
                if let Some(r) = shard.rooms.get_mut(room) {
                    break Self::add_member(r, session, &user);
                }
                shard.generation
            };
            let head = self
                .inner
                .store
                .room_head(room, true)
                .await?
                .ok_or(HubError::Store(StoreError::Closed))?;
            let total: usize = self.room_count();
            let mut shard = self.shard(room);
            if let Some(r) = shard.rooms.get_mut(room) {
                break Self::add_member(r, session, &user);
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
            break Self::add_member(r, session, &user);
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
            members = self
                .join_shared(session, &name, &user, others.is_some(), already)
                .await?;
        } else if let Some(others) = others {
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
        if let Some(since) = since {
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

    /// The shared-presence part of a join: registers the user's first local
    /// session with the broker (or reads the room's view when this node has
    /// none yet) and returns the members on every node.
    async fn join_shared(
        &self,
        session: &Arc<Session>,
        room: &Arc<str>,
        user: &User,
        first_local: bool,
        already: bool,
    ) -> Result<Vec<User>, HubError> {
        let broker = &self.inner.broker;
        let has_view = self
            .shard(room)
            .rooms
            .get(&**room)
            .is_some_and(|r| r.view.is_some());
        let snapshot = if first_local {
            Some(broker.presence_join(room, user).await)
        } else if !has_view {
            Some(broker.presence_snapshot(room).await)
        } else {
            None
        };
        match snapshot {
            Some(Ok(snap)) => {
                if self.inner.presence_install(room, snap, false) == PresenceApplied::Refetch
                    && let Ok(snap) = broker.presence_snapshot(room).await
                {
                    self.inner.presence_install(room, snap, true);
                }
            }
            Some(Err(e)) => {
                if !already {
                    let _ = self.leave(session, room);
                }
                if first_local {
                    broker.presence_changed(room, user);
                }
                return Err(e.into());
            }
            None => {}
        }
        // A leave that raced this registration is reconciled by the broker.
        if first_local && !self.inner.local_member(room, &user.id) {
            broker.presence_changed(room, user);
        }
        Ok(self.presence(room))
    }

    fn room_count(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).rooms.len())
            .sum()
    }

    /// Removes rooms without members from a shard.
    fn sweep(shard: &mut Shard) {
        let before = shard.rooms.len();
        shard.rooms.retain(|_, r| !r.sessions.is_empty());
        if shard.rooms.len() != before {
            shard.generation += 1;
        }
    }

    #[allow(clippy::type_complexity)]
    fn add_member(
        r: &mut Room,
        session: &Arc<Session>,
        user: &User,
    ) -> (
        Arc<str>,
        Epoch,
        Offset,
        Vec<User>,
        Option<Vec<Arc<Session>>>,
    ) {
        let mut others = None;
        if r.sessions.insert(session.id, Arc::clone(session)).is_none() {
            let entry = r
                .users
                .entry(user.id.clone())
                .or_insert_with(|| (user.clone(), 0));
            entry.1 += 1;
            if entry.1 == 1 {
                others = Some(
                    r.sessions
                        .values()
                        .filter(|s| s.id != session.id)
                        .cloned()
                        .collect(),
                );
            }
        }
        (
            Arc::clone(&r.name),
            r.epoch.clone(),
            r.delivered,
            r.members(),
            others,
        )
    }

    /// Removes a session from a room; returns whether it was a member.
    fn remove_member(&self, room: &str, session: &Arc<Session>) -> bool {
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
                entry.1 -= 1;
                if entry.1 == 0 {
                    left = r.users.remove(&uid).map(|(u, _)| u);
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
            } else {
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

    fn require_member(&self, session: &Arc<Session>, room: &str) -> Result<(), HubError> {
        if session.rooms().iter().any(|r| &**r == room) {
            Ok(())
        } else {
            Err(HubError::NotMember(room.to_owned()))
        }
    }

    /// Tells the other members of a room that the session's user is typing.
    ///
    /// # Errors
    /// [`HubError::NotMember`] when the session is not in the room.
    pub fn typing(&self, session: &Arc<Session>, room: &str, typing: bool) -> Result<(), HubError> {
        self.require_member(session, room)?;
        let (others, name) = {
            let shard = self.shard(room);
            let Some(r) = shard.rooms.get(room) else {
                return Err(HubError::NotMember(room.to_owned()));
            };
            let others: Vec<Arc<Session>> = r
                .sessions
                .values()
                .filter(|s| s.id != session.id)
                .cloned()
                .collect();
            (others, Arc::clone(&r.name))
        };
        let user = session.user();
        if self.inner.shared {
            self.inner.broker.typing(&name, &user, typing);
        }
        self.send_all(
            others.iter(),
            &Outbound::Typing {
                room: name,
                user: Arc::new(user),
                typing,
            },
        );
        Ok(())
    }

    /// Publishes in a room the session is in. Resolves once the message is
    /// stored and fanned out; the result carries its offset.
    ///
    /// # Errors
    /// Not a member, content too large, or the broker failed (not acknowledged).
    pub async fn publish(
        &self,
        session: &Arc<Session>,
        room: &str,
        content: serde_json::Value,
    ) -> Result<Arc<Message>, HubError> {
        self.require_member(session, room)?;
        self.publish_as(session.user(), room, content).await
    }

    /// Publishes as `user` without a session (the HTTP API for backends).
    ///
    /// # Errors
    /// A bad room name, content too large, or the broker failed.
    pub async fn publish_as(
        &self,
        user: User,
        room: &str,
        content: serde_json::Value,
    ) -> Result<Arc<Message>, HubError> {
        let limits = &self.inner.config.limits;
        check_name(room, limits.max_room_name).map_err(HubError::BadName)?;
        let size = json_size(&content);
        if size > limits.max_message {
            return Err(HubError::TooLarge(limits.max_message));
        }
        let draft = Draft {
            room: room.to_owned(),
            user,
            content,
        };
        Ok(self.inner.broker.publish(draft).await?)
    }

    /// Members of a room (distinct users), sorted by name.
    pub fn presence(&self, room: &str) -> Vec<User> {
        self.shard(room)
            .rooms
            .get(room)
            .map(Room::members)
            .unwrap_or_default()
    }

    /// Number of sessions in a room, in O(1).
    pub fn member_count(&self, room: &str) -> usize {
        self.shard(room)
            .rooms
            .get(room)
            .map_or(0, |r| r.sessions.len())
    }

    /// Rooms with members, sorted by name, at most `limit`.
    pub fn rooms(&self, limit: usize) -> Vec<RoomInfo> {
        let mut v = Vec::new();
        for shard in self.inner.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            v.extend(
                shard
                    .rooms
                    .values()
                    .filter(|r| !r.sessions.is_empty())
                    .map(|r| RoomInfo {
                        name: r.name.to_string(),
                        members: r.member_users(),
                        offset: r.delivered,
                    }),
            );
        }
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v.truncate(limit);
        v
    }

    /// A room's history: the last `count` messages, or those after `since`.
    ///
    /// # Errors
    /// [`HubError::NoRoom`] for a room that never existed; a store failure.
    pub async fn history(
        &self,
        room: &str,
        since: Option<Offset>,
        count: usize,
    ) -> Result<(Epoch, HistoryPage), HubError> {
        let count = count.min(self.inner.config.limits.max_history);
        let known = {
            let shard = self.shard(room);
            shard
                .rooms
                .get(room)
                .map(|r| (r.epoch.clone(), r.delivered))
        };
        let (epoch, until) = match known {
            Some(k) => k,
            None => {
                let head = self
                    .inner
                    .store
                    .room_head(room, false)
                    .await?
                    .ok_or_else(|| HubError::NoRoom(room.to_owned()))?;
                (head.epoch, head.last)
            }
        };
        let query = match since {
            Some(after) => HistoryQuery::After {
                after,
                until,
                limit: count,
            },
            None => HistoryQuery::Last { count, until },
        };
        let page = self.inner.store.read(room, query).await?;
        Ok((epoch, page))
    }

    /// Remembers the session's rooms under `pid` for the recovery window, so
    /// a client coming back with `pid` can resume. Call before [`Hub::disconnect`].
    ///
    /// # Errors
    /// A store failure.
    pub async fn suspend(&self, session: &Arc<Session>, pid: &str) -> Result<(), HubError> {
        let window =
            u64::try_from(self.inner.config.recovery_window.as_millis()).unwrap_or(u64::MAX);
        let snapshot = SessionSnapshot {
            user: session.user(),
            rooms: session.rooms().iter().map(|r| r.to_string()).collect(),
            expires_at: self.inner.clock.now_ms().saturating_add(window),
        };
        self.inner.store.save_session(pid, snapshot).await?;
        Ok(())
    }

    /// True when [`Hub::suspend`] records outlive this process: transports
    /// then keep a live session's record current (after each join and leave,
    /// and before it expires), so that its client recovers on another node or
    /// after a restart even when this process is killed.
    pub fn checkpoints_sessions(&self) -> bool {
        self.inner.store.sessions_outlive_process()
    }

    /// Drops a session's recovery record (a deliberate disconnect: nothing
    /// is to be recovered).
    ///
    /// # Errors
    /// A store failure.
    pub async fn forget_suspended(&self, pid: &str) -> Result<(), HubError> {
        self.inner.store.take_session(pid, 0).await?;
        Ok(())
    }

    /// Resumes a suspended session: takes back its user and rooms and returns
    /// what it missed after `after_seq`, in publish order. `None` when the
    /// session is unknown, expired, or history no longer covers the gap (the
    /// session then starts fresh, in no room).
    ///
    /// # Errors
    /// A store failure.
    pub async fn resume(
        &self,
        session: &Arc<Session>,
        pid: &str,
        after_seq: u64,
    ) -> Result<Option<Resumed>, HubError> {
        let now = self.inner.clock.now_ms();
        let Some(snapshot) = self.inner.store.take_session(pid, now).await? else {
            return Ok(None);
        };
        session.set_user(snapshot.user);
        let mut heads = HashMap::new();
        for room in &snapshot.rooms {
            match self.join(session, room, None, None).await {
                Ok(j) => {
                    heads.insert(j.room.to_string(), j.offset);
                }
                Err(e) => {
                    tracing::debug!(room = %room, error = %e, "room not resumed");
                }
            }
        }
        let rooms: Vec<String> = heads.keys().cloned().collect();
        let page = self
            .inner
            .store
            .read_since_seq(&rooms, after_seq, self.inner.config.limits.max_history)
            .await?;
        if !page.complete {
            for room in &rooms {
                let _ = self.leave(session, room);
            }
            return Ok(None);
        }
        let replay = page
            .messages
            .into_iter()
            .filter(|m| heads.get(&m.room_id).is_some_and(|h| m.offset <= *h))
            .collect();
        Ok(Some(Resumed {
            rooms: session.rooms(),
            replay,
        }))
    }

    /// Writes out the store; call at shutdown after the transports are closed.
    ///
    /// # Errors
    /// A store failure.
    pub async fn flush(&self) -> Result<(), HubError> {
        Ok(self.inner.store.flush().await?)
    }
}

impl Inner {
    fn send_all<'a>(&self, targets: impl Iterator<Item = &'a Arc<Session>>, event: &Outbound) {
        let mut slow = Vec::new();
        for s in targets {
            if let Err(TrySendError::Full(_)) = s.tx.try_send(event.clone()) {
                slow.push(Arc::clone(s));
            }
        }
        for s in slow {
            self.slow_consumer(&s);
        }
    }

    fn slow_consumer(&self, session: &Arc<Session>) {
        if session.close_reason().is_none() {
            self.stats.slow_consumer(session.transport);
            tracing::info!(
                session = session.id.0,
                transport = session.transport.as_str(),
                "disconnecting slow consumer"
            );
        }
        session.close(CloseReason::SlowConsumer);
    }

    fn lock_shard(&self, room: &str) -> MutexGuard<'_, Shard> {
        // See `Hub::shard` for why a poisoned lock is usable.
        self.shards[shard_of(room)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn notify(&self, room: &Arc<str>, tell: Vec<(Vec<Arc<Session>>, bool, User)>) {
        for (targets, joined, user) in tell {
            let user = Arc::new(user);
            let event = if joined {
                Outbound::Joined {
                    room: Arc::clone(room),
                    user,
                }
            } else {
                Outbound::Left {
                    room: Arc::clone(room),
                    user,
                }
            };
            self.announce(&targets, &event);
        }
    }

    /// Pushes a join or leave to the room's other members on this node,
    /// unless there are more of them than `max_presence_fanout`: announcing
    /// every join of a large room one by one costs the square of its size.
    fn announce(&self, targets: &[Arc<Session>], event: &Outbound) {
        let cap = self.config.limits.max_presence_fanout;
        if cap != 0 && targets.len() > cap {
            metrics::counter!("prise_presence_announcements_skipped_total").increment(1);
            return;
        }
        self.send_all(targets.iter(), event);
    }
}

impl DeliverySink for Inner {
    fn offer(&self, epoch: &Epoch, message: Arc<Message>) -> Offered {
        {
            let mut shard = self.lock_shard(&message.room_id);
            if let Some(r) = shard.rooms.get_mut(message.room_id.as_str()) {
                if r.epoch != *epoch {
                    // The shared history was reset: follow the new epoch.
                    r.epoch = epoch.clone();
                    r.delivered = Offset(message.offset.0.saturating_sub(1));
                } else if message.offset <= r.delivered {
                    return Offered::Duplicate;
                } else if message.offset.0 > r.delivered.0 + 1 {
                    return Offered::Gap(r.delivered);
                }
            }
        }
        // Only the broker's one delivery task offers, so nothing changed the
        // room's `delivered` since the check.
        self.deliver(epoch, message);
        Offered::Delivered
    }

    fn delivered_rooms(&self) -> Vec<(String, Epoch, Offset)> {
        let mut v = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            v.extend(
                shard
                    .rooms
                    .values()
                    .map(|r| (r.name.to_string(), r.epoch.clone(), r.delivered)),
            );
        }
        v
    }

    fn presence_event(&self, room: &str, event: PresenceEvent) -> PresenceApplied {
        let (name, tell) = {
            let mut shard = self.lock_shard(room);
            let Some(r) = shard.rooms.get_mut(room) else {
                return PresenceApplied::Done;
            };
            if r.view.is_none() {
                if r.pending.len() >= MAX_PENDING_EVENTS {
                    r.pending.remove(0);
                }
                r.pending.push(event);
                return PresenceApplied::Done;
            }
            match r.apply(&event) {
                Err(()) => return PresenceApplied::Refetch,
                Ok(None) => return PresenceApplied::Done,
                Ok(Some(targets)) => (
                    Arc::clone(&r.name),
                    vec![(targets, event.joined, event.user)],
                ),
            }
        };
        self.notify(&name, tell);
        PresenceApplied::Done
    }

    fn presence_install(
        &self,
        room: &str,
        snapshot: PresenceSnapshot,
        force: bool,
    ) -> PresenceApplied {
        let mut result = PresenceApplied::Done;
        let (name, tell) = {
            let mut shard = self.lock_shard(room);
            let Some(r) = shard.rooms.get_mut(room) else {
                return PresenceApplied::Done;
            };
            let newer = r
                .view
                .as_ref()
                .is_none_or(|v| force || snapshot.version > v.version);
            if !newer {
                return PresenceApplied::Done;
            }
            let users: HashMap<String, User> = snapshot
                .users
                .into_iter()
                .map(|u| (u.id.clone(), u))
                .collect();
            let mut tell = Vec::new();
            if let Some(old) = &r.view {
                for (id, u) in &users {
                    if !old.users.contains_key(id) {
                        tell.push((r.others_of(id), true, u.clone()));
                    }
                }
                for (id, u) in &old.users {
                    if !users.contains_key(id) {
                        tell.push((r.others_of(id), false, u.clone()));
                    }
                }
            }
            r.view = Some(View {
                version: snapshot.version,
                users,
            });
            for event in std::mem::take(&mut r.pending) {
                match r.apply(&event) {
                    Ok(Some(targets)) => tell.push((targets, event.joined, event.user)),
                    Ok(None) => {}
                    Err(()) => {
                        result = PresenceApplied::Refetch;
                        break;
                    }
                }
            }
            (Arc::clone(&r.name), tell)
        };
        self.notify(&name, tell);
        result
    }

    fn local_member(&self, room: &str, user_id: &str) -> bool {
        self.lock_shard(room)
            .rooms
            .get(room)
            .is_some_and(|r| r.users.contains_key(user_id))
    }

    fn local_memberships(&self) -> Vec<(String, User)> {
        let mut v = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            for r in shard.rooms.values() {
                v.extend(
                    r.users
                        .values()
                        .map(|(u, _)| (r.name.to_string(), u.clone())),
                );
            }
        }
        v
    }

    fn presence_rooms(&self) -> Vec<String> {
        let mut v = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            v.extend(
                shard
                    .rooms
                    .values()
                    .filter(|r| !r.sessions.is_empty())
                    .map(|r| r.name.to_string()),
            );
        }
        v
    }

    fn advance_seq(&self, seq: u64) {
        self.delivered_seq.fetch_max(seq, Ordering::AcqRel);
    }

    fn remote_typing(&self, room: &str, user: User, typing: bool) {
        let (name, targets) = {
            let shard = self.lock_shard(room);
            let Some(r) = shard.rooms.get(room) else {
                return;
            };
            (Arc::clone(&r.name), r.others_of(&user.id))
        };
        self.send_all(
            targets.iter(),
            &Outbound::Typing {
                room: name,
                user: Arc::new(user),
                typing,
            },
        );
    }

    fn deliver(&self, epoch: &Epoch, message: Arc<Message>) {
        let delivery = Arc::new(Delivery::new(Arc::clone(&message)));
        let event = Outbound::Message(delivery);
        let mut slow = Vec::new();
        let fanout;
        {
            let idx = shard_of(&message.room_id);
            let mut shard = self.shards[idx].lock().unwrap_or_else(|e| e.into_inner());
            let room = match shard.rooms.get_mut(message.room_id.as_str()) {
                Some(r) => r,
                None => {
                    let name: Arc<str> = Arc::from(message.room_id.as_str());
                    shard.rooms.entry(Arc::clone(&name)).or_insert_with(|| {
                        Room::new(name, epoch.clone(), Offset(message.offset.0 - 1))
                    })
                }
            };
            // A join that created the room entry read a store head that
            // already held this message (committed, not yet delivered): its
            // members have it below their `delivered` and read it from the
            // store, so it is not sent to them twice.
            fanout = if message.offset > room.delivered {
                room.sessions.len()
            } else {
                0
            };
            if fanout > 0 {
                for s in room.sessions.values() {
                    if let Err(TrySendError::Full(_)) = s.tx.try_send(event.clone()) {
                        slow.push(Arc::clone(s));
                    }
                }
            }
            room.delivered = room.delivered.max(message.offset);
            self.delivered_seq.fetch_max(message.seq, Ordering::AcqRel);
            if fanout == 0 && shard.rooms.len() > self.config.limits.max_rooms / SHARDS {
                Hub::sweep(&mut shard);
            }
        }
        self.stats.published(fanout);
        for s in slow {
            if s.close_reason().is_none() {
                self.stats.slow_consumer(s.transport);
            }
            s.close(CloseReason::SlowConsumer);
        }
    }
}

/// Size of a JSON value once encoded, without allocating the encoding.
fn json_size(v: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a Value to an infallible writer cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}
