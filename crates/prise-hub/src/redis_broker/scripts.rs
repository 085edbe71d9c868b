//! The Lua scripts of the Redis engine. Each runs atomically in Redis, so
//! whatever a script changes and publishes is seen by every node in one
//! order: assigning offset and seq with publishing the message, changing a
//! room's members with bumping its presence version and publishing
//! `joined`/`left`, reaping a dead node's members.
//!
//! With webhooks on, the presence scripts also append the transitions they
//! make (a user's first session in the cluster entering a room, its last
//! leaving, the room becoming occupied or vacated) to the webhook stream,
//! in the same atomic step: exactly one event per transition, whichever
//! node made it, a dead node's reaped members included.
//!
//! The owner script of Engine.IO sessions lives with them in `owners.rs`.

/// Appends one webhook event (`body`, JSON) to `stream` under the next seq
/// of `seqkey`, when `on` is `'1'`; at most about a million are kept.
const WEBHOOK_LUA: &str = r"
local function webhook(on, stream, seqkey, body)
  if on ~= '1' then return end
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local seq = redis.call('INCR', seqkey)
  redis.call('XADD', stream, 'MAXLEN', '~', 1000000, seq .. '-0', 'at', ms, 'e', body)
end
";

use super::owners;
use crate::store::redis::TRIM_LUA;

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

/// KEYS: pres, presv, noderooms, nodes, node, webhooks, webhooks seq.
/// ARGV: room, node, user id, user JSON, channel, ttl ms, webhooks on.
/// O(1) in the room's size: answers 1 when the user is new to the room,
/// not the members.
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
if first then
  local v = redis.call('INCR', KEYS[2])
  redis.call('PUBLISH', ARGV[5], 'j\n' .. ARGV[1] .. '\n' .. v .. '\n' .. ARGV[4])
  if redis.call('HLEN', KEYS[1]) == 1 then
    webhook(ARGV[7], KEYS[6], KEYS[7], cjson.encode({event = 'room_occupied', room = ARGV[1]}))
  end
  webhook(ARGV[7], KEYS[6], KEYS[7],
    cjson.encode({event = 'member_joined', room = ARGV[1], user = cjson.decode(ARGV[4])}))
end
return first and 1 or 0
";

/// KEYS: pres, presv, webhooks, webhooks seq. ARGV: room, node, user id,
/// channel, webhooks on.
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
  webhook(ARGV[5], KEYS[3], KEYS[4],
    cjson.encode({event = 'member_left', room = ARGV[1], user = r.u}))
  if redis.call('HLEN', KEYS[1]) == 0 then
    webhook(ARGV[5], KEYS[3], KEYS[4], cjson.encode({event = 'room_vacated', room = ARGV[1]}))
  end
else
  redis.call('HSET', KEYS[1], ARGV[3], cjson.encode(r))
end
return 1
";

/// KEYS: nodes, noderooms of the node, its heartbeat. ARGV: node, prefix,
/// channel, force (1: reap even if the heartbeat exists), webhooks on. Each room's hash
/// is walked by pages (HSCAN); a member seen twice has lost this node on the
/// first visit and is skipped on the second.
const REAP_LUA: &str = r"
if ARGV[4] ~= '1' and redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
local n = 0
for _, room in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local pk = ARGV[2] .. 'pres:' .. room
  local vk = ARGV[2] .. 'presv:' .. room
  local cursor = '0'
  repeat
    local scan = redis.call('HSCAN', pk, cursor, 'COUNT', 1000)
    cursor = scan[1]
    local page = scan[2]
    for i = 1, #page, 2 do
      local r = cjson.decode(page[i + 1])
      if r.c[ARGV[1]] then
        r.c[ARGV[1]] = nil
        if next(r.c) == nil then
          redis.call('HDEL', pk, page[i])
          local v = redis.call('INCR', vk)
          redis.call('PUBLISH', ARGV[3], 'l\n' .. room .. '\n' .. v .. '\n' .. cjson.encode(r.u))
          webhook(ARGV[5], ARGV[2] .. 'webhooks', ARGV[2] .. 'webhooks:seq',
            cjson.encode({event = 'member_left', room = room, user = r.u}))
          if redis.call('HLEN', pk) == 0 then
            webhook(ARGV[5], ARGV[2] .. 'webhooks', ARGV[2] .. 'webhooks:seq',
              cjson.encode({event = 'room_vacated', room = room}))
          end
          n = n + 1
        else
          redis.call('HSET', pk, page[i], cjson.encode(r))
        end
      end
    end
  until cursor == '0'
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('SREM', KEYS[1], ARGV[1])
return n
";

/// The scripts of one engine, each invoked by its hash (`EVALSHA`) and
/// loaded into Redis on first use.
pub(super) struct Scripts {
    pub(super) publish: redis::Script,
    pub(super) join: redis::Script,
    pub(super) leave: redis::Script,
    pub(super) reap: redis::Script,
    pub(super) owner: redis::Script,
    /// KEYS: webhooks, webhooks seq. ARGV: event JSON, …: appends them.
    pub(super) webhook_append: redis::Script,
    /// KEYS: the sender lease. ARGV: node, ttl ms: takes or keeps it (1).
    pub(super) webhook_lease: redis::Script,
    /// KEYS: the sender lease, the cursor. ARGV: node, seq: moves the
    /// cursor while the node holds the lease (1).
    pub(super) webhook_cursor: redis::Script,
}

/// See [`Scripts::webhook_append`].
const WEBHOOK_APPEND_LUA: &str = r"
for i = 1, #ARGV do webhook('1', KEYS[1], KEYS[2], ARGV[i]) end
return #ARGV
";

/// See [`Scripts::webhook_lease`].
const WEBHOOK_LEASE_LUA: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// See [`Scripts::webhook_cursor`].
const WEBHOOK_CURSOR_LUA: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
return 1
";

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            publish: redis::Script::new(&format!("{TRIM_LUA}{PUBLISH_LUA}")),
            join: redis::Script::new(&format!("{WEBHOOK_LUA}{PRESENCE_JOIN_LUA}")),
            leave: redis::Script::new(&format!("{WEBHOOK_LUA}{PRESENCE_LEAVE_LUA}")),
            reap: redis::Script::new(&format!("{WEBHOOK_LUA}{REAP_LUA}")),
            owner: redis::Script::new(owners::OWNER_LUA),
            webhook_append: redis::Script::new(&format!("{WEBHOOK_LUA}{WEBHOOK_APPEND_LUA}")),
            webhook_lease: redis::Script::new(WEBHOOK_LEASE_LUA),
            webhook_cursor: redis::Script::new(WEBHOOK_CURSOR_LUA),
        }
    }
}
