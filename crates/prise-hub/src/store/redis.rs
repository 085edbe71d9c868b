//! Redis history (`--redis URL`): every node of a cluster reads and writes
//! the same rooms, so a client can recover on any node.
//!
//! # Layout (under a prefix, `prise:` by default)
//!
//! | key | type | what |
//! |---|---|---|
//! | `room:{name}` | hash | `epoch`, `last` (last offset), `dropped` (seq of the newest message retention dropped) |
//! | `log:{name}` | stream | one entry per message, id `{offset}-0`, fields `s` (seq) and `d` (the message JSON) |
//! | `seq` | string | the hub-wide sequence (`INCR`) |
//! | `rooms` | set | names of rooms with history |
//! | `sess:{pid}` | string | a suspended session (JSON), with a TTL |
//!
//! Stream ids are offsets, so a read `after n` is one `XRANGE log (n+1) until`.
//! Retention by count is exact (`XTRIM MAXLEN`, recording the dropped seq);
//! retention by age expires a room's keys after `retain_age` without a new
//! message (the next message starts a new epoch, which clients see).
//!
//! Appends and head creation are Lua scripts, so each is atomic; the broker's
//! publish script ([`crate::redis_broker`]) assigns offset and seq in the same
//! way and publishes the message in the same script.

use super::{
    HistoryPage, HistoryQuery, HistoryStore, Retention, RoomHead, SessionSnapshot, StoreError,
    new_epoch,
};
use futures_util::future::{BoxFuture, FutureExt};
use prise_proto::message::{Epoch, Message, Offset};
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Default key prefix.
pub const DEFAULT_PREFIX: &str = "prise:";
/// Extra time a suspended session's key is kept after its expiry (the expiry
/// itself is checked against the hub's clock when it is taken).
const SESSION_GRACE_MS: u64 = 60_000;

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (e.g. `prise:`).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }
    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// A room's head hash.
    pub fn meta(&self, room: &str) -> String {
        format!("{}room:{room}", self.prefix)
    }
    /// A room's message stream.
    pub fn log(&self, room: &str) -> String {
        format!("{}log:{room}", self.prefix)
    }
    /// The hub-wide sequence.
    pub fn seq(&self) -> String {
        format!("{}seq", self.prefix)
    }
    /// The set of rooms with history.
    pub fn rooms(&self) -> String {
        format!("{}rooms", self.prefix)
    }
    /// A suspended session.
    pub fn session(&self, pid: &str) -> String {
        format!("{}sess:{pid}", self.prefix)
    }
    /// The answer of an idempotent control call (empty while it runs).
    pub fn idempotency(&self, key: &str) -> String {
        format!("{}idem:{key}", self.prefix)
    }
    /// The pub/sub channel every node listens on.
    pub fn events(&self) -> String {
        format!("{}events", self.prefix)
    }
    /// A room's presence hash (user id → JSON `{n: name, c: {node: 1}}`).
    pub fn presence(&self, room: &str) -> String {
        format!("{}pres:{room}", self.prefix)
    }
    /// A room's presence version (`INCR` per joined/left event).
    pub fn presence_version(&self, room: &str) -> String {
        format!("{}presv:{room}", self.prefix)
    }
    /// The set of live (or not yet reaped) node ids.
    pub fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }
    /// A node's heartbeat (expires after the presence TTL); its value is
    /// the HTTP address the node advertises (or `1`).
    pub fn node(&self, node: &str) -> String {
        format!("{}node:{node}", self.prefix)
    }
    /// The webhook event stream (ids `seq-0`).
    pub fn webhooks(&self) -> String {
        format!("{}webhooks", self.prefix)
    }
    /// The last webhook event seq handed out.
    pub fn webhooks_seq(&self) -> String {
        format!("{}webhooks:seq", self.prefix)
    }
    /// The last webhook event seq delivered.
    pub fn webhooks_cursor(&self) -> String {
        format!("{}webhooks:cursor", self.prefix)
    }
    /// The node that sends webhooks now (a lease with a TTL).
    pub fn webhooks_sender(&self) -> String {
        format!("{}webhooks:sender", self.prefix)
    }
    /// Rooms where a node registered presence.
    pub fn node_rooms(&self, node: &str) -> String {
        format!("{}noderooms:{node}", self.prefix)
    }
}

/// Trims a room's stream to `ARGV retain` entries, remembering the seq of
/// the newest dropped one. Shared by the append and publish scripts.
pub(crate) const TRIM_LUA: &str = r"
local function trim(meta, log, retain)
  local n = redis.call('XLEN', log) - retain
  if n > 0 then
    local old = redis.call('XRANGE', log, '-', '+', 'COUNT', n)
    redis.call('HSET', meta, 'dropped', old[#old][2][2])
    redis.call('XTRIM', log, 'MAXLEN', retain)
  end
end
local function ensure(meta, log, rooms, room, epoch)
  if redis.call('HSETNX', meta, 'epoch', epoch) == 1 then
    redis.call('DEL', log)
    redis.call('HSET', meta, 'last', 0, 'dropped', 0)
    redis.call('SADD', rooms, room)
  end
end
";

/// KEYS: meta, log, rooms. ARGV: create (0/1), epoch candidate, room, ttl ms.
const HEAD_LUA: &str = r"
if ARGV[1] == '1' then
  ensure(KEYS[1], KEYS[2], KEYS[3], ARGV[3], ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
local h = redis.call('HMGET', KEYS[1], 'epoch', 'last')
if not h[1] then return false end
local last = tonumber(h[2])
local first = last + 1
local e = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #e > 0 then first = tonumber(string.match(e[1][1], '^(%d+)')) end
return {h[1], last, first}
";

/// KEYS: seq, rooms, then meta and log per message.
/// ARGV: retain, ttl ms, then room, epoch candidate, offset, seq, payload per message.
const APPEND_LUA: &str = r"
local retain = tonumber(ARGV[1])
local n = (#KEYS - 2) / 2
local maxseq = tonumber(redis.call('GET', KEYS[1]) or '0')
for i = 0, n - 1 do
  local meta, log = KEYS[3 + 2 * i], KEYS[4 + 2 * i]
  local a = 3 + 5 * i
  ensure(meta, log, KEYS[2], ARGV[a], ARGV[a + 1])
  redis.call('HSET', meta, 'last', ARGV[a + 2])
  redis.call('XADD', log, ARGV[a + 2] .. '-0', 's', ARGV[a + 3], 'd', ARGV[a + 4])
  trim(meta, log, retain)
  redis.call('PEXPIRE', meta, ARGV[2])
  redis.call('PEXPIRE', log, ARGV[2])
  local s = tonumber(ARGV[a + 3])
  if s > maxseq then maxseq = s end
end
redis.call('SET', KEYS[1], maxseq)
return n
";

/// KEYS: meta, log. Drops the whole stream, remembering its newest seq as
/// dropped (the head, and so the offsets, stay).
const CLEAR_LUA: &str = r"
local n = redis.call('XLEN', KEYS[2])
if n > 0 then
  local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  redis.call('HSET', KEYS[1], 'dropped', newest[1][2][2])
  redis.call('DEL', KEYS[2])
end
return n
";

/// KEYS: meta, log (atomic view of the head and a range).
/// ARGV: from id, to id, count, reverse (0/1).
const READ_LUA: &str = r"
local last = redis.call('HGET', KEYS[1], 'last')
if not last then return false end
local first = tonumber(last) + 1
local e = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #e > 0 then first = tonumber(string.match(e[1][1], '^(%d+)')) end
local r
if ARGV[4] == '1' then
  r = redis.call('XREVRANGE', KEYS[2], ARGV[2], ARGV[1], 'COUNT', ARGV[3])
else
  r = redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[2], 'COUNT', ARGV[3])
end
return {first, tonumber(redis.call('HGET', KEYS[1], 'dropped') or '0'), r}
";

/// A stream entry as Redis returns it: id and flattened fields.
pub(crate) type Entry = (String, Vec<String>);

/// Decodes a stream entry (`{offset}-0`, `s seq d json`) into a message.
pub(crate) fn decode_entry(entry: &Entry) -> Result<Arc<Message>, StoreError> {
    let (id, fields) = entry;
    let offset: u64 = id
        .split('-')
        .next()
        .and_then(|o| o.parse().ok())
        .ok_or_else(|| StoreError::Database(format!("bad stream id {id}")))?;
    let mut seq = None;
    let mut data = None;
    for pair in fields.chunks(2) {
        if let [k, v] = pair {
            match k.as_str() {
                "s" => seq = v.parse().ok(),
                "d" => data = Some(v),
                _ => {}
            }
        }
    }
    let (Some(seq), Some(data)) = (seq, data) else {
        return Err(StoreError::Database(format!("bad stream entry {id}")));
    };
    decode_payload(data, Offset(offset), seq)
}

/// Decodes a message JSON and sets its offset and seq.
pub(crate) fn decode_payload(
    data: &str,
    offset: Offset,
    seq: u64,
) -> Result<Arc<Message>, StoreError> {
    let mut m: Message =
        serde_json::from_str(data).map_err(|e| StoreError::Database(e.to_string()))?;
    m.offset = offset;
    m.seq = seq;
    Ok(Arc::new(m))
}

/// A message's JSON as stored (offset and seq live beside it).
pub(crate) fn encode_payload(m: &Message) -> String {
    // A Message always serializes: its fields are strings, numbers and a Value.
    serde_json::to_string(m).unwrap_or_default()
}

pub(crate) fn redis_err(e: redis::RedisError) -> StoreError {
    StoreError::Database(format!("redis: {e}"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// History in Redis, shared by every node.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    keys: Keys,
    retention: Retention,
    head: Arc<redis::Script>,
    append: Arc<redis::Script>,
    read: Arc<redis::Script>,
    clear: Arc<redis::Script>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.keys.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store over an open connection.
    pub fn new(conn: ConnectionManager, keys: Keys, retention: Retention) -> Self {
        Self {
            conn,
            keys,
            retention,
            head: Arc::new(redis::Script::new(&format!("{TRIM_LUA}{HEAD_LUA}"))),
            append: Arc::new(redis::Script::new(&format!("{TRIM_LUA}{APPEND_LUA}"))),
            read: Arc::new(redis::Script::new(READ_LUA)),
            clear: Arc::new(redis::Script::new(CLEAR_LUA)),
        }
    }

    /// The key names.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Retention settings.
    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Age retention as a key TTL in milliseconds.
    pub(crate) fn ttl_ms(&self) -> u64 {
        u64::try_from(self.retention.age.as_millis())
            .unwrap_or(u64::MAX)
            .clamp(1, i64::MAX as u64)
    }

    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    async fn read_range(
        &self,
        room: &str,
        from: String,
        to: String,
        count: usize,
        reverse: bool,
    ) -> Result<Option<(u64, u64, Vec<Arc<Message>>)>, StoreError> {
        let mut conn = self.conn();
        let r: Option<(u64, u64, Vec<Entry>)> = self
            .read
            .key(self.keys.meta(room))
            .key(self.keys.log(room))
            .arg(from)
            .arg(to)
            .arg(count.max(1))
            .arg(if reverse { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let Some((first, dropped, entries)) = r else {
            return Ok(None);
        };
        let messages = entries
            .iter()
            .map(decode_entry)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some((first, dropped, messages)))
    }

    /// Messages of `room` with `after < offset <= until` (at most `limit`),
    /// used by the broker to fill gaps in what pub/sub delivered.
    pub(crate) async fn range(
        &self,
        room: &str,
        after: Offset,
        until: Offset,
        limit: usize,
    ) -> Result<Vec<Arc<Message>>, StoreError> {
        if until <= after || limit == 0 {
            return Ok(Vec::new());
        }
        Ok(self
            .read_range(
                room,
                (after.0 + 1).to_string(),
                until.0.to_string(),
                limit,
                false,
            )
            .await?
            .map(|(_, _, m)| m)
            .unwrap_or_default())
    }
}

impl HistoryStore for RedisStore {
    fn room_head<'a>(
        &'a self,
        room: &'a str,
        create: bool,
    ) -> BoxFuture<'a, Result<Option<RoomHead>, StoreError>> {
        async move {
            let mut conn = self.conn();
            let r: Option<(String, u64, u64)> = self
                .head
                .key(self.keys.meta(room))
                .key(self.keys.log(room))
                .key(self.keys.rooms())
                .arg(if create { "1" } else { "0" })
                .arg(new_epoch().0)
                .arg(room)
                .arg(self.ttl_ms())
                .invoke_async(&mut conn)
                .await
                .map_err(redis_err)?;
            Ok(r.map(|(epoch, last, first)| RoomHead {
                epoch: Epoch(epoch),
                last: Offset(last),
                first: Offset(first),
            }))
        }
        .boxed()
    }

    fn append(&self, batch: Vec<Arc<Message>>) -> BoxFuture<'_, Result<(), StoreError>> {
        async move {
            if batch.is_empty() {
                return Ok(());
            }
            let mut inv = self.append.prepare_invoke();
            inv.key(self.keys.seq()).key(self.keys.rooms());
            inv.arg(self.retention.count.max(1)).arg(self.ttl_ms());
            for m in &batch {
                inv.key(self.keys.meta(&m.room_id))
                    .key(self.keys.log(&m.room_id));
                inv.arg(&m.room_id)
                    .arg(new_epoch().0)
                    .arg(m.offset.0)
                    .arg(m.seq)
                    .arg(encode_payload(m));
            }
            let mut conn = self.conn();
            let _: u64 = inv.invoke_async(&mut conn).await.map_err(redis_err)?;
            Ok(())
        }
        .boxed()
    }

    fn read<'a>(
        &'a self,
        room: &'a str,
        query: HistoryQuery,
    ) -> BoxFuture<'a, Result<HistoryPage, StoreError>> {
        async move {
            match query {
                HistoryQuery::After {
                    after,
                    until,
                    limit,
                } => {
                    let r = self
                        .read_range(
                            room,
                            (after.0 + 1).to_string(),
                            until.0.to_string(),
                            limit,
                            false,
                        )
                        .await?;
                    Ok(match r {
                        None => HistoryPage {
                            messages: Vec::new(),
                            complete: after == Offset::ZERO,
                        },
                        Some((first, _, mut messages)) => {
                            if until <= after || limit == 0 {
                                messages.clear();
                            }
                            HistoryPage {
                                messages,
                                complete: first <= after.0 + 1,
                            }
                        }
                    })
                }
                HistoryQuery::Last { count, until } => {
                    let r = self
                        .read_range(room, "-".into(), until.0.to_string(), count, true)
                        .await?;
                    let mut messages = r.map(|(_, _, m)| m).unwrap_or_default();
                    if count == 0 {
                        messages.clear();
                    }
                    messages.reverse();
                    Ok(HistoryPage {
                        messages,
                        complete: true,
                    })
                }
            }
        }
        .boxed()
    }

    fn read_since_seq<'a>(
        &'a self,
        rooms: &'a [String],
        after_seq: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<HistoryPage, StoreError>> {
        async move {
            let mut messages = Vec::new();
            let mut complete = true;
            for room in rooms {
                // Newest first, one more than the limit: seqs grow with
                // offsets within a room, so stop at the first one already seen.
                let Some((_, dropped, newest)) = self
                    .read_range(room, "-".into(), "+".into(), limit + 1, true)
                    .await?
                else {
                    continue;
                };
                if dropped > after_seq {
                    complete = false;
                }
                messages.extend(newest.into_iter().take_while(|m| m.seq > after_seq));
            }
            messages.sort_by_key(|m| m.seq);
            if messages.len() > limit {
                messages.truncate(limit);
                complete = false;
            }
            Ok(HistoryPage { messages, complete })
        }
        .boxed()
    }

    fn max_seq(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        async move {
            let mut conn = self.conn();
            let v: Option<u64> = redis::cmd("GET")
                .arg(self.keys.seq())
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            Ok(v.unwrap_or(0))
        }
        .boxed()
    }

    fn save_session<'a>(
        &'a self,
        pid: &'a str,
        snapshot: SessionSnapshot,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let json = serde_json::to_string(&snapshot)
                .map_err(|e| StoreError::Database(e.to_string()))?;
            let ttl = snapshot
                .expires_at
                .saturating_sub(now_ms())
                .saturating_add(SESSION_GRACE_MS);
            let mut conn = self.conn();
            let () = redis::cmd("SET")
                .arg(self.keys.session(pid))
                .arg(json)
                .arg("PX")
                .arg(ttl)
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            Ok(())
        }
        .boxed()
    }

    fn take_session<'a>(
        &'a self,
        pid: &'a str,
        now_ms: u64,
    ) -> BoxFuture<'a, Result<Option<SessionSnapshot>, StoreError>> {
        async move {
            let mut conn = self.conn();
            let v: Option<String> = redis::cmd("GETDEL")
                .arg(self.keys.session(pid))
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            Ok(
                v.and_then(|s| serde_json::from_str::<SessionSnapshot>(&s).ok())
                    .filter(|s| s.expires_at > now_ms),
            )
        }
        .boxed()
    }

    fn clear<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<usize, StoreError>> {
        async move {
            let mut conn = self.conn();
            let n: usize = self
                .clear
                .key(self.keys.meta(room))
                .key(self.keys.log(room))
                .invoke_async(&mut conn)
                .await
                .map_err(redis_err)?;
            Ok(n)
        }
        .boxed()
    }

    fn rooms(&self, limit: usize) -> BoxFuture<'_, Result<Vec<(String, Offset)>, StoreError>> {
        async move {
            let mut conn = self.conn();
            let mut cursor = 0u64;
            let mut names: Vec<String> = Vec::new();
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SSCAN")
                    .arg(self.keys.rooms())
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(256)
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_err)?;
                names.extend(batch);
                cursor = next;
                if cursor == 0 || names.len() >= limit {
                    break;
                }
            }
            names.sort();
            names.truncate(limit);
            let mut pipe = redis::pipe();
            for n in &names {
                pipe.cmd("HGET").arg(self.keys.meta(n)).arg("last");
            }
            let lasts: Vec<Option<u64>> = pipe.query_async(&mut conn).await.map_err(redis_err)?;
            Ok(names
                .into_iter()
                .zip(lasts)
                .filter_map(|(n, l)| l.map(|l| (n, Offset(l))))
                .collect())
        }
        .boxed()
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        futures_util::future::ready(Ok(())).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::RedisServer;

    #[tokio::test]
    async fn conformance() {
        let server = RedisServer::start();
        let client = redis::Client::open(server.url()).expect("url");
        let conn = client.get_connection_manager().await.expect("connect");
        let store = RedisStore::new(
            conn,
            Keys::new("test:"),
            Retention {
                count: super::super::conformance::RETAIN_COUNT,
                ..Retention::default()
            },
        );
        super::super::conformance::run(&store, true).await;
    }
}
