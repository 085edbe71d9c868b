// A node killed (SIGKILL) under publish load, with the official JavaScript
// client: a subscriber behind the balancer loses its node, reconnects through
// the balancer to another node and recovers (`socket.recovered`) every
// acknowledged message it missed, once each and in order (it joined longer
// ago than the nodes' recovery window, so its record must have been kept
// current); a member of the killed node that does not come back leaves
// presence within the TTL.
//
//   node failover.mjs BALANCER_URL NODE_URL=PID NODE_URL=PID NODE_URL=PID
//
// The nodes are this suite's own processes (started by run.sh); the one the
// subscriber landed on is the one killed. Prints one line per check, then
// "N passed, M failed"; exit code 0 only when nothing failed.
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { checks, connected, sleep, timeout, until } from "../common/harness.mjs";

const [BALANCER, ...NODES] = process.argv.slice(2);
if (!BALANCER || NODES.length < 2) {
  console.error("usage: node failover.mjs BALANCER_URL NODE_URL=PID NODE_URL=PID...");
  process.exit(2);
}
const nodes = NODES.map((n) => {
  const [url, pid] = n.split("=");
  return { url, pid: Number(pid) };
});
const ROOM = `failover-${process.pid}`;
const MESSAGES = 150;
const KILL_AFTER = 40;
const open = [];
const { check, finish } = checks({ limitMs: 60000 });

const call = (s, ev, arg) => timeout(s.emitWithAck(ev, arg), 5000, `ack of ${ev}`);
function client(url, opts) {
  const s = io(url, { forceNew: true, transports: ["websocket"], ...opts });
  open.push(s);
  return s;
}
async function socketioConnections(url) {
  const r = await fetch(`${url}/stats`);
  return (await r.json()).connections.socketio;
}

await check("a node killed under publish load: its client recovers on another node, nothing acknowledged lost or doubled", async () => {
  // The subscriber goes through the balancer; find the node it landed on.
  const before = await Promise.all(nodes.map((n) => socketioConnections(n.url)));
  const sub = await connected(
    client(BALANCER, { auth: { name: "sub" }, reconnectionDelay: 100, reconnectionDelayMax: 500 }),
  );
  await call(sub, "join", ROOM);
  const after = await Promise.all(nodes.map((n) => socketioConnections(n.url)));
  const victim = nodes.findIndex((_, i) => after[i] === before[i] + 1);
  assert.ok(victim >= 0, `the subscriber's node not found (before ${before}, after ${after})`);
  const survivor = nodes[(victim + 1) % nodes.length];
  // A member of the victim node that will not come back.
  const carol = await connected(client(nodes[victim].url, { auth: { name: "carol" }, reconnection: false }));
  await call(carol, "join", ROOM);
  const pub = await connected(client(survivor.url, { auth: { name: "pub" }, reconnection: false }));
  await call(pub, "join", ROOM);
  await until(
    async () => (await call(pub, "presence", ROOM)).members.some((m) => m.name === "carol"),
    5000,
    "carol in presence",
  );
  // The nodes run with --recovery-window 4s: the record written at the join
  // has expired by now, so recovery below relies on its periodic rewrite.
  await sleep(5000);

  const got = [];
  sub.on("message", (m) => {
    if (m.roomId === ROOM) got.push(m.offset);
  });
  let recovered = null;
  const reconnected = new Promise((res) =>
    sub.on("connect", () => {
      recovered = sub.recovered;
      res();
    }),
  );
  const acked = [];
  for (let i = 0; i < MESSAGES; i++) {
    const a = await call(pub, "publish", { room: ROOM, content: `fo-${i}` });
    assert.ok(a.offset, `publish ${i} not acknowledged: ${JSON.stringify(a)}`);
    acked.push(a.offset);
    if (i === KILL_AFTER) {
      // Let the subscriber have something to resume from, then kill its node.
      await until(() => got.length > 0, 5000, "first messages");
      process.kill(nodes[victim].pid, "SIGKILL");
    }
    await sleep(10);
  }
  await timeout(reconnected, 15000, "the subscriber reconnects");
  assert.equal(recovered, true, "socket.recovered after the failover");
  const last = acked[acked.length - 1];
  await until(() => got.length > 0 && got[got.length - 1] >= last, 15000, `offset ${last} reaches the subscriber`);
  const seen = new Set(got);
  assert.equal(seen.size, got.length, `duplicates among ${got.length} deliveries`);
  assert.deepEqual(got, [...got].sort((a, b) => a - b), "order");
  const missing = acked.filter((o) => !seen.has(o));
  assert.deepEqual(missing, [], "acknowledged messages the subscriber never got");
  const first = got[0];
  assert.deepEqual(got, Array.from({ length: last - first + 1 }, (_, k) => first + k), "a gap");

  // carol's node is dead: she leaves presence within the TTL (2 s here).
  await until(
    async () => !(await call(pub, "presence", ROOM)).members.some((m) => m.name === "carol"),
    10000,
    "carol leaves presence",
  );
  const names = (await call(pub, "presence", ROOM)).members.map((m) => m.name).sort();
  assert.deepEqual(names, ["pub", "sub"]);
});

for (const s of open) s.disconnect();
finish();
