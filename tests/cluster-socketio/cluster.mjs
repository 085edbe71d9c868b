// Socket.IO long-polling through a round-robin balancer in front of three
// `prise serve --redis` nodes, driven by the official JavaScript client.
//
//   node cluster.mjs BALANCER_URL NODE_URL TCP_HOST:PORT
//
// The polling client goes through the balancer (BALANCER_URL) without HTTP
// keep-alive, so its requests land on different nodes. A websocket client
// connects straight to one node (NODE_URL) and a TCP line client straight to
// another (TCP_HOST:PORT). Last, a client with the default transports
// upgrades to websocket through the balancer. Prints "sid <engine.io sid>" for the run script,
// one line per check, then "N passed, M failed"; exit code 0 only when
// nothing failed.
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { checks, connected, lineClient, once, timeout, until } from "../common/harness.mjs";
const { check, finish } = checks({ limitMs: 20000 });

const [BALANCER, NODE, TCP] = process.argv.slice(2);
if (!BALANCER || !NODE || !TCP) {
  console.error("usage: node cluster.mjs BALANCER_URL NODE_URL TCP_HOST:PORT");
  process.exit(2);
}
const ROOM = `cluster-${process.pid}`;

/** Resolves with the first `message` whose content is `content`. */
function messageWith(socket, content, ms = 8000) {
  return timeout(
    new Promise((res) => {
      const on = (m) => {
        if (m && m.content === content) {
          socket.off("message", on);
          res(m);
        }
      };
      socket.on("message", on);
    }),
    ms,
    `message ${JSON.stringify(content)}`,
  );
}

// Polling only, through the balancer. `agent: false` (also the client's
// default in Node) opens a new connection for every request: no keep-alive,
// so the balancer spreads one session's requests over the nodes.
const poller = io(BALANCER, {
  forceNew: true,
  transports: ["polling"],
  agent: false,
  reconnection: false,
  auth: { name: "poller" },
});
const direct = io(NODE, { forceNew: true, transports: ["websocket"], reconnection: false, auth: { name: "direct" } });
const line = lineClient(TCP);

await check("polling client connects through the balancer", async () => {
  await connected(poller);
  assert.equal(poller.io.engine.transport.name, "polling");
  console.log(`sid ${poller.io.engine.id}`);
});
await check("polling client joins a room (ack)", async () => {
  const ack = await poller.timeout(8000).emitWithAck("join", ROOM);
  assert.equal(ack.room, ROOM);
  assert.deepEqual(ack.members.map((m) => m.name), ["poller"]);
});
await check("a client straight to a node sees the polling user in presence", async () => {
  await connected(direct);
  const ack = await direct.timeout(8000).emitWithAck("join", ROOM);
  assert.deepEqual(ack.members.map((m) => m.name).sort(), ["direct", "poller"]);
});
await check("polling client publishes with ack; the direct client receives it", async () => {
  const got = messageWith(direct, "hello from polling");
  const ack = await poller.timeout(8000).emitWithAck("publish", { room: ROOM, content: "hello from polling" });
  assert.equal(ack.room, ROOM);
  assert.equal(typeof ack.offset, "number");
  await got;
});
await check("messages from the direct Socket.IO client arrive over polling", async () => {
  for (let i = 0; i < 10; i++) {
    const got = messageWith(poller, `direct ${i}`);
    const ack = await direct.timeout(8000).emitWithAck("publish", { room: ROOM, content: `direct ${i}` });
    assert.equal(ack.room, ROOM);
    await got;
  }
});
await check("messages from a TCP client on another node arrive over polling", async () => {
  line.send("NICK liner");
  await line.until("OK");
  line.send(`JOIN ${ROOM}`);
  assert.match(await line.until("OK"), /members=3/);
  for (let i = 0; i < 5; i++) {
    const got = messageWith(poller, `line ${i}`);
    line.send(`SAY ${ROOM} line ${i}`);
    await got;
  }
});
await check("the polling client is still on polling, in the same session", async () => {
  assert.equal(poller.io.engine.transport.name, "polling");
  assert.equal(poller.connected, true);
  const ack = await poller.timeout(8000).emitWithAck("presence", ROOM);
  assert.deepEqual(ack.members.map((m) => m.name).sort(), ["direct", "liner", "poller"]);
});

await check("a client upgrading to websocket through the balancer keeps its session", async () => {
  // The upgrade request lands on any node; one that does not hold the
  // session tunnels it to the owner.
  const up = io(BALANCER, { forceNew: true, agent: false, reconnection: false, auth: { name: "upgrader" } });
  try {
    await connected(up);
    const sid = up.io.engine.id;
    if (up.io.engine.transport.name !== "websocket") await once(up.io.engine, "upgrade");
    assert.equal(up.io.engine.transport.name, "websocket");
    assert.equal(up.io.engine.id, sid);
    await up.timeout(8000).emitWithAck("join", ROOM);
    const got = messageWith(up, "to the upgraded client");
    await direct.timeout(8000).emitWithAck("publish", { room: ROOM, content: "to the upgraded client" });
    await got;
  } finally {
    up.disconnect();
  }
});

poller.disconnect();
direct.disconnect();
line.close();
finish();
