// The rooms the user has joined and how server events change them: pure
// state transitions, no DOM and no socket. The page draws what they leave.

import { GROUP_GAP_MS, ROOM_RE, dayKey, num } from './format.js';

/** Messages kept in memory per room; older ones are dropped from view. */
export const MAX_MESSAGES = 500;
/** Messages asked for when a room is first opened. */
export const HISTORY_LIMIT = 50;
/** Sends awaiting their ack kept per room; the oldest is dropped beyond this. */
export const MAX_PENDING = 50;
/** Named events kept per room in its event log; older ones are dropped. */
export const MAX_EVENTS = 200;

/**
 * One room the user has joined. `items` holds messages and system notes in
 * display order; each item has a sort `key` (a message's offset, or the last
 * offset seen plus one half for a note) so that replayed history slots in
 * before notes that arrived later.
 */
export function newRoom(name) {
  return {
    name,
    items: [],
    offsets: new Set(),
    ids: new Set(),
    lastOffset: 0,
    epoch: null,
    joined: false,
    joinedOnce: false,
    joining: false,
    members: new Map(),
    // The room's whole member count from the server (the member list holds
    // the first page and the changes since); null until known.
    count: null,
    typing: new Map(),
    unread: 0,
    pending: [],
    // Events other than chat messages (`move`, `cursor`, …), in offset
    // order, for the room's event log.
    events: [],
    eventOffsets: new Set(),
  };
}

/** Whether `m` is a chat message (event `message`), not another named event. */
export function isChatMessage(m) {
  return m.event === undefined || m.event === null || m.event === 'message';
}

/** The event-log entry of a stored message of another event name. */
export function eventFromMessage(m) {
  return {
    event: m.event,
    data: m.content,
    user: { id: m.userId, name: m.userName },
    offset: m.offset,
    ts: num(m.timestamp),
  };
}

/** The event-log entry of a live `event` push. */
export function eventFromPush(f, now) {
  return { event: f.event, data: f.data, user: f.user || {}, offset: f.offset, ts: now };
}

/**
 * Adds an entry to the room's event log in offset order (entries without an
 * offset, from ephemeral rooms, go last), dropping the oldest beyond
 * `MAX_EVENTS`. Returns false for a duplicate offset.
 */
export function addEvent(room, e) {
  const offset = Number(e.offset);
  const hasOffset = e.offset !== null && e.offset !== undefined && Number.isFinite(offset);
  if (hasOffset && room.eventOffsets.has(offset)) return false;
  const entry = { ...e, key: hasOffset ? offset : Infinity };
  if (hasOffset) room.eventOffsets.add(offset);
  let i = room.events.length;
  while (i > 0 && room.events[i - 1].key > entry.key) i--;
  room.events.splice(i, 0, entry);
  while (room.events.length > MAX_EVENTS) {
    const gone = room.events.shift();
    if (Number.isFinite(gone.key)) room.eventOffsets.delete(gone.key);
  }
  if (hasOffset && offset > room.lastOffset) room.lastOffset = offset;
  return entry;
}

/** The rooms to open at start: the saved list if it is one, else "general"; invalid and repeated names dropped. */
export function savedRooms(saved) {
  const list = Array.isArray(saved) ? saved : ['general'];
  const out = [];
  for (const name of list) {
    if (typeof name === 'string' && ROOM_RE.test(name) && !out.includes(name)) out.push(name);
  }
  return out;
}

/** Whether `m` was sent by us: by user id once the server named us, else by name. */
export function isMine(m, me, name) {
  if (me && m.userId !== undefined) return m.userId === me.id;
  return m.userName === name;
}

/**
 * Inserts a message in offset order, dropping the oldest items beyond
 * `MAX_MESSAGES`. Returns the new item (with `atEnd` set when it went last),
 * or false for a duplicate (same offset or same id).
 */
export function insertMessage(room, m) {
  const offset = Number(m.offset);
  const hasOffset = Number.isFinite(offset);
  if ((hasOffset && room.offsets.has(offset)) || (m.id && room.ids.has(m.id))) return false;
  const item = { kind: 'msg', key: hasOffset ? offset : room.lastOffset + 0.25, m };
  if (hasOffset) room.offsets.add(offset);
  if (m.id) room.ids.add(m.id);
  let i = room.items.length;
  while (i > 0 && room.items[i - 1].key > item.key) i--;
  room.items.splice(i, 0, item);
  if (hasOffset && offset > room.lastOffset) room.lastOffset = offset;
  while (room.items.length > MAX_MESSAGES) {
    const gone = room.items.shift();
    if (gone.kind === 'msg') {
      room.offsets.delete(Number(gone.m.offset));
      if (gone.m.id) room.ids.delete(gone.m.id);
    }
  }
  item.atEnd = i === room.items.length - 1;
  return item;
}

/** Appends a system note (`parts`: text and nodes) after the last message seen; returns it. */
export function addNote(room, parts, ts) {
  const item = { kind: 'note', key: room.lastOffset + 0.5, parts, ts };
  room.items.push(item);
  while (room.items.length > MAX_MESSAGES) room.items.shift();
  return item;
}

/**
 * A message from the server: inserted, and our pending send it answers
 * settled. Returns the item (false for a duplicate) and whether a pending
 * send was settled.
 */
export function receiveMessage(room, m) {
  const item = insertMessage(room, m);
  const i = room.pending.findIndex((p) => p.messageId && p.messageId === m.id);
  if (i >= 0) room.pending.splice(i, 1);
  return { item, settled: i >= 0 };
}

/** Members by name (one entry per name, whatever number of connections). */
export function memberNames(room) {
  const names = new Map();
  for (const u of room.members.values()) if (u && u.name !== undefined) names.set(u.name, u);
  return names;
}

/** Names of the members, ours (`self`) first, the rest in alphabetical order. */
export function presenceOrder(room, self) {
  return Array.from(memberNames(room).keys()).sort((a, b) => {
    if (a === self) return -1;
    if (b === self) return 1;
    return a.localeCompare(b);
  });
}

/** Who is typing in `room`, each name once. */
export function typingNames(room) {
  return Array.from(new Set(Array.from(room.typing.values(), (t) => t.name)));
}

/** The sum of the rooms' unread counts. */
export function unreadTotal(rooms) {
  let unread = 0;
  for (const r of rooms) unread += r.unread;
  return unread;
}

/**
 * The `join` request for `room` as user `name`: a first join asks for the
 * presence only; a later one (after a reconnect) resumes from the last
 * offset seen, in the epoch it was seen in.
 */
export function joinRequest(room, name) {
  const req = { type: 'join', room: room.name, name };
  if (room.joinedOnce) {
    req.since = room.lastOffset;
    if (room.epoch !== null) req.epoch = room.epoch;
  }
  return req;
}

/**
 * Applies the server's answer to our `join`: the room is joined (its
 * members come next, from `applyJoinMembers`). Returns `reset`: true when a resumed
 * join cannot line up with what we hold (the server could not replay from
 * our offset, the epoch changed, or the offset went back); the room's
 * messages are then dropped.
 */
export function applyJoinAck(room, ack, resume) {
  room.joining = false;
  room.joined = true;
  room.joinedOnce = true;
  const offset = Number(ack.offset);
  // recovered:false means the server could not replay from our offset (the
  // history was reset or retention dropped part of it): start over.
  const reset =
    resume &&
    (ack.recovered === false ||
      (ack.epoch !== undefined && room.epoch !== null && ack.epoch !== room.epoch) ||
      (Number.isFinite(offset) && offset < room.lastOffset));
  if (reset) {
    room.items = [];
    room.offsets.clear();
    room.ids.clear();
    room.events = [];
    room.eventOffsets.clear();
    room.lastOffset = 0;
  }
  return reset;
}

/** After `applyJoinAck` (and its note): the epoch and the member list from the ack. */
export function applyJoinMembers(room, ack, me) {
  if (ack.epoch !== undefined) room.epoch = ack.epoch;
  room.members.clear();
  for (const u of ack.members || []) if (u && u.id !== undefined) room.members.set(u.id, u);
  if (me) room.members.set(me.id, me);
  room.count = Number.isFinite(ack.count) ? ack.count : null;
}

/** A large room's `presence_diff`: who came and went since the last one, and the count. */
export function applyPresenceDiff(room, diff) {
  for (const u of diff.joined || []) if (u && u.id !== undefined) room.members.set(u.id, u);
  for (const u of diff.left || []) if (u && u.id !== undefined) room.members.delete(u.id);
  if (Number.isFinite(diff.count)) room.count = diff.count;
}

/** Members to show as the room's count: the server's count, or the list's length. */
export function memberCount(room, listed) {
  return room.count === null ? listed : Math.max(room.count, listed);
}

/** Applies an answer to `history`: its messages inserted, the epoch taken if none was known. */
export function applyHistory(room, res) {
  if (res.epoch !== undefined && room.epoch === null) room.epoch = res.epoch;
  for (const m of res.messages || []) {
    if (!m) continue;
    if (m.roomId === undefined) m.roomId = room.name;
    if (isChatMessage(m)) insertMessage(room, m);
    else addEvent(room, eventFromMessage(m));
  }
}

/** The connection is gone: no room is joined, nobody is typing, unacknowledged sends failed. */
export function markDisconnected(room) {
  room.joined = false;
  room.joining = false;
  room.typing.clear();
  for (const p of room.pending) {
    if (p.status === 'sending' && !p.messageId) {
      p.status = 'failed';
      p.error = 'Connection lost';
    }
  }
}

/** A send of `content` awaiting its ack, kept (at most `MAX_PENDING`) in `room.pending`. */
export function addPending(room, localId, content, ts) {
  const p = { localId, content, status: 'sending', messageId: null, ts };
  room.pending.push(p);
  if (room.pending.length > MAX_PENDING) room.pending.shift();
  return p;
}

/** Removes `p` from the room's pending sends; false if it was no longer there. */
export function dropPending(room, p) {
  const i = room.pending.indexOf(p);
  if (i < 0) return false;
  room.pending.splice(i, 1);
  return true;
}

/** The room to open after `order[idx]` was removed: the one now at its place, else the last, else null. */
export function nextActive(order, idx) {
  return order[Math.min(idx, order.length - 1)] || null;
}

/** When an item was shown: a message's timestamp, a note's arrival. */
export function itemTs(item) {
  return item.kind === 'msg' ? num(item.m.timestamp) : item.ts;
}

/** Whether message `m` continues the group of `prev`: same author, same day, within `GROUP_GAP_MS`. */
export function isGrouped(prev, m) {
  return (
    prev &&
    prev.kind === 'msg' &&
    prev.m.userName === m.userName &&
    prev.m.userId === m.userId &&
    Math.abs(num(m.timestamp) - num(prev.m.timestamp)) < GROUP_GAP_MS &&
    dayKey(num(m.timestamp)) === dayKey(num(prev.m.timestamp))
  );
}

/** The line under the room's title: members online, or why there is no count. */
export function roomSub(room, online, ready) {
  return room.joined ? `${online} online` : ready ? 'joining…' : 'offline';
}
