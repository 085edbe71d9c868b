//! Several `prise serve` nodes as one hub over Redis (`--redis URL`).
//!
//! # Design
//!
//! ```text
//!  publish(draft) ─▶ EVALSHA publish: HINCRBY last (offset) + INCR seq + XADD log
//!                    + PUBLISH events "m…"   (one atomic script)
//!                                   │
//!          every node's subscriber ◀┘ (one channel, RESP3 push, bounded queue)
//!              ─▶ hub.offer(epoch, message): duplicate → skip, next → fan out,
//!                 gap → read the missing offsets from the stream first
//! ```
//!
//! - **Order.** Offset and seq are assigned and the message is published in
//!   the same script, so the channel carries messages in commit order and
//!   every node fans them out in that order (per room and across rooms).
//! - **Join consistency across nodes.** A node's subscription is always on;
//!   a join reads the room's head from Redis after it. Messages up to the
//!   head that arrive later over pub/sub are duplicates (skipped by offset);
//!   everything after it arrives over pub/sub, or, if pub/sub lost it, is
//!   read from the stream when the next offset shows the gap. So the hub's
//!   join/replay argument (docs/ARCHITECTURE.md §2) holds on every node.
//! - **Outages.** The subscriber reconnects with capped exponential backoff
//!   and jitter; after each (re)subscription it catches up every room in
//!   memory from the streams, re-reads the presence of its rooms and
//!   re-registers its members. Publishing while Redis is down fails
//!   (`SEND_ERROR`, not acknowledged); [`Broker::ready`] is false until the
//!   subscription is back (`/readyz` answers 503).
//! - **Bounded.** The pub/sub queue holds [`RedisConfig::event_queue`]
//!   events; when it is full events are dropped and the subscriber catches up
//!   from the streams (offsets make the loss visible). Typing events go
//!   through a bounded queue and are dropped when it is full.
//! - **Presence.** See [`crate::presence`]: each room's members live in a
//!   Redis hash (user → the nodes holding a session), changed by scripts that
//!   also bump the room's presence version and publish `joined`/`left`. Each
//!   node refreshes a heartbeat key with a TTL; every node reaps the
//!   members of nodes whose heartbeat expired (publishing their `left`).
//! - **Control operations.** The control API's operations (kick, server-side
//!   joins, the session list) travel over the same channel to every node,
//!   whose answers come back over it to the asking node (bounded, with a
//!   deadline); idempotency keys are Redis strings with a TTL.

//!
//! One file per part: `scripts.rs` (the Lua scripts), `subscriber.rs` (the
//! one pub/sub reader per node, catch-up and gap filling), `presence.rs`
//! (shared presence, heartbeat and reaping), `typing.rs` (typing events
//! between nodes), `owners.rs` (Engine.IO session owners) and `control.rs`
//! (control operations on every node, shared idempotency keys).

mod control;
mod owners;
mod presence;
mod scripts;
mod subscriber;
mod typing;
mod webhooks;

pub use owners::{Owner, SID_TTL};
pub use webhooks::{WebhookEvent, WebhookOutbox};

use crate::broker::{Broker, BrokerError, DeliverySink, Draft};
use crate::clock::Clock;
use crate::presence::PresenceSnapshot;
use crate::store::redis::{Keys, RedisStore, encode_payload};
use crate::store::{HistoryStore, Retention, StoreError, new_epoch};
use futures_util::future::{BoxFuture, FutureExt};
use presence::{Membership, Reap, reap};
use prise_proto::message::{Message, Offset, User};
use redis::ProtocolVersion;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use scripts::Scripts;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Default presence TTL: a node that stops refreshing its heartbeat for this
/// long has its members removed (and `left` sent) by the other nodes.
pub const DEFAULT_PRESENCE_TTL: Duration = Duration::from_secs(10);
/// Default depth of the queue between the Redis reader and the delivery task.
pub const DEFAULT_EVENT_QUEUE: usize = 65_536;
/// Depth of the queue of outgoing typing events.
/// Longest a publisher waits for its own message to come back over pub/sub
/// before answering (the message is stored either way).
const OWN_DELIVERY_WAIT: Duration = Duration::from_secs(2);
/// Timeout of one Redis command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Settings of the Redis engine.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// Prefix of every key and of the channel (several clusters can share
    /// one Redis with different prefixes).
    pub prefix: String,
    /// See [`DEFAULT_PRESENCE_TTL`].
    pub presence_ttl: Duration,
    /// History kept per room.
    pub retention: Retention,
    /// See [`DEFAULT_EVENT_QUEUE`].
    pub event_queue: usize,
    /// Presence transitions are appended to the webhook stream (see
    /// [`RedisCluster::webhook_outbox`]).
    pub webhooks: bool,
}

impl RedisConfig {
    /// Settings for `url` with the defaults.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            prefix: crate::store::redis::DEFAULT_PREFIX.to_owned(),
            presence_ttl: DEFAULT_PRESENCE_TTL,
            retention: Retention::default(),
            event_queue: DEFAULT_EVENT_QUEUE,
            webhooks: false,
        }
    }
}

/// Why the Redis engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The URL is not a Redis URL.
    #[error("bad redis url: {0}")]
    Url(String),
    /// Redis could not be reached.
    #[error("cannot connect to redis: {0}")]
    Connect(String),
}

/// What the engine's tasks share.
struct Shared {
    node_id: String,
    keys: Keys,
    store: RedisStore,
    conn: ConnectionManager,
    /// A client speaking RESP3, for the subscriber's push messages.
    sub_client: redis::Client,
    config: RedisConfig,
    scripts: Scripts,
    clock: OnceLock<Arc<dyn Clock>>,
    sink: OnceLock<Weak<dyn DeliverySink>>,
    ready: AtomicBool,
    /// Highest seq this node has fanned out (publishers wait on it).
    seen: watch::Sender<u64>,
    /// (room, user id) whose shared presence must follow the local one.
    dirty: Mutex<HashMap<Membership, User>>,
    dirty_notify: Notify,
    typing_tx: mpsc::Sender<String>,
    typing_rx: Mutex<Option<mpsc::Receiver<String>>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// The HTTP address other nodes reach this one at (its heartbeat value).
    advertised: Mutex<Option<String>>,
    /// Engine.IO sessions this node holds (their owner keys are refreshed).
    claimed: owners::Claimed,
    /// This node's control calls waiting for answers, by id.
    control_waiting: Mutex<HashMap<String, mpsc::Sender<crate::control::NodeAnswer>>>,
    /// Operations from other nodes being applied (at most a few at once).
    control_slots: Arc<tokio::sync::Semaphore>,
}

/// The Redis engine of one node: its [`RedisStore`], its broker (made once
/// per hub with [`RedisCluster::broker`]) and the tasks behind them.
#[derive(Clone)]
pub struct RedisCluster {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCluster")
            .field("node", &self.shared.node_id)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: redis::RedisError) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

fn store_unavailable(e: StoreError) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

impl RedisCluster {
    /// Connects to Redis (failing when it cannot be reached now; later
    /// outages are survived).
    ///
    /// # Errors
    /// A bad URL or an unreachable Redis.
    pub async fn connect(config: RedisConfig) -> Result<Self, RedisError> {
        use redis::IntoConnectionInfo as _;
        let info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| RedisError::Url(e.to_string()))?;
        let client =
            redis::Client::open(info.clone()).map_err(|e| RedisError::Url(e.to_string()))?;
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let sub_client = redis::Client::open(info.set_redis_settings(resp3))
            .map_err(|e| RedisError::Url(e.to_string()))?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            client.get_connection_manager_with_config(manager),
        )
        .await
        .map_err(|_| RedisError::Connect("timed out".into()))?
        .map_err(|e| RedisError::Connect(e.to_string()))?;
        let keys = Keys::new(&config.prefix);
        let store = RedisStore::new(conn.clone(), keys.clone(), config.retention);
        let (typing_tx, typing_rx) = mpsc::channel(typing::TYPING_QUEUE);
        let scripts = Scripts::new();
        Ok(Self {
            shared: Arc::new(Shared {
                node_id: ulid::Ulid::generate().to_string(),
                keys,
                store,
                conn,
                sub_client,
                config,
                scripts,
                clock: OnceLock::new(),
                sink: OnceLock::new(),
                ready: AtomicBool::new(false),
                seen: watch::Sender::new(0),
                dirty: Mutex::new(HashMap::new()),
                dirty_notify: Notify::new(),
                typing_tx,
                typing_rx: Mutex::new(Some(typing_rx)),
                shutdown: CancellationToken::new(),
                tracker: TaskTracker::new(),
                advertised: Mutex::new(None),
                claimed: Mutex::new(std::collections::HashSet::new()),
                control_waiting: Mutex::new(HashMap::new()),
                control_slots: Arc::new(tokio::sync::Semaphore::new(control::MAX_APPLYING)),
            }),
        })
    }

    /// This node's id (also its presence identity in Redis).
    pub fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    /// The shared history store.
    pub fn store(&self) -> Arc<dyn HistoryStore> {
        Arc::new(self.shared.store.clone())
    }

    /// Starts the engine's tasks for the hub behind `sink` and returns its
    /// broker. Call once (from `Hub::with_broker`).
    pub fn broker(&self, sink: Weak<dyn DeliverySink>, clock: Arc<dyn Clock>) -> Arc<dyn Broker> {
        let s = &self.shared;
        let _ = s.sink.set(sink);
        let _ = s.clock.set(clock);
        if let Some(rx) = s.typing_rx.lock().unwrap_or_else(|e| e.into_inner()).take() {
            s.tracker.spawn(subscriber::subscriber(Arc::clone(s)));
            s.tracker.spawn(presence::presence_task(Arc::clone(s)));
            s.tracker.spawn(typing::typing_task(Arc::clone(s), rx));
            s.tracker.spawn(owners::refresh_task(Arc::clone(s)));
        }
        Arc::new(RedisBroker {
            shared: Arc::clone(s),
        })
    }

    /// Stops the engine's tasks and removes this node's members from the
    /// shared presence (others get `left` at once instead of after the TTL).
    pub async fn shutdown(&self) {
        let s = &self.shared;
        s.shutdown.cancel();
        s.tracker.close();
        let _ = tokio::time::timeout(COMMAND_TIMEOUT, s.tracker.wait()).await;
        let _ = tokio::time::timeout(COMMAND_TIMEOUT, reap(s, &s.node_id, Reap::Always)).await;
    }
}

/// The [`Broker`] of a node in a Redis cluster.
struct RedisBroker {
    shared: Arc<Shared>,
}

impl Shared {
    /// `'1'` when presence transitions go to the webhook stream.
    fn webhooks_flag(&self) -> &'static str {
        if self.config.webhooks { "1" } else { "0" }
    }

    fn sink(&self) -> Option<Arc<dyn DeliverySink>> {
        self.sink.get().and_then(Weak::upgrade)
    }

    fn now_ms(&self) -> u64 {
        self.clock
            .get()
            .map_or_else(|| crate::clock::SystemClock.now_ms(), |c| c.now_ms())
    }
}

impl Broker for RedisBroker {
    fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    fn publish(&self, draft: Draft) -> BoxFuture<'_, Result<Arc<Message>, BrokerError>> {
        async move {
            let s = &self.shared;
            let mut message = Message {
                id: ulid::Ulid::generate().to_string(),
                room_id: draft.room,
                user_id: draft.user.id,
                user_name: draft.user.name,
                content: draft.content,
                timestamp: s.now_ms(),
                offset: Offset::ZERO,
                event: draft.event,
                args: draft.args,
                seq: 0,
            };
            let mut conn = s.conn.clone();
            let room = &message.room_id;
            let (_epoch, offset, seq): (String, u64, u64) = s
                .scripts
                .publish
                .key(s.keys.meta(room))
                .key(s.keys.log(room))
                .key(s.keys.seq())
                .key(s.keys.rooms())
                .arg(room)
                .arg(new_epoch().0)
                .arg(encode_payload(&message))
                .arg(s.config.retention.count.max(1))
                .arg(s.store.ttl_ms())
                .arg(s.keys.events())
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            message.offset = Offset(offset);
            message.seq = seq;
            // Like the local broker, answer after this node fanned it out, so
            // a publisher sees its own message before its acknowledgement.
            let mut seen = s.seen.subscribe();
            let _ = tokio::time::timeout(OWN_DELIVERY_WAIT, seen.wait_for(|v| *v >= seq)).await;
            Ok(Arc::new(message))
        }
        .boxed()
    }

    fn ready(&self) -> bool {
        self.shared.ready.load(Ordering::Relaxed)
    }

    fn shared_presence(&self) -> bool {
        true
    }

    fn presence_join<'a>(
        &'a self,
        room: &'a str,
        user: &'a User,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        presence::join(&self.shared, room, user).boxed()
    }

    fn presence_snapshot<'a>(
        &'a self,
        room: &'a str,
    ) -> BoxFuture<'a, Result<PresenceSnapshot, BrokerError>> {
        presence::read(&self.shared, room).boxed()
    }

    fn presence_changed(&self, room: &str, user: &User) {
        self.shared.mark_dirty(room, user);
    }

    fn typing(&self, room: &str, user: &User, typing: bool) {
        typing::queue(&self.shared, room, user, typing);
    }

    fn control(
        &self,
        op: &crate::control::ControlOp,
    ) -> Option<BoxFuture<'_, Result<Vec<crate::control::NodeAnswer>, BrokerError>>> {
        let op = op.clone();
        Some(async move { control::broadcast(&self.shared, &op).await }.boxed())
    }

    fn claim_key<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> Option<BoxFuture<'a, Result<crate::control::Claim, BrokerError>>> {
        Some(control::claim(&self.shared, key, ttl).boxed())
    }

    fn settle_key<'a>(
        &'a self,
        key: &'a str,
        answer: Option<String>,
        ttl: Duration,
    ) -> Option<BoxFuture<'a, Result<(), BrokerError>>> {
        Some(control::settle(&self.shared, key, answer, ttl).boxed())
    }
}
