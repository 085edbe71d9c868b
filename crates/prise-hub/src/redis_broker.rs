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

mod owners;

pub use owners::{Owner, SID_TTL};

use crate::broker::{Broker, BrokerError, DeliverySink, Draft, Offered};
use crate::clock::Clock;
use crate::presence::{PresenceApplied, PresenceEvent, PresenceSnapshot};
use crate::store::redis::{Keys, RedisStore, TRIM_LUA, decode_payload, encode_payload};
use crate::store::{HistoryStore, Retention, StoreError, new_epoch};
use futures_util::future::{BoxFuture, FutureExt};
use prise_proto::message::{Epoch, Message, Offset, User};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, ProtocolVersion, PushInfo, PushKind};
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
const TYPING_QUEUE: usize = 1024;
/// Messages read from a stream at once when filling a gap or catching up.
const CATCH_UP_PAGE: usize = 1000;
/// Longest a publisher waits for its own message to come back over pub/sub
/// before answering (the message is stored either way).
const OWN_DELIVERY_WAIT: Duration = Duration::from_secs(2);
/// First and largest reconnect delays.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often the subscription is checked with a PING.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Timeout of one Redis command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Settings of the Redis engine.
#[derive(Debug, Clone)]
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

/// KEYS: meta, log, seq, rooms. ARGV: room, epoch candidate, payload,
/// retain, ttl ms, channel.
const PUBLISH_LUA: &str = r"
ensure(KEYS[1], KEYS[2], KEYS[4], ARGV[1], ARGV[2])
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local offset = redis.call('HINCRBY', KEYS[1], 'last', 1)
local seq = redis.call('INCR', KEYS[3])
redis.call('XADD', KEYS[2], offset .. '-0', 's', seq, 'd', ARGV[3])
trim(KEYS[1], KEYS[2], tonumber(ARGV[4]))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('PUBLISH', ARGV[6], 'm\n' .. epoch .. '\n' .. offset .. '\n' .. seq .. '\n' .. ARGV[3])
return {epoch, offset, seq}
";

/// KEYS: pres, presv, noderooms, nodes, node. ARGV: room, node, user id,
/// user JSON, channel, ttl ms.
const PRESENCE_JOIN_LUA: &str = r"
local rec = redis.call('HGET', KEYS[1], ARGV[3])
local r
if rec then r = cjson.decode(rec) else r = {c = {}} end
local first = next(r.c) == nil
r.c[ARGV[2]] = 1
r.u = cjson.decode(ARGV[4])
redis.call('HSET', KEYS[1], ARGV[3], cjson.encode(r))
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[2])
if redis.call('EXISTS', KEYS[5]) == 0 then redis.call('SET', KEYS[5], '1', 'PX', ARGV[6]) end
local v
if first then
  v = redis.call('INCR', KEYS[2])
  redis.call('PUBLISH', ARGV[5], 'j\n' .. ARGV[1] .. '\n' .. v .. '\n' .. ARGV[4])
else
  v = tonumber(redis.call('GET', KEYS[2]) or '0')
end
return {v, redis.call('HGETALL', KEYS[1])}
";

/// KEYS: pres, presv. ARGV: room, node, user id, channel.
const PRESENCE_LEAVE_LUA: &str = r"
local rec = redis.call('HGET', KEYS[1], ARGV[3])
if not rec then return 0 end
local r = cjson.decode(rec)
if r.c[ARGV[2]] == nil then return 0 end
r.c[ARGV[2]] = nil
if next(r.c) == nil then
  redis.call('HDEL', KEYS[1], ARGV[3])
  local v = redis.call('INCR', KEYS[2])
  redis.call('PUBLISH', ARGV[4], 'l\n' .. ARGV[1] .. '\n' .. v .. '\n' .. cjson.encode(r.u))
else
  redis.call('HSET', KEYS[1], ARGV[3], cjson.encode(r))
end
return 1
";

/// KEYS: pres, presv.
const PRESENCE_READ_LUA: &str = r"
return {tonumber(redis.call('GET', KEYS[2]) or '0'), redis.call('HGETALL', KEYS[1])}
";

/// KEYS: nodes, noderooms of the node, its heartbeat. ARGV: node, prefix,
/// channel, force (1: reap even if the heartbeat exists).
const REAP_LUA: &str = r"
if ARGV[4] ~= '1' and redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
local n = 0
for _, room in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local pk = ARGV[2] .. 'pres:' .. room
  local vk = ARGV[2] .. 'presv:' .. room
  local all = redis.call('HGETALL', pk)
  for i = 1, #all, 2 do
    local r = cjson.decode(all[i + 1])
    if r.c[ARGV[1]] then
      r.c[ARGV[1]] = nil
      if next(r.c) == nil then
        redis.call('HDEL', pk, all[i])
        local v = redis.call('INCR', vk)
        redis.call('PUBLISH', ARGV[3], 'l\n' .. room .. '\n' .. v .. '\n' .. cjson.encode(r.u))
        n = n + 1
      else
        redis.call('HSET', pk, all[i], cjson.encode(r))
      end
    end
  end
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('SREM', KEYS[1], ARGV[1])
return n
";

struct Scripts {
    publish: redis::Script,
    join: redis::Script,
    leave: redis::Script,
    read: redis::Script,
    reap: redis::Script,
    owner: redis::Script,
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
    dirty: Mutex<HashMap<(String, String), User>>,
    dirty_notify: Notify,
    typing_tx: mpsc::Sender<String>,
    typing_rx: Mutex<Option<mpsc::Receiver<String>>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// The HTTP address other nodes reach this one at (its heartbeat value).
    advertised: Mutex<Option<String>>,
    /// Engine.IO sessions this node holds (their owner keys are refreshed).
    claimed: owners::Claimed,
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
        let (typing_tx, typing_rx) = mpsc::channel(TYPING_QUEUE);
        let scripts = Scripts {
            publish: redis::Script::new(&format!("{TRIM_LUA}{PUBLISH_LUA}")),
            join: redis::Script::new(PRESENCE_JOIN_LUA),
            leave: redis::Script::new(PRESENCE_LEAVE_LUA),
            read: redis::Script::new(PRESENCE_READ_LUA),
            reap: redis::Script::new(REAP_LUA),
            owner: redis::Script::new(owners::OWNER_LUA),
        };
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
            s.tracker.spawn(subscriber(Arc::clone(s)));
            s.tracker.spawn(presence_task(Arc::clone(s)));
            s.tracker.spawn(typing_task(Arc::clone(s), rx));
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
        let _ = tokio::time::timeout(COMMAND_TIMEOUT, reap(s, &s.node_id, true)).await;
    }
}

/// The [`Broker`] of a node in a Redis cluster.
struct RedisBroker {
    shared: Arc<Shared>,
}

impl Shared {
    fn sink(&self) -> Option<Arc<dyn DeliverySink>> {
        self.sink.get().and_then(Weak::upgrade)
    }

    fn now_ms(&self) -> u64 {
        self.clock
            .get()
            .map_or_else(|| crate::clock::SystemClock.now_ms(), |c| c.now_ms())
    }

    fn mark_dirty(&self, room: &str, user: &User) {
        self.dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((room.to_owned(), user.id.clone()), user.clone());
        self.dirty_notify.notify_one();
    }
}

fn parse_snapshot(version: u64, flat: Vec<String>) -> PresenceSnapshot {
    #[derive(serde::Deserialize)]
    struct Record {
        u: User,
    }
    let users = flat
        .chunks(2)
        .filter_map(|kv| match kv {
            [_, v] => serde_json::from_str::<Record>(v).ok().map(|r| r.u),
            _ => None,
        })
        .collect();
    PresenceSnapshot { version, users }
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
    ) -> BoxFuture<'a, Result<PresenceSnapshot, BrokerError>> {
        async move {
            let s = &self.shared;
            let user_json =
                serde_json::to_string(user).map_err(|e| BrokerError::Unavailable(e.to_string()))?;
            let ttl = u64::try_from(s.config.presence_ttl.as_millis()).unwrap_or(u64::MAX);
            let mut conn = s.conn.clone();
            let (version, flat): (u64, Vec<String>) = s
                .scripts
                .join
                .key(s.keys.presence(room))
                .key(s.keys.presence_version(room))
                .key(s.keys.node_rooms(&s.node_id))
                .key(s.keys.nodes())
                .key(s.keys.node(&s.node_id))
                .arg(room)
                .arg(&s.node_id)
                .arg(&user.id)
                .arg(user_json)
                .arg(s.keys.events())
                .arg(ttl)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            Ok(parse_snapshot(version, flat))
        }
        .boxed()
    }

    fn presence_snapshot<'a>(
        &'a self,
        room: &'a str,
    ) -> BoxFuture<'a, Result<PresenceSnapshot, BrokerError>> {
        read_presence(&self.shared, room).boxed()
    }

    fn presence_changed(&self, room: &str, user: &User) {
        self.shared.mark_dirty(room, user);
    }

    fn typing(&self, room: &str, user: &User, typing: bool) {
        let s = &self.shared;
        let Ok(user_json) = serde_json::to_string(user) else {
            return;
        };
        let event = format!(
            "t\n{}\n{room}\n{}\n{user_json}",
            s.node_id,
            if typing { 1 } else { 0 }
        );
        if s.typing_tx.try_send(event).is_err() {
            metrics::counter!("prise_redis_typing_dropped_total").increment(1);
        }
    }
}

async fn read_presence(s: &Shared, room: &str) -> Result<PresenceSnapshot, BrokerError> {
    let mut conn = s.conn.clone();
    let (version, flat): (u64, Vec<String>) = s
        .scripts
        .read
        .key(s.keys.presence(room))
        .key(s.keys.presence_version(room))
        .invoke_async(&mut conn)
        .await
        .map_err(unavailable)?;
    Ok(parse_snapshot(version, flat))
}

/// Removes `node`'s members from every room's presence (when its heartbeat
/// expired, or with `force` for this node at shutdown).
async fn reap(s: &Shared, node: &str, force: bool) -> Result<i64, redis::RedisError> {
    let mut conn = s.conn.clone();
    s.scripts
        .reap
        .key(s.keys.nodes())
        .key(s.keys.node_rooms(node))
        .key(s.keys.node(node))
        .arg(node)
        .arg(s.keys.prefix())
        .arg(s.keys.events())
        .arg(if force { "1" } else { "0" })
        .invoke_async(&mut conn)
        .await
}

/// Capped exponential backoff with jitter.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self { next: BACKOFF_MIN }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    fn step(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        // Up to +50 % jitter so nodes do not reconnect in lockstep.
        let jitter = rand::random::<u32>() % 500;
        base + base * jitter / 1000
    }
}

/// Receives the channel and feeds the hub, reconnecting on failure.
async fn subscriber(s: Arc<Shared>) {
    let mut backoff = Backoff::new();
    let mut first = true;
    while !s.shutdown.is_cancelled() {
        if !first {
            let delay = backoff.step();
            tokio::select! {
                _ = s.shutdown.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        first = false;
        let (tx, mut rx) = mpsc::channel::<PushInfo>(s.config.event_queue.max(16));
        let overflow = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&overflow);
        let sender = move |info: PushInfo| -> Result<(), ()> {
            if tx.try_send(info).is_err() {
                flag.store(true, Ordering::Relaxed);
            }
            Ok(())
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_push_sender(sender);
        let mut sub: MultiplexedConnection = match s
            .sub_client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                s.ready.store(false, Ordering::Relaxed);
                tracing::warn!(error = %e, "redis subscriber cannot connect; retrying");
                continue;
            }
        };
        if let Err(e) = sub.subscribe(s.keys.events()).await {
            s.ready.store(false, Ordering::Relaxed);
            tracing::warn!(error = %e, "redis subscribe failed; retrying");
            continue;
        }
        if let Err(e) = catch_up(&s).await {
            s.ready.store(false, Ordering::Relaxed);
            tracing::warn!(error = %e, "catching up from redis failed; retrying");
            continue;
        }
        if !s.ready.swap(true, Ordering::Relaxed) {
            tracing::info!(node = %s.node_id, "redis subscription ready");
        }
        metrics::gauge!("prise_redis_ready").set(1.0);
        backoff.reset();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ok = loop {
            tokio::select! {
                biased;
                _ = s.shutdown.cancelled() => return,
                info = rx.recv() => match info {
                    None => break false,
                    Some(info) => match info.kind {
                        PushKind::Message => {
                            if let Some(redis::Value::BulkString(b)) = info.data.last() {
                                handle(&s, &String::from_utf8_lossy(b)).await;
                            }
                        }
                        PushKind::Disconnection => break false,
                        _ => {}
                    },
                },
                _ = ping.tick() => {
                    let pong: Result<Result<String, _>, _> = tokio::time::timeout(
                        COMMAND_TIMEOUT,
                        redis::cmd("PING").query_async(&mut sub),
                    )
                    .await;
                    if !matches!(pong, Ok(Ok(_))) {
                        break false;
                    }
                }
            }
            if overflow.swap(false, Ordering::Relaxed) {
                tracing::warn!("pub/sub queue overflowed; catching up from the streams");
                metrics::counter!("prise_redis_catch_ups_total").increment(1);
                if let Err(e) = catch_up(&s).await {
                    tracing::warn!(error = %e, "catching up from redis failed");
                    break false;
                }
            }
        };
        if !ok {
            metrics::gauge!("prise_redis_ready").set(0.0);
            metrics::counter!("prise_redis_reconnects_total").increment(1);
            s.ready.store(false, Ordering::Relaxed);
            tracing::warn!(node = %s.node_id, "redis subscription lost; reconnecting");
        }
    }
}

/// After a (re)subscription or a lost event: brings every room in memory up
/// to its stream, re-reads presence views and re-registers local members.
async fn catch_up(s: &Shared) -> Result<(), BrokerError> {
    let Some(sink) = s.sink() else {
        return Ok(());
    };
    let mut conn = s.conn.clone();
    let head_seq: Option<u64> = redis::cmd("GET")
        .arg(s.keys.seq())
        .query_async(&mut conn)
        .await
        .map_err(unavailable)?;
    for (room, epoch, delivered) in sink.delivered_rooms() {
        let Some(head) = s
            .store
            .room_head(&room, false)
            .await
            .map_err(store_unavailable)?
        else {
            continue;
        };
        let after = if head.epoch == epoch {
            delivered
        } else {
            Offset::ZERO
        };
        fill(s, &*sink, &room, &head.epoch, after, head.last).await?;
    }
    sink.advance_seq(head_seq.unwrap_or(0));
    s.seen.send_if_modified(|v| {
        let new = head_seq.unwrap_or(0).max(*v);
        let changed = new != *v;
        *v = new;
        changed
    });
    for room in sink.presence_rooms() {
        let snap = read_presence(s, &room).await?;
        if sink.presence_install(&room, snap, true) == PresenceApplied::Refetch {
            let snap = read_presence(s, &room).await?;
            sink.presence_install(&room, snap, true);
        }
    }
    for (room, user) in sink.local_memberships() {
        s.mark_dirty(&room, &user);
    }
    Ok(())
}

/// Offers the messages of `room` with `after < offset <= until`, in pages.
async fn fill(
    s: &Shared,
    sink: &dyn DeliverySink,
    room: &str,
    epoch: &Epoch,
    mut after: Offset,
    until: Offset,
) -> Result<(), BrokerError> {
    while after < until {
        let page = s
            .store
            .range(room, after, until, CATCH_UP_PAGE)
            .await
            .map_err(store_unavailable)?;
        let Some(last) = page.last() else {
            break;
        };
        let last = last.offset;
        for m in page {
            if let Offered::Gap(_) = sink.offer(epoch, Arc::clone(&m)) {
                // Retention dropped what came before: deliver from here.
                sink.deliver(epoch, m);
            }
        }
        after = last;
    }
    Ok(())
}

/// One event from the channel.
async fn handle(s: &Shared, payload: &str) {
    let Some(sink) = s.sink() else {
        return;
    };
    match payload.split_once('\n') {
        Some(("m", rest)) => {
            let mut p = rest.splitn(4, '\n');
            let (Some(epoch), Some(offset), Some(seq), Some(data)) =
                (p.next(), p.next(), p.next(), p.next())
            else {
                return;
            };
            let (Ok(offset), Ok(seq)) = (offset.parse::<u64>(), seq.parse::<u64>()) else {
                return;
            };
            let Ok(message) = decode_payload(data, Offset(offset), seq) else {
                tracing::warn!("undecodable message on the redis channel");
                return;
            };
            let epoch = Epoch(epoch.to_owned());
            if let Offered::Gap(delivered) = sink.offer(&epoch, Arc::clone(&message)) {
                let room = message.room_id.clone();
                let before = Offset(offset - 1);
                if let Err(e) = fill(s, &*sink, &room, &epoch, delivered, before).await {
                    tracing::warn!(error = %e, room = %room, "filling a gap failed");
                }
                if let Offered::Gap(_) = sink.offer(&epoch, Arc::clone(&message)) {
                    sink.deliver(&epoch, message);
                }
            }
            s.seen.send_if_modified(|v| {
                let changed = seq > *v;
                *v = (*v).max(seq);
                changed
            });
        }
        Some((kind @ ("j" | "l"), rest)) => {
            let mut p = rest.splitn(3, '\n');
            let (Some(room), Some(version), Some(user)) = (p.next(), p.next(), p.next()) else {
                return;
            };
            let (Ok(version), Ok(user)) = (version.parse(), serde_json::from_str::<User>(user))
            else {
                return;
            };
            let event = PresenceEvent {
                version,
                joined: kind == "j",
                user,
            };
            if sink.presence_event(room, event) == PresenceApplied::Refetch {
                match read_presence(s, room).await {
                    Ok(snap) => {
                        sink.presence_install(room, snap, false);
                    }
                    Err(e) => tracing::warn!(error = %e, "reading presence failed"),
                }
            }
        }
        Some(("t", rest)) => {
            let mut p = rest.splitn(4, '\n');
            let (Some(node), Some(room), Some(on), Some(user)) =
                (p.next(), p.next(), p.next(), p.next())
            else {
                return;
            };
            if node == s.node_id {
                return;
            }
            if let Ok(user) = serde_json::from_str::<User>(user) {
                sink.remote_typing(room, user, on == "1");
            }
        }
        _ => {}
    }
}

/// Keeps this node's heartbeat, reaps dead nodes, and brings the shared
/// presence in line with the local one.
async fn presence_task(s: Arc<Shared>) {
    let ttl = s.config.presence_ttl.max(Duration::from_millis(300));
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let mut tick = tokio::time::interval(ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = s.shutdown.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = heartbeat(&s, ttl_ms).await {
                    tracing::debug!(error = %e, "presence heartbeat failed");
                }
            }
            _ = s.dirty_notify.notified() => {}
        }
        let dirty = std::mem::take(&mut *s.dirty.lock().unwrap_or_else(|e| e.into_inner()));
        let Some(sink) = s.sink() else {
            return;
        };
        let mut failed = Vec::new();
        for ((room, uid), user) in dirty {
            let r = if sink.local_member(&room, &uid) {
                let broker = RedisBroker {
                    shared: Arc::clone(&s),
                };
                broker.presence_join(&room, &user).await.map(|_| ())
            } else {
                let mut conn = s.conn.clone();
                s.scripts
                    .leave
                    .key(s.keys.presence(&room))
                    .key(s.keys.presence_version(&room))
                    .arg(&room)
                    .arg(&s.node_id)
                    .arg(&uid)
                    .arg(s.keys.events())
                    .invoke_async::<i64>(&mut conn)
                    .await
                    .map(|_| ())
                    .map_err(unavailable)
            };
            if r.is_err() {
                failed.push((room, uid, user));
            }
        }
        if !failed.is_empty() {
            // Kept for the next tick (the set is bounded by local memberships).
            let mut d = s.dirty.lock().unwrap_or_else(|e| e.into_inner());
            for (room, uid, user) in failed {
                d.entry((room, uid)).or_insert(user);
            }
        }
    }
}

async fn heartbeat(s: &Shared, ttl_ms: u64) -> Result<(), redis::RedisError> {
    let mut conn = s.conn.clone();
    // The heartbeat carries the advertised HTTP address (see `owners`).
    let value = s
        .advertised
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_else(|| "1".to_owned());
    let nodes: Vec<String> = redis::pipe()
        .cmd("SET")
        .arg(s.keys.node(&s.node_id))
        .arg(value)
        .arg("PX")
        .arg(ttl_ms)
        .ignore()
        .cmd("SADD")
        .arg(s.keys.nodes())
        .arg(&s.node_id)
        .ignore()
        .cmd("SMEMBERS")
        .arg(s.keys.nodes())
        .query_async::<(Vec<String>,)>(&mut conn)
        .await?
        .0;
    for node in nodes.iter().filter(|n| **n != s.node_id) {
        let n = reap(s, node, false).await?;
        if n >= 0 {
            tracing::info!(node = %node, left = n, "reaped the presence of a dead node");
        }
    }
    Ok(())
}

/// Publishes typing events from the bounded queue.
async fn typing_task(s: Arc<Shared>, mut rx: mpsc::Receiver<String>) {
    loop {
        let event = tokio::select! {
            _ = s.shutdown.cancelled() => return,
            e = rx.recv() => match e { Some(e) => e, None => return },
        };
        let mut conn = s.conn.clone();
        let r: Result<i64, _> = redis::cmd("PUBLISH")
            .arg(s.keys.events())
            .arg(event)
            .query_async(&mut conn)
            .await;
        if r.is_err() {
            metrics::counter!("prise_redis_typing_dropped_total").increment(1);
        }
    }
}
