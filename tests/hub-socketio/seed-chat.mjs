// The seed course's ChatClient (04-websockets-socketio.md), as plain
// JavaScript with its options unchanged, chatting through `prise serve`
// with a second client. The seed authenticates with a token: the server
// runs with --jwt-secret and each client gets a real HS256 token.
//
//   node seed-chat.mjs HTTP_URL SECRET
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { io } from "socket.io-client";

const URL = process.argv[2];
const SECRET = process.argv[3];
const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
function jwt(sub, name) {
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({ sub, name, exp: Math.floor(Date.now() / 1000) + 300 });
  const sig = crypto.createHmac("sha256", SECRET).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}
const window = globalThis; // the seed runs in a browser; its timers live on window

class ChatClient {
  constructor(serverUrl, authToken) {
    this.serverUrl = serverUrl;
    this.authToken = authToken;
    this.currentRoom = null;
    this.typingTimeout = null;
    this.received = [];
    this.joined = [];
    this.left = [];
    this.typings = [];
    this.errors = [];
    this.socket = io(serverUrl, {
      auth: { token: authToken },
      transports: ["websocket", "polling"],
      timeout: 5000,
      retries: 3,
      reconnection: true,
      reconnectionAttempts: 5,
      reconnectionDelay: 1000,
      reconnectionDelayMax: 5000,
      forceNew: false,
      multiplex: true,
    });
    this.setupEventListeners();
  }

  setupEventListeners() {
    this.socket.on("connect", () => {});
    this.socket.on("disconnect", (reason) => {
      if (reason === "io server disconnect") this.socket.connect();
    });
    this.socket.on("connect_error", (error) => this.errors.push(error));
    this.socket.on("message", (data) => this.handleNewMessage(data));
    this.socket.on("userJoined", (user) => this.handleUserJoined(user));
    this.socket.on("userLeft", (userId) => this.handleUserLeft(userId));
    this.socket.on("typing", (data) => this.handleTyping(data));
    this.socket.on("error", (error) => this.handleError(error));
  }

  joinRoom(roomId) {
    this.currentRoom = roomId;
    this.socket.emit("joinRoom", roomId);
  }

  sendMessage(message) {
    return new Promise((resolve, reject) => {
      if (!this.socket.connected) {
        reject(new Error("Not connected"));
        return;
      }
      this.socket.emit("sendMessage", message, (messageId) => {
        resolve(messageId);
      });
      setTimeout(() => {
        reject(new Error("Message timeout"));
      }, 5000);
    });
  }

  startTyping() {
    this.socket.emit("startTyping");
    if (this.typingTimeout) clearTimeout(this.typingTimeout);
    this.typingTimeout = window.setTimeout(() => {
      this.stopTyping();
    }, 3000);
  }

  stopTyping() {
    if (this.typingTimeout) {
      clearTimeout(this.typingTimeout);
      this.typingTimeout = null;
    }
    this.socket.emit("stopTyping");
  }

  handleNewMessage(data) { this.received.push(data); }
  handleUserJoined(user) { this.joined.push(user); }
  handleUserLeft(userId) { this.left.push(userId); }
  handleTyping(data) { this.typings.push(data); }
  handleError(error) { this.errors.push(error); }

  disconnect() {
    this.socket.disconnect();
  }
}

async function until(what, pred, ms = 8000, poll = null) {
  const end = Date.now() + ms;
  for (;;) {
    if (poll) await poll();
    if (pred()) return;
    if (Date.now() > end) throw new Error(`timeout waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const room = `seed-${process.pid}`;
const alice = new ChatClient(URL, jwt("u-alice", "alice"));
const bob = new ChatClient(URL, jwt("u-bob", "bob"));
let ok = false;
try {
  await until("both connected", () => alice.socket.connected && bob.socket.connected);
  alice.joinRoom(room);
  // Let alice's join land before bob's (two clients race otherwise).
  const probe = io(URL, { forceNew: true, transports: ["websocket"], auth: { token: jwt("u-probe", "probe") } });
  let members = 0;
  await until("alice in the room", () => members === 1, 8000, async () => {
    const p = await probe.timeout(2000).emitWithAck("presence", room).catch(() => null);
    members = p ? p.members.length : 0;
  });
  probe.disconnect();
  bob.joinRoom(room);
  await until("alice sees bob join", () => alice.joined.length === 1);
  // With `retries`, the client's queue hands callbacks error-first results,
  // so the seed's promise resolves (with the error slot, null) once the
  // server acknowledged; the message itself must arrive exactly once.
  await alice.sendMessage("Bonjour Bob !");
  await until("bob gets the message", () => bob.received.length >= 1);
  assert.equal(bob.received[0].content, "Bonjour Bob !");
  assert.equal(bob.received[0].roomId, room);
  assert.equal(bob.received[0].userName, "alice", "the name comes from the token");
  await bob.sendMessage("Salut Alice");
  await until("alice gets the reply", () => alice.received.some((m) => m.content === "Salut Alice"));
  assert.deepEqual(alice.received.map((m) => m.content), ["Bonjour Bob !", "Salut Alice"], "each message once, in order");
  await until("bob gets his own reply", () => bob.received.length >= 2);
  assert.deepEqual(bob.received.map((m) => m.content), ["Bonjour Bob !", "Salut Alice"]);
  bob.startTyping();
  await until("alice sees bob typing", () => alice.typings.some((t) => t.typing === true && t.roomId === room));
  bob.stopTyping();
  await until("alice sees bob stop", () => alice.typings.some((t) => t.typing === false));
  const bobId = alice.joined[0].id;
  bob.disconnect();
  await until("alice sees bob leave", () => alice.left.includes(bobId));
  assert.deepEqual(alice.errors, []);
  ok = true;
  console.log("ok   seed ChatClient chats through prise (join, send with ack, typing, leave)");
} catch (e) {
  console.log(`FAIL seed ChatClient: ${(e && e.stack) || e}`, JSON.stringify({a: alice.received, b: bob.received, aj: alice.joined, ae: alice.errors, be: bob.errors}));
} finally {
  alice.disconnect();
  bob.disconnect();
}
console.log(ok ? "1 passed, 0 failed" : "0 passed, 1 failed");
process.exit(ok ? 0 : 1);
