// Apps on prise with the official socket.io-client, a WebSocket client and
// the TCP line protocol: relayed events with and without echo, namespaces,
// an ephemeral room, max_members, client_publish = false, a personal room
// reached from the HTTP API, EMIT across the three transports, and the
// documented refusals. The server runs from tests/apps/prise.toml alone.
//   node apps.mjs   (PRISE_BIN: the binary; default target/debug/prise)

import assert from "node:assert/strict";
import path from "node:path";
import { io } from "socket.io-client";
import WebSocket from "ws";
import { checks, connected, jsonSocket, jwt, lineClient, once, startPrise, timeout } from "../common/harness.mjs";

const ROOT = path.resolve(import.meta.dirname, "..", "..");
const BIN = process.env.PRISE_BIN || path.join(ROOT, "target", "debug", "prise");
const SECRET = "apps-suite-secret";
const API_KEY = "apps-suite-key";

const server = await startPrise(["--config", path.join(import.meta.dirname, "prise.toml")], { bin: BIN });
const HTTP = `http://${server.addrs.http}`;
const TCP = server.addrs.tcp;

const open = [];
const { check, finish } = checks({
  after: () => {
    for (const c of open.splice(0)) c.close();
  },
});

/** A connected Socket.IO socket of namespace `nsp` (websocket only). */
async function sio(nsp = "/", auth = {}) {
  const s = io(`${HTTP}${nsp}`, { transports: ["websocket"], reconnection: false, auth, forceNew: true });
  open.push(s);
  return connected(s);
}

/** A WebSocket JSON client of /ws (see `jsonSocket`). */
async function wsClient() {
  const c = await jsonSocket(WebSocket, `ws://${server.addrs.http}/ws`);
  open.push(c);
  return c;
}

/** The ack of `emit(event, ...args)`, within 8 s. */
const call = (s, event, ...args) => timeout(s.emitWithAck(event, ...args), 8000, `ack of ${event}`);

/** No `event` reaches `s` before a round trip of its own is answered. */
async function nothing(s, event) {
  let got = null;
  const on = (...a) => (got = a);
  s.on(event, on);
  await call(s, "presence", "anything");
  await call(s, "presence", "anything");
  s.off(event, on);
  assert.equal(got, null, `unexpected ${event}: ${JSON.stringify(got)}`);
}

async function api(body) {
  const res = await fetch(`${HTTP}/api/publish`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

const exp = () => Math.floor(Date.now() / 1000) + 3600;

await check("a relayed event reaches the room with its name and arguments, the sender too (echo)", async () => {
  const a = await sio("/", { name: "ann" });
  const b = await sio("/", { name: "bob" });
  await call(a, "join", "r1");
  await call(b, "join", "r1");
  const atB = once(b, "chat message");
  const atA = once(a, "chat message");
  const ack = await call(a, "chat message", { text: "hi" }, 2);
  assert.deepEqual(ack, { rooms: [{ room: "r1", offset: 1 }] });
  const [data, two, offset] = await atB;
  assert.deepEqual([data, two], [{ text: "hi" }, 2], "arguments unchanged");
  assert.equal(typeof offset, "string", "the recovery offset comes last");
  await atA;
  const hist = await call(b, "history", { room: "r1" });
  assert.equal(hist.messages[0].event, "chat message", "stored with its name");
  assert.deepEqual(hist.messages[0].content, [{ text: "hi" }, 2]);
});

await check("without echo the sender does not get its own event; namespaces are apart", async () => {
  const a = await sio("/game", { name: "ann" });
  const b = await sio("/game", { name: "bob" });
  const root = await sio("/", { name: "rudy" });
  for (const s of [a, b, root]) await call(s, "join", "a");
  const atB = once(b, "move");
  const ack = await call(a, "move", { x: 3 });
  assert.deepEqual(ack.rooms, [{ room: "a", offset: 1 }], "named in the socket's namespace");
  assert.deepEqual((await atB)[0], { x: 3 });
  await nothing(a, "move");
  await nothing(root, "move");
  const joined = await call(root, "join", "a");
  assert.equal(joined.offset, 0, "room a of / is not room a of /game");
});

await check("an ephemeral room delivers without an offset and keeps no history", async () => {
  const a = await sio("/", { name: "ann" });
  const b = await sio("/", { name: "bob" });
  await call(a, "join", "cursor:doc");
  await call(b, "join", "cursor:doc");
  const atB = once(b, "cursor");
  const ack = await call(a, "cursor", { x: 1, y: 2 });
  assert.deepEqual(ack, { rooms: [{ room: "cursor:doc", offset: null }] });
  assert.deepEqual((await atB)[0], { x: 1, y: 2 });
  const hist = await call(b, "history", { room: "cursor:doc" });
  assert.deepEqual(hist.messages, []);
  assert.equal(hist.complete, true);
});

await check("max_members: a third user is refused ROOM_FULL", async () => {
  const users = [];
  for (const name of ["u1", "u2", "u3"]) users.push(await sio("/", { name }));
  assert.equal((await call(users[0], "join", "small")).room, "small");
  assert.equal((await call(users[1], "join", "small")).room, "small");
  const full = await call(users[2], "join", "small");
  assert.equal(full.error.code, "ROOM_FULL", JSON.stringify(full));
});

await check("client_publish = false: clients are refused FORBIDDEN, the API publishes", async () => {
  const a = await sio("/", { name: "ann" });
  await call(a, "join", "news");
  const pub = await call(a, "publish", { room: "news", content: "x" });
  assert.equal(pub.error.code, "FORBIDDEN");
  assert.match(pub.error.message, /only the HTTP API/);
  const relayed = await call(a, "flash", "x");
  assert.equal(relayed.error.code, "FORBIDDEN");
  const got = once(a, "message");
  const res = await api({ room: "news", content: "extra!" });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal((await got)[0].content, "extra!");
});

await check("a personal room: the API reaches both sessions of one user, nobody else", async () => {
  const token = jwt({ sub: "alice", name: "alice", exp: exp() }, SECRET);
  const one = await sio("/", { token });
  const two = await sio("/", { token });
  const bob = await sio("/", { token: jwt({ sub: "bob", exp: exp() }, SECRET) });
  const got = [once(one, "notify"), once(two, "notify")];
  const res = await api({ room: "user:alice", event: "notify", content: { unread: 3 } });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  for (const g of got) assert.deepEqual((await g)[0], { unread: 3 });
  await nothing(bob, "notify");
  const intrude = await call(bob, "join", "user:alice");
  assert.equal(intrude.error.code, "FORBIDDEN");
});

await check("TCP EMIT reaches Socket.IO and WebSocket clients, and their events reach TCP", async () => {
  const tcp = lineClient(TCP);
  open.push(tcp);
  await tcp.until("HELLO");
  tcp.send("NICK tina");
  await tcp.until("OK tina");
  tcp.send("JOIN r2");
  await tcp.until("OK r2");
  const s = await sio("/", { name: "sio" });
  await call(s, "join", "r2");
  const ws = await wsClient();
  ws.send({ type: "auth", name: "wes" });
  await ws.next((f) => f.type === "auth_success", "auth_success");
  await ws.request({ type: "join", room: "r2" });

  const atSio = once(s, "move");
  tcp.send('EMIT r2 move {"x":1}');
  assert.equal(await tcp.until(/^OK \d+$/), "OK 1");
  assert.deepEqual((await atSio)[0], { x: 1 });
  const ev = await ws.next((f) => f.type === "event", "event frame");
  assert.deepEqual(ev, { type: "event", room: "r2", event: "move", data: { x: 1 }, user: { id: ev.user.id, name: "tina" }, offset: 1 });

  await call(s, "chat message", "from sio");
  assert.equal(await tcp.until("EVENT r2 2"), 'EVENT r2 2 sio "chat message" "from sio"');
  const again = once(s, "move");
  const ack = await ws.request({ type: "emit", room: "r2", event: "move", data: [1, 2] });
  assert.deepEqual([ack.type, ack.room, ack.offset], ["ack", "r2", 3]);
  assert.equal(await tcp.until("EVENT r2 3"), "EVENT r2 3 wes move [1,2]");
  const [data, seq] = await again;
  assert.deepEqual(data, [1, 2], "one argument: the data");
  assert.equal(typeof seq, "string");
});

await check("bad input gets its documented error and nothing acked is lost", async () => {
  // An unknown namespace.
  const lost = io(`${HTTP}/nowhere`, { transports: ["websocket"], reconnection: false, forceNew: true });
  open.push(lost);
  const [err] = await once(lost, "connect_error");
  assert.equal(err.message, "Invalid namespace");
  assert.equal(err.data.code, "UNKNOWN_NAMESPACE");
  // A relay from a socket in no room, and to a room the sender is not in.
  const g = await sio("/game", { name: "ghost" });
  assert.equal((await call(g, "move", 1)).error.code, "NO_ROOM");
  const ws = await wsClient();
  ws.send({ type: "auth", name: "wes" });
  await ws.next((f) => f.type === "auth_success", "auth_success");
  const notIn = await ws.request({ type: "emit", room: "elsewhere", event: "move", data: 1 });
  assert.deepEqual([notIn.type, notIn.code], ["error", "NO_ROOM"]);
  const tcp = lineClient(TCP);
  open.push(tcp);
  tcp.send("EMIT elsewhere move 1");
  assert.match(await tcp.until("ERR"), /^ERR NO_ROOM /);
  tcp.send("EMIT /nowhere:a move 1");
  assert.match(await tcp.until("ERR"), /^ERR UNKNOWN_NAMESPACE /);
  // An event name over 64 bytes, on every transport.
  const s = await sio("/", { name: "long" });
  await call(s, "join", "r3");
  const long = "e".repeat(65);
  const tooLong = await call(s, long, 1);
  assert.equal(tooLong.error.code, "BAD_REQUEST");
  assert.match(tooLong.error.message, /64 bytes/);
  await ws.request({ type: "join", room: "r3" });
  const wsLong = await ws.request({ type: "emit", room: "r3", event: long, data: 1 });
  assert.deepEqual([wsLong.type, wsLong.code], ["error", "BAD_REQUEST"]);
  tcp.send("JOIN r3");
  await tcp.until("OK r3");
  tcp.send(`EMIT r3 ${long} 1`);
  assert.match(await tcp.until("ERR"), /^ERR BAD_REQUEST invalid event name/);
  // Without an rpc hook, an RPC is not available.
  const h = await sio("/hooked", { name: "hook" });
  assert.equal((await call(h, "move", 1)).error.code, "NOT_AVAILABLE");
  // Every acked event is in the history, in order.
  const acked = [];
  for (let i = 0; i < 20; i++) acked.push((await call(s, "tick", i)).rooms[0].offset);
  const hist = await call(s, "history", { room: "r3", limit: 100 });
  assert.deepEqual(hist.messages.map((m) => m.offset), acked);
  assert.deepEqual(hist.messages.map((m) => m.content), [...Array(20).keys()]);
});

await server.stop();
finish();
