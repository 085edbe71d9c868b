// Rooms, members and unread counts (assets/state.js): how server events
// change them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  MAX_EVENTS,
  MAX_MESSAGES,
  MAX_PENDING,
  addEvent,
  addNote,
  addPending,
  applyHistory,
  applyJoinAck,
  applyJoinMembers,
  applyPresenceDiff,
  dropPending,
  eventFromMessage,
  eventFromPush,
  insertMessage,
  isChatMessage,
  isGrouped,
  isMine,
  itemTs,
  joinRequest,
  markDisconnected,
  memberCount,
  memberNames,
  newRoom,
  nextActive,
  presenceOrder,
  receiveMessage,
  roomSub,
  savedRooms,
  typingNames,
  unreadTotal,
} from '../../crates/prise-server/assets/state.js';

const msg = (offset, extra = {}) => ({ id: `m${offset}`, offset, roomId: 'r', userName: 'alice', content: `#${offset}`, ...extra });
const keys = (room) => room.items.map((i) => (i.kind === 'msg' ? i.m.offset : `note@${i.key}`));

test('messages are kept in offset order, whatever order they arrive in', () => {
  const room = newRoom('r');
  for (const o of [3, 1, 2, 5]) insertMessage(room, msg(o));
  assert.deepEqual(keys(room), [1, 2, 3, 5]);
  assert.equal(room.lastOffset, 5);
  assert.equal(insertMessage(room, msg(4)).atEnd, false);
  assert.equal(insertMessage(room, msg(6)).atEnd, true);
});

test('a message seen twice (same offset or same id) is kept once', () => {
  const room = newRoom('r');
  assert.ok(insertMessage(room, msg(1)));
  assert.equal(insertMessage(room, msg(1, { id: 'other' })), false);
  assert.equal(insertMessage(room, { id: 'm1', content: 'again' }), false);
  assert.equal(room.items.length, 1);
});

test('a message without an offset goes after the last offset seen', () => {
  const room = newRoom('r');
  insertMessage(room, msg(1));
  insertMessage(room, { id: 'x', content: 'no offset' });
  insertMessage(room, msg(2));
  assert.deepEqual(keys(room), [1, undefined, 2]);
});

test('only the last MAX_MESSAGES are kept; the dropped ones may come again', () => {
  const room = newRoom('r');
  for (let o = 1; o <= MAX_MESSAGES + 10; o++) insertMessage(room, msg(o));
  assert.equal(room.items.length, MAX_MESSAGES);
  assert.equal(room.items[0].m.offset, 11);
  assert.equal(room.offsets.has(1), false);
  assert.equal(room.ids.has('m1'), false);
});

test('notes sit after the last message seen; replayed history slots in before them', () => {
  const room = newRoom('r');
  insertMessage(room, msg(1));
  const n = addNote(room, ['bob joined'], 42);
  assert.equal(n.key, 1.5);
  assert.equal(itemTs(n), 42);
  insertMessage(room, msg(2));
  assert.deepEqual(keys(room), [1, 'note@1.5', 2]);
  // A late message with an earlier offset goes before the note.
  const gap = newRoom('r');
  insertMessage(gap, msg(1));
  insertMessage(gap, msg(3));
  addNote(gap, ['bob left'], 0);
  applyHistory(gap, { messages: [msg(2), msg(4)] });
  assert.deepEqual(keys(gap), [1, 2, 3, 'note@3.5', 4]);
});

test('our broadcast settles the pending send with its id', () => {
  const room = newRoom('r');
  const p = addPending(room, 1, 'hello', 0);
  p.messageId = 'm7';
  const other = addPending(room, 2, 'second', 0);
  const { item, settled } = receiveMessage(room, msg(7));
  assert.ok(item);
  assert.equal(settled, true);
  assert.deepEqual(room.pending, [other]);
  assert.deepEqual(receiveMessage(room, msg(7)), { item: false, settled: false });
});

test('pending sends are capped; drop reports whether it was still there', () => {
  const room = newRoom('r');
  for (let i = 1; i <= MAX_PENDING + 1; i++) addPending(room, i, `m${i}`, i);
  assert.equal(room.pending.length, MAX_PENDING);
  assert.equal(room.pending[0].localId, 2);
  const p = room.pending[0];
  assert.equal(dropPending(room, p), true);
  assert.equal(dropPending(room, p), false);
});

test('a first join asks for presence; a later one resumes from the last offset and epoch', () => {
  const room = newRoom('general');
  assert.deepEqual(joinRequest(room, 'alice'), { type: 'join', room: 'general', name: 'alice' });
  assert.equal(applyJoinAck(room, { offset: 4, epoch: 'e1' }, false), false);
  applyJoinMembers(room, { epoch: 'e1', members: [] }, null);
  insertMessage(room, msg(4));
  assert.deepEqual(joinRequest(room, 'alice'), { type: 'join', room: 'general', name: 'alice', since: 4, epoch: 'e1' });
  assert.equal(room.joined, true);
  assert.equal(room.joining, false);
});

test('a resumed join that cannot line up drops what the room held', () => {
  for (const [why, ack] of [
    ['not recovered', { recovered: false, offset: 9, epoch: 'e1' }],
    ['new epoch', { offset: 9, epoch: 'e2' }],
    ['offset went back', { offset: 1, epoch: 'e1' }],
  ]) {
    const room = newRoom('r');
    room.epoch = 'e1';
    room.joinedOnce = true;
    insertMessage(room, msg(5));
    assert.equal(applyJoinAck(room, ack, true), true, why);
    assert.deepEqual(room.items, [], why);
    assert.equal(room.lastOffset, 0, why);
    assert.equal(room.offsets.size + room.ids.size, 0, why);
  }
  const room = newRoom('r');
  room.epoch = 'e1';
  insertMessage(room, msg(5));
  assert.equal(applyJoinAck(room, { offset: 6, epoch: 'e1', recovered: true }, true), false, 'a clean resume');
  assert.equal(room.items.length, 1);
});

test('the join ack gives the members (we among them) and the epoch', () => {
  const room = newRoom('r');
  room.members.set('gone', { id: 'gone', name: 'old' });
  const me = { id: 'u1', name: 'alice' };
  applyJoinMembers(room, { epoch: 'e3', members: [{ id: 'u2', name: 'bob' }, null, { name: 'no id' }] }, me);
  assert.equal(room.epoch, 'e3');
  assert.deepEqual([...room.members.keys()], ['u2', 'u1']);
});

test('history fills the room id and takes the epoch only if none was known', () => {
  const room = newRoom('r');
  applyHistory(room, { epoch: 'e1', messages: [{ id: 'a', offset: 1 }] });
  assert.equal(room.items[0].m.roomId, 'r');
  assert.equal(room.epoch, 'e1');
  applyHistory(room, { epoch: 'e2', messages: [] });
  assert.equal(room.epoch, 'e1');
  applyHistory(room, {});
});

test('a lost connection fails the sends not yet acknowledged', () => {
  const room = newRoom('r');
  room.joined = true;
  room.typing.set('u2', { name: 'bob' });
  const waiting = addPending(room, 1, 'a', 0);
  const acked = addPending(room, 2, 'b', 0);
  acked.messageId = 'm9';
  markDisconnected(room);
  assert.equal(room.joined, false);
  assert.equal(room.typing.size, 0);
  assert.deepEqual([waiting.status, waiting.error], ['failed', 'Connection lost']);
  assert.equal(acked.status, 'sending');
});

test('members are counted by name, ours first, the rest sorted', () => {
  const room = newRoom('r');
  for (const [id, name] of [['1', 'carol'], ['2', 'alice'], ['3', 'bob'], ['4', 'alice']]) room.members.set(id, { id, name });
  assert.equal(memberNames(room).size, 3);
  assert.deepEqual(presenceOrder(room, 'bob'), ['bob', 'alice', 'carol']);
});

test('who is typing, each name once; unread counts add up', () => {
  const room = newRoom('r');
  room.typing.set('1', { name: 'bob' });
  room.typing.set('2', { name: 'bob' });
  room.typing.set('3', { name: 'carol' });
  assert.deepEqual(typingNames(room), ['bob', 'carol']);
  assert.equal(unreadTotal([{ unread: 2 }, { unread: 0 }, { unread: 5 }]), 7);
});

test('ours: by user id once the server named us, else by name', () => {
  const me = { id: 'u1', name: 'Alice' };
  assert.equal(isMine({ userId: 'u1', userName: 'x' }, me, 'alice'), true);
  assert.equal(isMine({ userId: 'u2', userName: 'alice' }, me, 'alice'), false);
  assert.equal(isMine({ userName: 'alice' }, null, 'alice'), true);
  assert.equal(isMine({ userId: 'u2', userName: 'bob' }, null, 'alice'), false);
});

test('messages group by author within five minutes of the same day', () => {
  const at = (h, m) => new Date(2024, 4, 10, h, m).getTime();
  const prev = { kind: 'msg', m: { userName: 'a', userId: '1', timestamp: at(10, 0) } };
  assert.ok(isGrouped(prev, { userName: 'a', userId: '1', timestamp: at(10, 4) }));
  assert.ok(!isGrouped(prev, { userName: 'a', userId: '1', timestamp: at(10, 6) }));
  assert.ok(!isGrouped(prev, { userName: 'b', userId: '2', timestamp: at(10, 1) }));
  assert.ok(!isGrouped({ kind: 'note', ts: at(10, 0) }, { userName: 'a', userId: '1', timestamp: at(10, 1) }));
  assert.ok(!isGrouped(null, { userName: 'a' }));
  const late = { kind: 'msg', m: { userName: 'a', userId: '1', timestamp: at(23, 58) } };
  assert.ok(!isGrouped(late, { userName: 'a', userId: '1', timestamp: at(23, 58) + 3 * 60000 }), 'not across midnight');
});

test('saved rooms: the list if valid, "general" otherwise', () => {
  assert.deepEqual(savedRooms(null), ['general']);
  assert.deepEqual(savedRooms('general'), ['general']);
  assert.deepEqual(savedRooms([]), []);
  assert.deepEqual(savedRooms(['a', 'a', 'with space', 7, '', 'b']), ['a', 'b']);
});

test('after a room is removed, its neighbour opens', () => {
  assert.equal(nextActive(['a', 'c'], 1), 'c');
  assert.equal(nextActive(['a', 'b'], 2), 'b');
  assert.equal(nextActive([], 0), null);
});

test('the room line: members online, joining or offline', () => {
  assert.equal(roomSub({ joined: true }, 3, true), '3 online');
  assert.equal(roomSub({ joined: false }, 3, true), 'joining…');
  assert.equal(roomSub({ joined: false }, 3, false), 'offline');
});

test('a large room shows the server\'s count and applies its presence diffs', () => {
  const room = newRoom('r');
  const me = { id: 'u0', name: 'me' };
  applyJoinMembers(room, { epoch: 'e', members: [{ id: 'u1', name: 'alice' }], count: 5000 }, me);
  assert.equal(memberCount(room, room.members.size), 5000);
  applyPresenceDiff(room, { room: 'r', joined: [{ id: 'u9', name: 'zed' }], left: [{ id: 'u1', name: 'alice' }], count: 5000 });
  assert.deepEqual([...room.members.keys()].sort(), ['u0', 'u9']);
  assert.equal(room.count, 5000);
  // A server without counts: the list's length.
  const small = newRoom('s');
  applyJoinMembers(small, { members: [{ id: 'u1', name: 'alice' }] }, me);
  assert.equal(memberCount(small, small.members.size), 2);
});

test('named events go to the event log in offset order, once each, bounded', () => {
  const room = newRoom('r');
  const push = (offset) => eventFromPush({ event: 'move', data: { x: offset }, user: { id: 'u', name: 'ann' }, offset }, 1000);
  assert.ok(addEvent(room, push(3)));
  assert.ok(addEvent(room, push(1)));
  assert.equal(addEvent(room, push(3)), false, 'a duplicate offset is dropped');
  // An ephemeral event (no offset) goes last.
  addEvent(room, eventFromPush({ event: 'cursor', data: [1, 2], user: {}, offset: null }, 1000));
  assert.deepEqual(room.events.map((e) => e.offset), [1, 3, null]);
  assert.equal(room.lastOffset, 3, 'an event advances the resume point like a message');
  for (let o = 10; o < 10 + MAX_EVENTS; o++) addEvent(room, push(o));
  assert.equal(room.events.length, MAX_EVENTS);
  assert.ok(addEvent(room, push(1)), 'an offset dropped from the log may come back');
});

test('history splits chat messages from other events', () => {
  const room = newRoom('r');
  applyHistory(room, {
    epoch: 'e1',
    messages: [msg(1), msg(2, { event: 'chat message', content: ['hi', 2] }), msg(3, { event: 'message' })],
  });
  assert.deepEqual(keys(room), [1, 3]);
  assert.equal(room.events.length, 1);
  assert.deepEqual(room.events[0].data, ['hi', 2]);
  assert.equal(room.events[0].event, 'chat message');
  assert.equal(room.events[0].user.name, 'alice');
  assert.ok(isChatMessage({}) && isChatMessage({ event: 'message' }) && !isChatMessage({ event: 'move' }));
  assert.equal(eventFromMessage(msg(7, { event: 'move', timestamp: 5 })).ts, 5);
  // A reset join drops the log with the messages.
  room.joinedOnce = true;
  applyJoinAck(room, { offset: 0, recovered: false }, true);
  assert.equal(room.events.length, 0);
});
