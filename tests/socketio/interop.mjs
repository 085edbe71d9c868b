// Core interop checks with the official JavaScript client (socket.io-client
// from npm) against the prise-sio conformance example.
//
//   node interop.mjs http://127.0.0.1:PORT
//
// Runs every check in three transport modes: polling then upgrade (client
// default), websocket only, polling only. Prints one line per check and
// ends with "N passed, M failed"; exit code 0 only when nothing failed.
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { checks, once, timeout } from "../common/harness.mjs";

const BASE = (process.argv[2] || "").replace(/\/$/, "");
if (!BASE) {
  console.error("usage: node interop.mjs BASE_URL");
  process.exit(2);
}
const MODES = { upgrade: {}, websocket: { transports: ["websocket"] }, polling: { transports: ["polling"] } };

const open = new Set();
const { check, finish } = checks({ limitMs: 8000, traceLines: 5 });

function client(nsp, opts) {
  const s = io(BASE + nsp, { forceNew: true, reconnectionDelay: 50, reconnectionDelayMax: 100, ...opts });
  open.add(s);
  return s;
}
async function connected(nsp, opts) {
  const s = client(nsp, opts);
  const auth = once(s, "auth");
  await once(s, "connect");
  return { s, auth: (await auth)[0] };
}
async function settled(s, mode) {
  const want = mode === "polling" ? "polling" : "websocket";
  if (s.io.engine.transport.name !== want) await once(s.io.engine, "upgrade");
  assert.equal(s.io.engine.transport.name, want);
}

for (const [mode, topts] of Object.entries(MODES)) {
  await check(`[${mode}] connect with auth accepted; transport; emit with ack`, async () => {
    const { s, auth } = await connected("/", { ...topts, auth: { token: "t", n: 1 } });
    assert.deepEqual(auth, { token: "t", n: 1 });
    await settled(s, mode);
    const who = await s.timeout(3000).emitWithAck("whoami");
    assert.equal(who.transport, mode === "polling" ? "polling" : "websocket");
    assert.equal(who.id, s.id);
    const echo = await s.timeout(3000).emitWithAck("echo", 1, "two", { three: [3] }, "é🌍");
    assert.deepEqual(echo, 1); // emitWithAck resolves with the first ack argument
    const all = await new Promise((res) => s.emit("echo", 1, "two", { three: [3] }, (...a) => res(a)));
    assert.deepEqual(all, [1, "two", { three: [3] }]);
    s.disconnect();
  });

  await check(`[${mode}] connect refused by the application (connect_error with data)`, async () => {
    const s = client("/secure", { ...topts, auth: { token: "wrong" }, reconnection: false });
    const [err] = await once(s, "connect_error");
    assert.equal(err.message, "unauthorized");
    assert.deepEqual(err.data, { reason: "bad token" });
    const u = client("/nowhere", { ...topts, reconnection: false });
    const [err2] = await once(u, "connect_error");
    assert.equal(err2.message, "Invalid namespace");
    s.close();
    u.close();
  });

  await check(`[${mode}] server emits with ack; client answers (with binary)`, async () => {
    const { s } = await connected("/custom", topts);
    s.once("question", (q, cb) => cb({ double: q.n * 2, bin: Buffer.from([7, 8]) }));
    const res = await s.timeout(4000).emitWithAck("ask", { n: 21 });
    assert.equal(res.ok, true, JSON.stringify(res));
    assert.equal(res.answer.double, 42);
    assert.deepEqual([...res.answer.bin], [7, 8]);
    s.disconnect();
  });

  await check(`[${mode}] binary round trip (event, ack, nested attachments)`, async () => {
    const { s } = await connected("/", topts);
    const buf = Buffer.from([0, 1, 2, 253, 254, 255]);
    const back = once(s, "binary-back");
    const acked = await s.timeout(3000).emitWithAck("binary", buf);
    assert.deepEqual([...acked], [...buf]);
    const [b] = await back;
    assert.equal(b.len, buf.length);
    assert.deepEqual([...b.nested[0]], [...buf]);
    s.disconnect();
  });

  await check(`[${mode}] connection state recovery: socket.recovered and missed events`, async () => {
    const opts = { ...topts, path: "/recovery.io/", reconnectionDelay: 300, reconnectionDelayMax: 300 };
    const a = client("/", opts);
    await once(a, "connect");
    assert.equal(a.recovered, false);
    await settled(a, mode);
    const b = client("/", opts);
    await once(b, "connect");
    const got = [];
    a.on("news", (m, offset) => got.push([m, offset]));
    const first = once(a, "news");
    const off1 = await b.timeout(3000).emitWithAck("publish", "m1");
    await first;
    assert.deepEqual(got, [["m1", off1]]);
    const down = once(a, "disconnect");
    a.emit("drop");
    assert.equal((await down)[0], "transport close");
    // Published while `a` is away (it comes back after 300 ms).
    const off2 = await b.timeout(3000).emitWithAck("publish", "m2");
    await once(a, "connect", 5000);
    assert.equal(a.recovered, true, "the server answered with the same pid");
    while (!got.some(([m]) => m === "m2")) await once(a, "news");
    assert.deepEqual(got, [["m1", off1], ["m2", off2]]);
    a.close();
    b.close();
  });

  await check(`[${mode}] disconnect both ways`, async () => {
    const { s } = await connected("/", topts);
    const d1 = once(s, "disconnect");
    s.emit("kick");
    assert.equal((await d1)[0], "io server disconnect");
    s.connect();
    await once(s, "connect");
    await settled(s, mode);
    const d2 = once(s, "disconnect");
    const re = once(s.io, "reconnect", 5000);
    s.emit("drop");
    assert.equal((await d2)[0], "transport close");
    await re;
    if (!s.connected) await once(s, "connect");
    assert.equal(await s.timeout(3000).emitWithAck("echo", "again"), "again");
    const d3 = once(s, "disconnect");
    s.disconnect();
    assert.equal((await d3)[0], "io client disconnect");
  });
}

for (const s of open) s.close();
finish();
