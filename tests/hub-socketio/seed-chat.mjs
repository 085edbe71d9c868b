// The seed course's ChatClient (04-websockets-socketio.md), as plain
// JavaScript with its options unchanged, chatting through `prise serve`
// with a second client. The seed authenticates with a token: the server
// runs with --jwt-secret and each client gets a real HS256 token.
//
//   node seed-chat.mjs HTTP_URL SECRET
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { checks, jwt as signed, until } from "../common/harness.mjs";

const URL = process.argv[2];
const SECRET = process.argv[3];
const jwt = (sub, name) => signed({ sub, name, exp: Math.floor(Date.now() / 1000) + 300 }, SECRET);
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

const room = `seed-${process.pid}`;
const alice = new ChatClient(URL, jwt("u-alice", "alice"));
const bob = new ChatClient(URL, jwt("u-bob", "bob"));
const WAIT = 8000;
const { check, finish } = checks({
  limitMs: 60000,
  after: () => {
    alice.disconnect();
    bob.disconnect();
  },
});

await check("seed ChatClient chats through prise (join, send with ack, typing, leave)", async () => {
  try {
    await until(() => alice.socket.connected && bob.socket.connected, WAIT, "both connected");
    alice.joinRoom(room);
    // Let alice's join land before bob's (two clients race otherwise).
    const probe = io(URL, { forceNew: true, transports: ["websocket"], auth: { token: jwt("u-probe", "probe") } });
    await until(
      async () => {
        const p = await probe.timeout(2000).emitWithAck("presence", room).catch(() => null);
        return (p ? p.members.length : 0) === 1;
      },
      WAIT,
      "alice in the room",
    );
    probe.disconnect();
    bob.joinRoom(room);
    await until(() => alice.joined.length === 1, WAIT, "alice sees bob join");
    // With `retries`, the client's queue hands callbacks error-first results,
    // so the seed's promise resolves (with the error slot, null) once the
    // server acknowledged; the message itself must arrive exactly once.
    await alice.sendMessage("Bonjour Bob !");
    await until(() => bob.received.length >= 1, WAIT, "bob gets the message");
    assert.equal(bob.received[0].content, "Bonjour Bob !");
    assert.equal(bob.received[0].roomId, room);
    assert.equal(bob.received[0].userName, "alice", "the name comes from the token");
    await bob.sendMessage("Salut Alice");
    await until(() => alice.received.some((m) => m.content === "Salut Alice"), WAIT, "alice gets the reply");
    assert.deepEqual(alice.received.map((m) => m.content), ["Bonjour Bob !", "Salut Alice"], "each message once, in order");
    await until(() => bob.received.length >= 2, WAIT, "bob gets his own reply");
    assert.deepEqual(bob.received.map((m) => m.content), ["Bonjour Bob !", "Salut Alice"]);
    bob.startTyping();
    await until(() => alice.typings.some((t) => t.typing === true && t.roomId === room), WAIT, "alice sees bob typing");
    bob.stopTyping();
    await until(() => alice.typings.some((t) => t.typing === false), WAIT, "alice sees bob stop");
    const bobId = alice.joined[0].id;
    bob.disconnect();
    await until(() => alice.left.includes(bobId), WAIT, "alice sees bob leave");
    assert.deepEqual(alice.errors, []);
  } catch (e) {
    const seen = { a: alice.received, b: bob.received, aj: alice.joined, ae: alice.errors, be: bob.errors };
    e.message = `${e.message}\n     seen: ${JSON.stringify(seen)}`;
    throw e;
  }
});
finish();
