// The page's connection (assets/connection.js) driven by a fake WebSocket and
// a fake clock: sign-in, requests by id, heartbeat, reconnects with backoff.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fakeClock } from '../common/harness.mjs';
import {
  AUTH_WAIT_MS,
  Connection,
  PING_INTERVAL_MS,
  PONG_TIMEOUT_MS,
  REQUEST_TIMEOUT_MS,
  STABLE_AFTER_MS,
  authFrame,
  closeNotice,
  parseFrame,
  wsUrl,
} from '../../crates/prise-server/assets/connection.js';

/** A WebSocket class whose instances the test opens, feeds and closes. */
function fakeSockets() {
  const made = [];
  class FakeSocket {
    static OPEN = 1;
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.listeners = {};
      made.push(this);
    }
    addEventListener(type, fn) {
      (this.listeners[type] ||= []).push(fn);
    }
    send(data) {
      this.sent.push(JSON.parse(data));
    }
    close(code) {
      this.closedWith = code;
      this.readyState = 3;
    }
    emit(type, ev) {
      for (const fn of this.listeners[type] || []) fn(ev);
    }
    open() {
      this.readyState = 1;
      this.emit('open', {});
    }
    receive(frame) {
      this.emit('message', { data: typeof frame === 'string' ? frame : JSON.stringify(frame) });
    }
    serverClose(code, reason = '') {
      this.readyState = 3;
      this.emit('close', { code, reason });
    }
  }
  return { FakeSocket, made, last: () => made[made.length - 1] };
}

/** A connection as `name` (with `token`), recording what it tells the page. */
function setup({ name = 'alice', token = '', random = 0 } = {}) {
  const clock = fakeClock(1000);
  const sockets = fakeSockets();
  const seen = { status: [], ready: [], frames: [], closed: [], notices: [], signIn: [] };
  const who = { name, token };
  const conn = new Connection({
    url: 'ws://hub/ws',
    credentials: () => who,
    WebSocket: sockets.FakeSocket,
    timers: clock,
    now: clock.now,
    random: () => random,
    hooks: {
      status: (status, text) => seen.status.push([status, text]),
      ready: (user) => seen.ready.push(user),
      frame: (msg) => seen.frames.push(msg),
      closed: (code, reason) => seen.closed.push([code, reason]),
      notice: (text) => seen.notices.push(text),
      signInNeeded: (reason) => seen.signIn.push(reason),
    },
  });
  return { clock, sockets, seen, conn, who };
}

/** Connected and signed in as the server's user `u1`. */
function signedIn(opts) {
  const t = setup(opts);
  t.conn.connect();
  t.sockets.last().open();
  t.sockets.last().receive({ type: 'auth_success', user: { id: 'u1', name: 'alice' } });
  return t;
}

test('the WebSocket URL follows the page: ws for http, wss for https', () => {
  assert.equal(wsUrl({ protocol: 'http:', host: 'h:8080' }), 'ws://h:8080/ws');
  assert.equal(wsUrl({ protocol: 'https:', host: 'chat.example' }), 'wss://chat.example/ws');
});

test('auth carries the token only when there is one', () => {
  assert.deepEqual(authFrame('alice', ''), { type: 'auth', name: 'alice' });
  assert.deepEqual(authFrame('alice', 'jwt'), { type: 'auth', name: 'alice', token: 'jwt' });
});

test('frames that are not JSON objects are ignored', () => {
  assert.deepEqual(parseFrame('{"type":"pong"}'), { type: 'pong' });
  for (const bad of ['not json', '42', 'null', '"text"']) assert.equal(parseFrame(bad), null, bad);
});

test('close codes the user is told about', () => {
  assert.match(closeNotice(1008, 'too fast'), /^Disconnected by the server: too fast\./);
  assert.match(closeNotice(1008, ''), /policy violation/);
  assert.match(closeNotice(1009), /too large/);
  assert.match(closeNotice(1001), /restarting/);
  assert.equal(closeNotice(1006), null);
  assert.equal(closeNotice(1000), null);
});

test('without a name nothing connects', () => {
  const { conn, sockets } = setup({ name: null });
  conn.connect();
  assert.equal(sockets.made.length, 0);
  assert.equal(conn.status, 'idle');
});

test('connect signs in; auth_success makes the connection ready with the server user', () => {
  const { conn, sockets, seen } = setup({ token: 'tok' });
  conn.connect();
  assert.deepEqual(seen.status, [['connecting', 'Connecting…']]);
  const ws = sockets.last();
  assert.equal(ws.url, 'ws://hub/ws');
  ws.open();
  assert.deepEqual(ws.sent, [{ type: 'auth', name: 'alice', token: 'tok' }]);
  assert.equal(conn.ready, false);
  ws.receive({ type: 'auth_success', user: { id: 'u1', name: 'Alice' } });
  assert.equal(conn.ready, true);
  assert.deepEqual(seen.status.at(-1), ['open', 'Connected']);
  assert.deepEqual(seen.ready, [{ id: 'u1', name: 'Alice' }]);
  conn.connect();
  assert.equal(sockets.made.length, 1, 'a second connect keeps the open socket');
});

test('a server that does not answer auth: ready anonymously after the wait', () => {
  const { conn, sockets, seen, clock } = setup();
  conn.connect();
  sockets.last().open();
  clock.advance(AUTH_WAIT_MS - 1);
  assert.equal(conn.ready, false);
  clock.advance(1);
  assert.equal(conn.ready, true);
  assert.deepEqual(seen.ready, [null]);
});

test('an error before sign-in: ready anonymously, and the error reaches the page', () => {
  const { conn, sockets, seen, clock } = setup();
  conn.connect();
  sockets.last().open();
  sockets.last().receive({ type: 'error', code: 'BAD_REQUEST', message: 'unknown type' });
  assert.equal(conn.ready, true);
  assert.deepEqual(seen.ready, [null]);
  assert.equal(seen.frames[0].code, 'BAD_REQUEST');
  clock.advance(AUTH_WAIT_MS);
  assert.equal(seen.ready.length, 1, 'ready once');
});

test('auth_failed asks for sign-in and does not reconnect', () => {
  const { conn, sockets, seen } = setup({ token: 'bad' });
  conn.connect();
  sockets.last().open();
  sockets.last().receive({ type: 'auth_failed', message: 'bad signature' });
  assert.deepEqual(seen.status.at(-1), ['closed', 'Sign-in refused']);
  assert.deepEqual(seen.signIn, ['bad signature']);
  assert.equal(conn.ready, false);
});

test('requests are answered by id; errors carry their code', async () => {
  const { conn, sockets } = signedIn();
  const ws = sockets.last();
  const a = conn.request({ type: 'join', room: 'general' });
  const b = conn.request({ type: 'history', room: 'general' });
  const [ja, jb] = ws.sent.slice(-2);
  assert.deepEqual(ja, { type: 'join', room: 'general', id: 1 });
  assert.equal(jb.id, 2);
  ws.receive({ type: 'error', id: 2, code: 'NO_ROOM', message: 'no such room' });
  ws.receive({ type: 'joined', id: 1, offset: 7 });
  assert.deepEqual(await a, { type: 'joined', id: 1, offset: 7 });
  await assert.rejects(b, (err) => err.code === 'NO_ROOM' && err.message === 'no such room');
  assert.equal(conn.pending.size, 0);
});

test('a frame with an unknown id goes to the page', () => {
  const { sockets, seen } = signedIn();
  sockets.last().receive({ type: 'message', id: 99, message: { content: 'x' } });
  assert.equal(seen.frames.at(-1).id, 99);
});

test('a request fails when not connected, after its timeout, or when the connection is lost', async () => {
  const { conn, sockets, clock } = signedIn();
  const late = conn.request({ type: 'rooms' });
  clock.advance(REQUEST_TIMEOUT_MS);
  await assert.rejects(late, /No answer from the server/);
  const lost = conn.request({ type: 'rooms' });
  sockets.last().serverClose(1006);
  await assert.rejects(lost, /Connection lost/);
  await assert.rejects(conn.request({ type: 'rooms' }), /Not connected/);
  assert.equal(conn.send({ type: 'typing' }), false);
});

test('after a close the page waits with a countdown, then reconnects', () => {
  const { conn, sockets, seen, clock } = signedIn({ random: 1 });
  sockets.last().serverClose(1006, '');
  assert.deepEqual(seen.closed, [[1006, '']]);
  assert.equal(conn.ready, false);
  // First retry: the ceiling is 500 ms; random 1 waits all of it.
  assert.deepEqual(seen.status.at(-1), ['waiting', 'Reconnecting in 1 s']);
  clock.advance(499);
  assert.equal(sockets.made.length, 1);
  clock.advance(1);
  assert.equal(sockets.made.length, 2);
  assert.deepEqual(seen.status.at(-1), ['connecting', 'Connecting…']);
});

test('the countdown counts whole seconds down', () => {
  const { sockets, seen, clock } = signedIn({ random: 1 });
  for (let i = 0; i < 4; i++) {
    sockets.last().serverClose(1006);
    clock.advance(10000);
  }
  sockets.last().serverClose(1006); // fifth retry: 8 s
  assert.deepEqual(seen.status.at(-1), ['waiting', 'Reconnecting in 8 s']);
  clock.advance(500);
  assert.deepEqual(seen.status.at(-1), ['waiting', 'Reconnecting in 8 s']);
  clock.advance(1000);
  assert.deepEqual(seen.status.at(-1), ['waiting', 'Reconnecting in 7 s']);
});

test('failed connects back off exponentially up to the cap', () => {
  const { conn, sockets, clock } = setup({ random: 1 });
  conn.connect();
  const waits = [];
  for (let i = 0; i < 8; i++) {
    const before = clock.now();
    sockets.last().serverClose(1006);
    const n = sockets.made.length;
    while (sockets.made.length === n) clock.advance(10);
    waits.push(clock.now() - before);
  }
  assert.deepEqual(waits, [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
});

test('a connection that stays up resets the backoff', () => {
  const { conn, sockets, clock } = signedIn({ random: 1 });
  for (let i = 0; i < 3; i++) {
    sockets.last().serverClose(1006);
    clock.advance(15000);
    sockets.last().open();
    sockets.last().receive({ type: 'auth_success', user: null });
  }
  assert.equal(conn.attempt, 3, 'each short-lived connection counts');
  clock.advance(STABLE_AFTER_MS);
  assert.equal(conn.attempt, 0);
});

test('heartbeat: a ping each interval; no pong drops the socket and reconnects', () => {
  const { conn, sockets, seen, clock } = signedIn();
  const ws = sockets.last();
  clock.advance(PING_INTERVAL_MS);
  assert.equal(ws.sent.at(-1).type, 'ping');
  ws.receive({ type: 'pong' });
  clock.advance(PONG_TIMEOUT_MS);
  assert.equal(conn.ready, true, 'answered in time');
  clock.advance(PING_INTERVAL_MS - PONG_TIMEOUT_MS);
  assert.equal(ws.sent.filter((f) => f.type === 'ping').length, 2);
  clock.advance(PONG_TIMEOUT_MS);
  assert.deepEqual(seen.closed, [[4000, 'heartbeat timeout']]);
  assert.equal(ws.closedWith, 1000, 'the dead socket is closed');
  assert.equal(seen.status.at(-1)[0], 'waiting');
  ws.serverClose(1006);
  assert.equal(seen.closed.length, 1, 'events of a dropped socket are ignored');
});

test('close 4001 asks for sign-in and does not reconnect', () => {
  const { sockets, seen, clock } = signedIn();
  sockets.last().serverClose(4001, 'token expired');
  assert.deepEqual(seen.status.at(-1), ['closed', 'Signed out']);
  assert.deepEqual(seen.signIn, ['token expired']);
  clock.advance(60000);
  assert.equal(sockets.made.length, 1);
});

test('a restarting server is announced', () => {
  const { sockets, seen } = signedIn();
  sockets.last().serverClose(1001);
  assert.deepEqual(seen.notices, ['The server is restarting. Reconnecting…']);
});

test('restart connects anew at once, with the new credentials and a fresh backoff', () => {
  const { conn, sockets, who } = signedIn();
  sockets.last().serverClose(1006);
  who.name = 'bob';
  conn.restart();
  assert.equal(sockets.made.length, 2);
  assert.equal(conn.attempt, 0);
  sockets.last().open();
  assert.deepEqual(sockets.last().sent[0], { type: 'auth', name: 'bob' });
});

test('retry now drops the socket and reconnects without waiting', () => {
  const { conn, sockets, seen } = signedIn();
  conn.retryNow();
  assert.equal(seen.closed.at(-1)[1], 'reconnect');
  assert.equal(sockets.made.length, 2);
  assert.equal(seen.status.at(-1)[0], 'connecting');
});

test('a WebSocket that cannot be made schedules a retry', () => {
  const clock = fakeClock();
  const seen = [];
  const conn = new Connection({
    url: 'bad',
    credentials: () => ({ name: 'a' }),
    WebSocket: class {
      constructor() {
        throw new SyntaxError('bad url');
      }
    },
    timers: clock,
    now: clock.now,
    random: () => 0,
    hooks: { status: (s) => seen.push(s) },
  });
  conn.connect();
  assert.deepEqual(seen, ['connecting', 'waiting']);
  assert.equal(conn.attempt, 1);
});
