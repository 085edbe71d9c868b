//! The [`Broker`] seam: who orders messages, makes them durable and delivers
//! them to every node's hub.
//!
//! [`LocalBroker`] is the single-process implementation: one sequencer task
//! assigns offsets (per room) and seqs (hub-wide), appends a batch to the
//! [`HistoryStore`], and only after the store has committed it delivers each
//! message, in order, to the hub and answers the publishers. A Redis broker
//! keeps the same contract with Redis assigning the order and pub/sub
//! carrying the delivery to every node.
//!
//! ```text
//!  publish(draft) ─▶ bounded queue ─▶ sequencer: assign offset+seq for a batch
//!                                       ─▶ store.append(batch)  (commit)
//!                                       ─▶ sink.deliver(each, in order)
//!                                       ─▶ answer each publisher
//! ```

use crate::clock::Clock;
use crate::control::{Claim, ControlOp, NodeAnswer};
use crate::presence::{PresenceApplied, PresenceEvent, PresenceSnapshot};
use crate::session::SessionId;
use crate::store::{HistoryStore, StoreError};
use futures_util::future::{BoxFuture, FutureExt};
use prise_proto::message::{Epoch, Message, Offset, User};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use tokio::sync::{mpsc, oneshot};

/// Depth of the sequencer's queue; publishers wait when it is full.
pub const SEQUENCER_QUEUE: usize = 4096;
/// Most messages ordered and committed together.
pub const MAX_BATCH: usize = 512;
/// Most rooms whose head the sequencer keeps in memory; beyond it, heads are
/// reloaded from the store.
const MAX_CACHED_ROOMS: usize = 100_000;

/// A message before it has an id, a time and an offset.
#[derive(Debug, Clone)]
pub struct Draft {
    /// Room to publish in.
    pub room: String,
    /// Author.
    pub user: User,
    /// The event name (`message` for chat).
    pub event: Cow<'static, str>,
    /// Any JSON value.
    pub content: serde_json::Value,
    /// `content` is a Socket.IO event's argument list (see [`Message::args`]).
    pub args: bool,
    /// A session of this node that does not get the message (the sender,
    /// when its namespace does not echo).
    pub except: Option<SessionId>,
}

/// What the hub did with an offered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Fanned out (the next offset, or a room new to this node).
    Delivered,
    /// Already delivered (offset at or below the room's `delivered`): skipped.
    Duplicate,
    /// Not delivered: the room's last delivered offset is this one, more than
    /// one below the message. Offer the missing messages first.
    Gap(Offset),
}

/// Receives committed messages in order (per room) — the hub.
///
/// The methods after [`DeliverySink::deliver`] serve brokers that share the
/// hub with other nodes ([`crate::redis_broker`]); their defaults suit a
/// single process.
pub trait DeliverySink: Send + Sync + 'static {
    /// Delivers one committed message of a room whose history has `epoch`.
    fn deliver(&self, epoch: &Epoch, message: Arc<Message>);

    /// Delivers one committed message to every member but `except` (a
    /// session of this node).
    fn deliver_except(&self, epoch: &Epoch, message: Arc<Message>, except: Option<SessionId>) {
        let _ = except;
        self.deliver(epoch, message);
    }

    /// Delivers a message that may arrive twice or after a gap (from pub/sub):
    /// duplicates are skipped, a gap is reported instead of delivered. Call
    /// from one task, in the order messages were committed.
    fn offer(&self, epoch: &Epoch, message: Arc<Message>) -> Offered {
        self.deliver(epoch, message);
        Offered::Delivered
    }

    /// Rooms held in memory with their epoch and last delivered offset.
    fn delivered_rooms(&self) -> Vec<(String, Epoch, Offset)> {
        Vec::new()
    }

    /// Applies a shared presence event of `room`.
    fn presence_event(&self, room: &str, event: PresenceEvent) -> PresenceApplied {
        let _ = (room, event);
        PresenceApplied::Done
    }

    /// Installs a shared presence snapshot of `room` (replacing an older view,
    /// or any view with `force`, telling local members what changed).
    fn presence_install(
        &self,
        room: &str,
        snapshot: PresenceSnapshot,
        force: bool,
    ) -> PresenceApplied {
        let _ = (room, snapshot, force);
        PresenceApplied::Done
    }

    /// Whether `user_id` has a session in `room` on this node.
    fn local_member(&self, room: &str, user_id: &str) -> bool {
        let _ = (room, user_id);
        false
    }

    /// Every (room, user) with a session on this node.
    fn local_memberships(&self) -> Vec<(String, User)> {
        Vec::new()
    }

    /// Rooms with members on this node whose shared presence view is kept.
    fn presence_rooms(&self) -> Vec<String> {
        Vec::new()
    }

    /// Everything up to `seq` has been delivered on this node (after a
    /// catch-up from the shared store), so sessions connecting now start there.
    fn advance_seq(&self, seq: u64) {
        let _ = seq;
    }

    /// A user on another node started or stopped typing in `room`.
    fn remote_typing(&self, room: &str, user: User, typing: bool) {
        let _ = (room, user, typing);
    }

    /// Applies a control operation another node sent to every node, to this
    /// node's sessions.
    fn control(&self, op: ControlOp) -> BoxFuture<'static, NodeAnswer> {
        let _ = op;
        futures_util::future::ready(NodeAnswer::default()).boxed()
    }
}

/// Why a publish failed. The message was not acknowledged and may or may not
/// be stored; it was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The store refused or failed.
    #[error("history store: {0}")]
    Store(#[from] StoreError),
    /// The broker is shut down.
    #[error("broker is closed")]
    Closed,
    /// The shared engine (Redis) cannot be reached.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Orders, stores and delivers messages.
pub trait Broker: Send + Sync + 'static {
    /// This node's id.
    fn node_id(&self) -> &str;

    /// Publishes a message; resolves with it (offset and seq assigned) once it
    /// is stored. Delivery to sinks happens before this resolves.
    fn publish(&self, draft: Draft) -> BoxFuture<'_, Result<Arc<Message>, BrokerError>>;

    /// Whether the broker can publish now (`/readyz`).
    fn ready(&self) -> bool {
        true
    }

    /// Whether presence is shared with other nodes: then `joined`/`left`
    /// come from the broker (through [`DeliverySink::presence_event`]), not
    /// from the local hub.
    fn shared_presence(&self) -> bool {
        false
    }

    /// Registers `user` (its first local session) in `room`'s shared
    /// presence. O(1) in the room's size: the members are not read back
    /// (the node reads them once, with [`Broker::presence_snapshot`]).
    fn presence_join<'a>(
        &'a self,
        room: &'a str,
        user: &'a User,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        let _ = (room, user);
        futures_util::future::ready(Ok(())).boxed()
    }

    /// Reads `room`'s shared presence (by pages: see
    /// [`DeliverySink::presence_install`] for why that converges).
    fn presence_snapshot<'a>(
        &'a self,
        room: &'a str,
    ) -> BoxFuture<'a, Result<PresenceSnapshot, BrokerError>> {
        let _ = room;
        futures_util::future::ready(Ok(PresenceSnapshot::default())).boxed()
    }

    /// `user`'s local presence in `room` may have changed: the broker brings
    /// the shared presence in line with [`DeliverySink::local_member`].
    fn presence_changed(&self, room: &str, user: &User) {
        let _ = (room, user);
    }

    /// Tells other nodes that `user` is typing in `room`.
    fn typing(&self, room: &str, user: &User, typing: bool) {
        let _ = (room, user, typing);
    }

    /// Sends a control operation to every node and gathers their answers;
    /// `None` where the broker serves one process (the hub applies it
    /// itself).
    fn control(
        &self,
        op: &ControlOp,
    ) -> Option<BoxFuture<'_, Result<Vec<NodeAnswer>, BrokerError>>> {
        let _ = op;
        None
    }

    /// Looks up (and, when new, holds) an idempotency key shared by every
    /// node, for `ttl`; `None` where the hub keeps its own keys.
    fn claim_key<'a>(
        &'a self,
        key: &'a str,
        ttl: std::time::Duration,
    ) -> Option<BoxFuture<'a, Result<Claim, BrokerError>>> {
        let _ = (key, ttl);
        None
    }

    /// Stores the answer of the call that holds `key`, or releases it
    /// (`None`); `None` where the hub keeps its own keys.
    fn settle_key<'a>(
        &'a self,
        key: &'a str,
        answer: Option<String>,
        ttl: std::time::Duration,
    ) -> Option<BoxFuture<'a, Result<(), BrokerError>>> {
        let _ = (key, answer, ttl);
        None
    }
}

type Job = (Draft, oneshot::Sender<Result<Arc<Message>, BrokerError>>);

/// The single-process broker.
#[derive(Debug)]
pub struct LocalBroker {
    node_id: String,
    tx: mpsc::Sender<Job>,
}

impl LocalBroker {
    /// Starts the sequencer task. `first_seq` continues the store's sequence.
    pub fn start(
        store: Arc<dyn HistoryStore>,
        sink: Weak<dyn DeliverySink>,
        clock: Arc<dyn Clock>,
        first_seq: u64,
    ) -> Self {
        let (tx, rx) = mpsc::channel(SEQUENCER_QUEUE);
        let sequencer = Sequencer {
            store,
            sink,
            clock,
            seq: first_seq,
            rooms: HashMap::new(),
        };
        tokio::spawn(sequencer.run(rx));
        Self {
            node_id: ulid::Ulid::generate().to_string(),
            tx,
        }
    }
}

impl Broker for LocalBroker {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn publish(&self, draft: Draft) -> BoxFuture<'_, Result<Arc<Message>, BrokerError>> {
        async move {
            let (tx, rx) = oneshot::channel();
            self.tx
                .send((draft, tx))
                .await
                .map_err(|_| BrokerError::Closed)?;
            rx.await.map_err(|_| BrokerError::Closed)?
        }
        .boxed()
    }
}

struct Sequencer {
    store: Arc<dyn HistoryStore>,
    sink: Weak<dyn DeliverySink>,
    clock: Arc<dyn Clock>,
    seq: u64,
    rooms: HashMap<String, (Epoch, Offset)>,
}

impl Sequencer {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
            self.batch(std::mem::take(&mut jobs)).await;
        }
    }

    async fn head(&mut self, room: &str) -> Result<(Epoch, Offset), StoreError> {
        if let Some(h) = self.rooms.get(room) {
            return Ok(h.clone());
        }
        let head = self
            .store
            .room_head(room, true)
            .await?
            .ok_or(StoreError::Closed)?;
        if self.rooms.len() >= MAX_CACHED_ROOMS {
            self.rooms.clear();
        }
        self.rooms
            .insert(room.to_owned(), (head.epoch.clone(), head.last));
        Ok((head.epoch, head.last))
    }

    async fn batch(&mut self, jobs: Vec<Job>) {
        let mut ordered = Vec::with_capacity(jobs.len());
        let now = self.clock.now_ms();
        for (draft, reply) in jobs {
            let (epoch, last) = match self.head(&draft.room).await {
                Ok(h) => h,
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                    continue;
                }
            };
            let offset = last.next();
            self.seq += 1;
            let message = Arc::new(Message {
                id: ulid::Ulid::generate().to_string(),
                room_id: draft.room,
                user_id: draft.user.id,
                user_name: draft.user.name,
                content: draft.content,
                timestamp: now,
                offset,
                event: draft.event,
                args: draft.args,
                seq: self.seq,
            });
            self.rooms
                .insert(message.room_id.clone(), (epoch.clone(), offset));
            ordered.push((epoch, message, draft.except, reply));
        }
        if ordered.is_empty() {
            return;
        }
        let batch = ordered.iter().map(|(_, m, _, _)| Arc::clone(m)).collect();
        match self.store.append(batch).await {
            Ok(()) => {
                let sink = self.sink.upgrade();
                for (epoch, message, except, reply) in ordered {
                    if let Some(sink) = &sink {
                        sink.deliver_except(&epoch, Arc::clone(&message), except);
                    }
                    let _ = reply.send(Ok(message));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "history append failed; messages not acknowledged");
                // The offsets handed out are not stored: forget the cached
                // heads so they are read again from the store.
                self.rooms.clear();
                for (_, _, _, reply) in ordered {
                    let _ =
                        reply.send(Err(BrokerError::Store(StoreError::Database(e.to_string()))));
                }
            }
        }
    }
}
