//! The hub: rooms, membership, presence, and fan-out to sessions.
//!
//! One file per concept:
//!
//! - `room.rs`: the shards, room entries, joining and leaving;
//! - `presence.rs`: members and their counts, `joined`/`left`
//!   announcements, the coalesced diffs of large rooms, the shared presence
//!   view of a cluster;
//! - `roster.rs`: a room's distinct users, sorted, paged by cursor;
//! - `fanout.rs`: delivering messages and events to members' queues;
//! - `typing.rs`: typing indicators, local and from other nodes;
//! - `publish.rs`: the checks before a message reaches the broker;
//! - `history.rs`: reading a room's history;
//! - `recovery.rs`: suspending and resuming a session across rooms;
//! - `control.rs`: the node's sessions by id and user, and what the control
//!   API does to them (list, kick, server-side joins and leaves);
//! - `sink.rs`: the [`DeliverySink`] through which the broker reaches the hub.
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

mod control;
mod fanout;
mod history;
mod presence;
mod publish;
mod recovery;
mod room;
mod roster;
mod sink;
mod typing;

pub use publish::Event;
pub use recovery::Resumed;
pub use room::Joined;

use crate::broker::{Broker, DeliverySink, LocalBroker};
use crate::clock::Clock;
use crate::session::{Outbound, Session, SessionId};
use crate::stats::Stats;
use crate::store::{HistoryStore, StoreError};
use crate::{HubConfig, HubError, Transport};
use prise_proto::limits::check_name;
use prise_proto::message::User;
use room::{SHARDS, Shard};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::mpsc;

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
    /// The hub itself, for timers that outlive a call (presence diffs).
    me: Weak<Inner>,
    /// Where joins, leaves and closes are reported, once set.
    activity: std::sync::OnceLock<Arc<dyn crate::activity::ActivitySink>>,
    /// Every live session of the node, for the control API.
    pub(crate) registry: control::Registry,
    /// Answers of idempotent control calls, when the broker keeps none.
    pub(crate) idempotency: control::Idempotency,
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

impl Inner {
    /// The activity sink, on a hub whose presence is its own.
    pub(crate) fn activity(&self) -> Option<&dyn crate::activity::ActivitySink> {
        if self.shared {
            return None;
        }
        self.activity.get().map(|a| &**a)
    }
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
                me: weak.clone(),
                activity: std::sync::OnceLock::new(),
                registry: control::Registry::default(),
                idempotency: control::Idempotency::default(),
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
        self.connect_from(transport, user, None)
    }

    /// [`Hub::connect`] for a client at `remote` (shown by
    /// [`Session::remote`] and the control API's session list).
    ///
    /// # Errors
    /// [`HubError::Full`] when the connection limit is reached.
    pub fn connect_from(
        &self,
        transport: Transport,
        user: Option<User>,
        remote: Option<SocketAddr>,
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
        let now = self.inner.clock.now_ms();
        let session = Arc::new(Session::new(id, transport, user, tx, remote, now));
        self.inner.registry.insert(&session);
        Ok((session, rx))
    }

    /// Unregisters a session: it leaves every room (others see it leave).
    /// Call once, when the transport is done with it.
    pub fn disconnect(&self, session: &Arc<Session>) {
        let rooms = std::mem::take(&mut *session.rooms.lock().unwrap_or_else(|e| e.into_inner()));
        for room in rooms {
            self.remove_member(&room, session);
        }
        self.inner.registry.remove(session.id);
        self.inner.stats.disconnected(session.transport);
        if let Some(sink) = self.inner.activity.get() {
            sink.record(crate::activity::Activity::SessionClosed {
                session: session.id,
                user: session.user(),
                transport: session.transport,
                reason: session.close_reason(),
            });
        }
    }

    /// Reports joins, leaves and closes to `sink` from now on (once: a
    /// second sink is ignored). Joins and leaves only on a hub whose
    /// presence is its own (see [`crate::activity`]).
    pub fn set_activity(&self, sink: Arc<dyn crate::activity::ActivitySink>) {
        let _ = self.inner.activity.set(sink);
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
                && r.local.contains(&user.id)
            {
                r.local.insert(Arc::new(user.clone()));
            }
        }
        Ok(user)
    }

    /// Replaces the session's user (after authentication), before it joins rooms.
    pub fn set_user(&self, session: &Arc<Session>, user: User) {
        session.set_user(user);
    }

    /// Writes out the store; call at shutdown after the transports are closed.
    ///
    /// # Errors
    /// A store failure.
    pub async fn flush(&self) -> Result<(), HubError> {
        Ok(self.inner.store.flush().await?)
    }
}
