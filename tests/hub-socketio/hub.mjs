// The hub's Socket.IO event contract, driven by the official JavaScript
// client (socket.io-client from npm) against a real `prise serve`.
//
//   node hub.mjs HTTP_URL TCP_HOST:PORT
//
// Each check runs in three transport modes (polling then upgrade, websocket
// only, polling only). Prints one line per check, then "N passed, M failed";
// exit code 0 only when nothing failed.
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { checks, connected, lineClient, once, timeout } from "../common/harness.mjs";

const BASE = (process.argv[2] || "").replace(/\/$/, "");
const TCP = process.argv[3] || "";
if (!BASE || !TCP) {
  console.error("usage: node hub.mjs HTTP_URL TCP_HOST:PORT");
  process.exit(2);
}
const MODES = { upgrade: {}, websocket: { transports: ["websocket"] }, polling: { transports: ["polling"] } };

const open = new Set();
const { check, finish } = checks({
  limitMs: 15000,
  after: () => {
    for (const s of open) s.disconnect();
    open.clear();
  },
});
let roomSeq = 0;
const room = (p) => `${p}-${process.pid}-${++roomSeq}`;

function client(opts, auth = {}) {
  const s = io(BASE, { forceNew: true, reconnectionDelay: 300, reconnectionDelayMax: 300, auth, ...opts });
  open.add(s);
  return s;
}
const connectedClient = (opts, auth) => connected(client(opts, auth));
const call = (s, ev, arg) => timeout(s.emitWithAck(ev, arg), 5000, `ack of ${ev}`);

for (const [mode, opts] of Object.entries(MODES)) {
  await check(`${mode}: seed chat events (joinRoom, sendMessage with ack, typing, userJoined/userLeft)`, async () => {
    const r = room("chat");
    const alice = await connectedClient(opts, { name: "alice" });
    const bob = await connectedClient(opts, { name: "bob" });
    alice.emit("joinRoom", r);
    // Let alice's join land before bob's (two clients race otherwise).
    while ((await call(alice, "presence", r)).members.length !== 1) await new Promise((res) => setTimeout(res, 10));
    const joined = once(alice, "userJoined");
    bob.emit("joinRoom", r);
    const [user, offset] = await joined;
    assert.equal(user.name, "bob");
    assert.equal(user.roomId, r);
    assert.equal(typeof offset, "string", "every push carries the resume offset");
    const got = once(bob, "message");
    const id = await timeout(alice.emitWithAck("sendMessage", "hello bob"), 5000, "sendMessage ack");
    assert.equal(typeof id, "string");
    const [msg, msgOffset] = await got;
    assert.equal(msg.id, id);
    assert.equal(msg.content, "hello bob");
    assert.equal(msg.userName, "alice");
    assert.equal(msg.roomId, r);
    assert.equal(msg.offset, 1);
    assert.equal(typeof msg.timestamp, "number");
    assert.equal(typeof msgOffset, "string");
    const typing = once(bob, "typing");
    alice.emit("startTyping");
    const [t] = await typing;
    assert.deepEqual([t.userName, t.roomId, t.typing], ["alice", r, true]);
    const stop = once(bob, "typing");
    alice.emit("stopTyping");
    assert.equal((await stop)[0].typing, false);
    const left = once(alice, "userLeft");
    bob.disconnect();
    assert.equal((await left)[0], user.id);
  });

  await check(`${mode}: Socket.IO, TCP and one room space`, async () => {
    const r = room("mixed");
    const web = await connectedClient(opts, { name: "web" });
    const ack = await call(web, "join", r);
    assert.equal(ack.room, r);
    const nc = lineClient(TCP);
    await nc.until("HELLO");
    nc.send("NICK netcat");
    nc.send(`JOIN ${r}`);
    await nc.until(`OK ${r}`);
    const got = once(web, "message");
    nc.send(`SAY ${r} hello from nc`);
    const [m] = await got;
    assert.deepEqual([m.userName, m.content, m.offset], ["netcat", "hello from nc", 1]);
    const p = await call(web, "publish", { room: r, content: "hi nc" });
    assert.equal(p.offset, 2);
    assert.equal(await nc.until(`MSG ${r} 2`), `MSG ${r} 2 web hi nc`);
    nc.close();
  });

  await check(`${mode}: multi-room API (join with since, publish, history, presence, leave, errors)`, async () => {
    const r = room("multi");
    const a = await connectedClient(opts, { name: "ann" });
    const j = await call(a, "join", { room: r });
    assert.deepEqual([j.room, j.offset, j.members.map((m) => m.name)], [r, 0, ["ann"]]);
    for (let i = 1; i <= 3; i++) {
      const p = await call(a, "publish", { room: r, content: { n: i } });
      assert.equal(p.offset, i);
    }
    const h = await call(a, "history", { room: r, limit: 2 });
    assert.deepEqual(h.messages.map((m) => m.content.n), [2, 3]);
    const pr = await call(a, "presence", r);
    assert.deepEqual(pr.members.map((m) => m.name), ["ann"]);
    const b = await connectedClient(opts, { name: "ben" });
    const replay = [];
    b.on("message", (m) => replay.push(m.offset));
    const jb = await call(b, "join", { room: r, since: 1, epoch: j.epoch });
    assert.equal(jb.recovered, true);
    await timeout((async () => { while (replay.length < 2) await new Promise((res) => setTimeout(res, 10)); })(), 5000, "replay");
    assert.deepEqual(replay, [2, 3]);
    // Presence by pages: {room, after?, limit?}, the count and a cursor.
    assert.deepEqual([jb.count, jb.complete, jb.next], [2, true, undefined]);
    const p1 = await call(a, "presence", { room: r, limit: 1 });
    assert.deepEqual([p1.members.map((m) => m.name), p1.count, p1.complete], [["ann"], 2, false]);
    const p2 = await call(a, "presence", { room: r, after: p1.next, limit: 1 });
    assert.deepEqual([p2.members.map((m) => m.name), p2.complete, p2.next], [["ben"], true, undefined]);
    const badCursor = await call(a, "presence", { room: r, after: "not a cursor" });
    assert.equal(badCursor.error.code, "BAD_REQUEST");
    const bad = await call(a, "publish", { room: "not-joined", content: "x" });
    assert.equal(bad.error.code, "NO_ROOM");
    const big = await call(a, "publish", { room: r, content: "x".repeat(70000) });
    assert.equal(big.error.code, "TOO_LARGE");
    const lv = await call(a, "leave", r);
    assert.equal(lv.room, r);
    const err = once(a, "error");
    a.emit("sendMessage", "no room");
    assert.equal((await err)[0].code, "NO_ROOM");
  });

  await check(`${mode}: connection state recovery after a transport loss`, async () => {
    const r = room("recover");
    const pub = await connectedClient(opts, { name: "pub" });
    await call(pub, "join", r);
    const sub = await connectedClient(opts, { name: "sub" });
    await call(sub, "join", r);
    assert.equal(sub.recovered, false);
    const got = [];
    sub.on("message", (m) => got.push(m.content));
    const first = once(sub, "message");
    await call(pub, "publish", { room: r, content: "m1" });
    await first;
    const dropped = once(sub, "disconnect");
    sub.io.engine.close(); // the transport is lost; the client reconnects by itself
    await dropped;
    await call(pub, "publish", { room: r, content: "m2" });
    await call(pub, "publish", { room: r, content: "m3" });
    await once(sub, "connect", 8000);
    assert.equal(sub.recovered, true, "socket.recovered");
    await timeout((async () => { while (got.length < 3) await new Promise((res) => setTimeout(res, 10)); })(), 5000, "missed messages");
    assert.deepEqual(got, ["m1", "m2", "m3"]);
    // The recovered socket is back in the room.
    const live = once(sub, "message");
    await call(pub, "publish", { room: r, content: "m4" });
    assert.equal((await live)[0].content, "m4");
  });
}

await check("upgrade: polling upgrades to websocket", async () => {
  const s = await connectedClient({}, { name: "up" });
  if (s.io.engine.transport.name !== "websocket") await once(s.io.engine, "upgrade");
  assert.equal(s.io.engine.transport.name, "websocket");
});

await check("an unknown event gets an error", async () => {
  const s = await connectedClient({ transports: ["websocket"] });
  const bad = await call(s, "frobnicate", 1);
  assert.equal(bad.error.code, "BAD_REQUEST");
});

finish();
