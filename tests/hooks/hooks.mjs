// Backends in the loop: prise's hooks against a real backend
// (tests/hooks/backend.py, Python standard library, checking every
// signature), driven by the official socket.io-client, a WebSocket JSON
// client and the TCP line protocol: a refused and a cookie-based connect,
// granted rooms, a denied join, a rewritten and a refused publish (neither
// in history as sent), RPCs with a result and with an error, a refresh that
// extends a session and one that ends it; then the backend stopped: every
// hook fails closed with HOOK_UNAVAILABLE and the hub stays responsive.
//   node hooks.mjs [backend.py|backend.mjs]   (PRISE_BIN: the binary;
//   PYTHON: the interpreter of backend.py)

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { io } from "socket.io-client";
import WebSocket from "ws";
import { checks, jsonSocket, lineClient, once, sleep, startPrise, timeout } from "../common/harness.mjs";

const ROOT = path.resolve(import.meta.dirname, "..", "..");
const BIN = process.env.PRISE_BIN || path.join(ROOT, "target", "debug", "prise");
const PYTHON = process.env.PYTHON || "python3";
const SECRET = "hooks-suite-secret";

const dir = fs.mkdtempSync(`${os.tmpdir()}/prise-hooks-`);
const secretFile = path.join(dir, "secret");
fs.writeFileSync(secretFile, `${SECRET}\n`);

// The backend, in Python or Node.js: prints "listening PORT" once it serves.
const script = path.join(import.meta.dirname, process.argv[2] || "backend.py");
const backend = spawn(script.endsWith(".py") ? PYTHON : process.execPath, [script, secretFile], {
  stdio: ["ignore", "pipe", "inherit"],
});
const backendExited = new Promise((res) => backend.once("exit", res));
const port = await timeout(
  new Promise((res) =>
    readline.createInterface({ input: backend.stdout }).on("line", (l) => {
      const m = /^listening (\d+)/.exec(l);
      if (m) res(Number(m[1]));
    }),
  ),
  10000,
  "the backend's listening line",
);
const BACKEND = `http://127.0.0.1:${port}`;

const server = await startPrise(
  [
    "--config",
    path.join(import.meta.dirname, "prise.toml"),
    "--hook-url",
    `${BACKEND}/hooks`,
    "--hook-secret-file",
    secretFile,
  ],
  { bin: BIN },
);
const HTTP = `http://${server.addrs.http}`;
const TCP = server.addrs.tcp;

const open = [];
const { check, finish } = checks({
  after: () => {
    for (const c of open.splice(0)) c.close();
  },
});

/** A Socket.IO socket (websocket only); resolves once connected or rejects with the connect_error. */
function sio({ auth = {}, cookie } = {}) {
  const s = io(HTTP, {
    transports: ["websocket"],
    reconnection: false,
    auth,
    forceNew: true,
    extraHeaders: cookie ? { cookie } : {},
  });
  open.push(s);
  return timeout(
    new Promise((res, rej) => {
      s.once("connect", () => res(s));
      s.once("connect_error", (e) => rej(e));
    }),
    8000,
    "socket.io connect",
  );
}

/** A WebSocket JSON client of /ws?QUERY (see `jsonSocket`). */
async function wsClient(query = "") {
  const c = await jsonSocket(WebSocket, `ws://${server.addrs.http}/ws${query ? `?${query}` : ""}`);
  open.push(c);
  return c;
}

function tcpClient() {
  const c = lineClient(TCP);
  open.push(c);
  return c;
}

const call = (s, event, ...args) => timeout(s.emitWithAck(event, ...args), 8000, `ack of ${event}`);

async function calls() {
  const r = await fetch(`${BACKEND}/calls`);
  return r.json();
}

await check("a refused connect reaches every transport with the backend's code", async () => {
  const err = await sio({ auth: { token: "banned" } }).then(
    () => null,
    (e) => e,
  );
  assert.ok(err, "connect must fail");
  assert.equal(err.data.code, "BANNED");
  assert.equal(err.data.reason, "this client is banned");
  const ws = await wsClient("user=banned");
  const failed = await ws.next((f) => f.type === "auth_failed", "auth_failed");
  assert.deepEqual([failed.code, failed.message], ["BANNED", "this client is banned"]);
  assert.equal((await ws.closed).code, 4001);
  await fetch(`${BACKEND}/refuse-tcp`);
  const tcp = tcpClient();
  assert.equal(await tcp.until("ERR"), "ERR LOCKDOWN no line clients now");
});

await check("a cookie-based connect names the user; the backend sees headers and auth", async () => {
  const s = await sio({ cookie: "theme=dark; session=alice", auth: { device: "phone" } });
  await call(s, "join", "lobby");
  const p = await call(s, "presence", "lobby");
  assert.deepEqual(
    p.members.map((m) => m.name),
    ["Alice"],
  );
  const connect = (await calls()).filter((c) => c.hook === "connect").pop().body;
  assert.equal(connect.session.transport, "socketio");
  assert.match(connect.session.headers.cookie, /session=alice/);
  assert.deepEqual(connect.session.auth, { device: "phone" });
  assert.match(connect.session.remote, /^127\.0\.0\.1:\d+$/);
  assert.equal(connect.namespace, "/");
  const ws = await wsClient("user=bob");
  const hello = await ws.next((f) => f.type === "auth_success", "auth_success");
  assert.equal(hello.user.name, "Bob");
});

await check("rooms granted at connect are joined without a join of the client's", async () => {
  const ws = await wsClient("user=vip");
  await ws.next((f) => f.type === "auth_success");
  const p = await ws.request({ type: "presence", room: "vip-lounge" });
  assert.deepEqual(
    p.members.map((m) => m.id),
    ["vip"],
  );
});

await check("a denied join is refused with the backend's code on every transport", async () => {
  const s = await sio({ auth: { user: "carol" } });
  const r = await call(s, "join", "secret");
  assert.equal(r.error.code, "FORBIDDEN_ROOM");
  const ws = await wsClient();
  const w = await ws.request({ type: "join", room: "secret" });
  assert.deepEqual([w.type, w.code], ["error", "FORBIDDEN_ROOM"]);
  const tcp = tcpClient();
  await tcp.until("HELLO");
  tcp.send("JOIN secret");
  assert.match(await tcp.until("ERR"), /^ERR FORBIDDEN_ROOM room secret is for staff$/);
  tcp.send("JOIN open");
  await tcp.until("OK open");
});

await check("a rewritten and a refused publish never reach history as sent", async () => {
  const s = await sio({ auth: { user: "dave" } });
  await call(s, "join", "news");
  const ok = await call(s, "publish", { room: "news", content: "rewrite me" });
  assert.equal(ok.offset !== undefined && !ok.error, true, JSON.stringify(ok));
  const bad = await call(s, "publish", { room: "news", content: "a badword here" });
  assert.equal(bad.error.code, "PROFANITY");
  const tcp = tcpClient();
  await tcp.until("HELLO");
  tcp.send("JOIN news");
  await tcp.until("OK news");
  tcp.send("SAY news badword again");
  assert.match(await tcp.until("ERR"), /^ERR PROFANITY /);
  const ws = await wsClient();
  await ws.request({ type: "join", room: "news" });
  const e = await ws.request({ type: "emit", room: "news", event: "note", data: "rewrite me" });
  assert.equal(e.type, "ack");
  const h = await ws.request({ type: "history", room: "news" });
  assert.deepEqual(
    h.messages.map((m) => m.content),
    ["rewritten", "rewritten"],
  );
});

await check("an RPC answers with the backend's result or its error", async () => {
  const s = await sio({ auth: { user: "erin" } });
  assert.equal(await call(s, "add", [1, 2, 3]), 6);
  assert.equal((await call(s, "placeOrder", { item: 1 })).error.code, "OUT_OF_STOCK");
  const ws = await wsClient();
  const r = await ws.request({ type: "rpc", method: "add", data: [2, 2] });
  assert.deepEqual([r.type, r.result], ["rpc_result", 4]);
  const f = await ws.request({ type: "rpc", method: "fail" });
  assert.deepEqual([f.type, f.error.code], ["rpc_result", "OUT_OF_STOCK"]);
  const tcp = tcpClient();
  await tcp.until("HELLO");
  tcp.send("RPC add [4, 5]");
  assert.equal(await tcp.until("OK"), "OK 9");
  tcp.send('RPC "make move" {"x": 1}');
  assert.match(await tcp.until("ERR"), /^ERR OUT_OF_STOCK cannot make move$/);
  const rpc = (await calls()).filter((c) => c.hook === "rpc" && c.body.method === "add");
  assert.deepEqual(rpc[0].body.data, [1, 2, 3]);
  assert.equal(rpc[0].body.user.id, "erin");
});

await check("a refresh extends one session and ends another", async () => {
  const kept = await wsClient("user=extend");
  const ended = await wsClient("user=end");
  // Both expire two seconds after connecting; the refresh comes first.
  const close = await timeout(ended.closed, 8000, "the ended session's close");
  assert.equal(close.code, 4001);
  await sleep(1500);
  kept.request({ type: "ping" }).catch(() => {});
  await kept.next((f) => f.type === "pong", "pong: the extended session is still served");
  // The same on Socket.IO: the ended socket is disconnected, the extended one served.
  const sKept = await sio({ auth: { user: "extend" } });
  const sEnded = await sio({ auth: { user: "end" } });
  const gone = once(sEnded, "disconnect", 8000);
  const [why] = await gone;
  assert.equal(why, "io server disconnect");
  await sleep(1500);
  assert.ok(sKept.connected, "the extended socket is still connected");
  assert.ok(Array.isArray((await call(sKept, "presence", "lobby")).members));
  const refreshes = (await calls()).filter((c) => c.hook === "refresh");
  assert.deepEqual([...new Set(refreshes.map((c) => c.body.user.id))].sort(), ["end", "extend"]);
});

await check("every call was signed and carried its id and node", async () => {
  const all = await calls();
  assert.ok(all.length > 10, `${all.length} calls`);
  assert.ok(
    all.every((c) => c.signed),
    "all signatures verify",
  );
  assert.deepEqual([...new Set(all.map((c) => c.hook))].sort(), ["connect", "join", "publish", "refresh", "rpc"]);
  assert.equal(new Set(all.map((c) => c.body.id)).size, all.length, "request ids are unique");
  assert.ok(all.every((c) => typeof c.body.node === "string" && c.body.node.length > 0));
});

await check("with the backend stopped, hooks fail closed and the hub stays responsive", async () => {
  const s = await sio({ auth: { user: "frank" } });
  const tcp = tcpClient();
  await tcp.until("HELLO");
  backend.kill("SIGKILL");
  await backendExited;
  assert.equal((await call(s, "join", "late")).error.code, "HOOK_UNAVAILABLE");
  assert.equal((await call(s, "add", [1])).error.code, "HOOK_UNAVAILABLE");
  tcp.send("RPC add [1]");
  assert.match(await tcp.until("ERR"), /^ERR HOOK_UNAVAILABLE /);
  const err = await sio({ cookie: "session=gina" }).then(
    () => null,
    (e) => e,
  );
  assert.equal(err?.data?.code, "HOOK_UNAVAILABLE");
  // Requests that need no hook are still served at once.
  tcp.send("PING still-there");
  assert.equal(await tcp.until("PONG"), "PONG still-there");
  const health = await fetch(`${HTTP}/healthz`);
  assert.equal(health.status, 200);
});

await server.stop();
if (backend.exitCode === null && backend.signalCode === null) backend.kill("SIGKILL");
fs.rmSync(dir, { recursive: true, force: true });
finish();
