// Socket.IO authentication against `prise serve --jwt-secret SECRET`, with
// the official client: a valid token is accepted (the name comes from its
// claims), a bad signature, an expired token and a missing token are refused
// with connect_error "Authentication failed", a room outside the claims is
// FORBIDDEN, and a token that expires during the connection ends it.
//   node auth.mjs HTTP_URL SECRET
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { checks, jwt as signed, once, timeout } from "../common/harness.mjs";

const [BASE, SECRET] = [process.argv[2], process.argv[3]];
const jwt = (claims, secret = SECRET) => signed(claims, secret);
const now = () => Math.floor(Date.now() / 1000);

const open = [];
const { check, finish } = checks({
  limitMs: 15000,
  traceLines: 5,
  after: () => {
    for (const s of open.splice(0)) s.disconnect();
  },
});
function client(auth) {
  const s = io(BASE, { forceNew: true, reconnection: false, transports: ["websocket"], auth });
  open.push(s);
  return s;
}
const outcome = (s) =>
  new Promise((res) => {
    s.once("connect", () => res({ ok: true }));
    s.once("connect_error", (err) => res({ ok: false, err }));
  });

await check("a valid token connects; the name comes from its claims", async () => {
  const s = client({ token: jwt({ sub: "u-alice", name: "Alice", exp: now() + 60 }), name: "ignored" });
  assert.equal((await outcome(s)).ok, true);
  const r = `auth-${process.pid}`;
  const j = await s.emitWithAck("join", r);
  assert.deepEqual(j.members.map((m) => [m.id, m.name]), [["u-alice", "Alice"]]);
});

for (const [what, token, code] of [
  ["a bad signature", jwt({ sub: "x", exp: now() + 60 }, "wrong-secret"), "AUTH_FAILED"],
  ["an expired token", jwt({ sub: "x", exp: now() - 120 }), "AUTH_EXPIRED"],
  ["a missing token (anonymous refused)", undefined, "AUTH_REQUIRED"],
]) {
  await check(`${what} is refused with connect_error`, async () => {
    const s = client(token ? { token } : {});
    const o = await outcome(s);
    assert.equal(o.ok, false);
    assert.equal(o.err.message, "Authentication failed");
    assert.equal(o.err.data.code, code);
  });
}

await check("a room outside the claims is FORBIDDEN; read-only tokens cannot publish", async () => {
  const s = client({ token: jwt({ sub: "u-bob", exp: now() + 60, rooms: ["team-*"], publish: false }) });
  assert.equal((await outcome(s)).ok, true);
  const denied = await s.emitWithAck("join", "secret-room");
  assert.equal(denied.error.code, "FORBIDDEN");
  const ok = await s.emitWithAck("join", "team-blue");
  assert.equal(ok.room, "team-blue");
  const pub = await s.emitWithAck("publish", { room: "team-blue", content: "x" });
  assert.equal(pub.error.code, "FORBIDDEN");
});

await check("a token that expires during the connection ends it", async () => {
  const s = client({ token: jwt({ sub: "u-carol", exp: now() + 2 }) });
  assert.equal((await outcome(s)).ok, true);
  const errors = [];
  s.on("error", (e) => errors.push(e.code));
  const gone = new Promise((res) => s.once("disconnect", (reason) => res(reason)));
  // The server ends the namespace session at exp (an `error` AUTH_EXPIRED
  // precedes it when it reaches the client before the disconnect).
  assert.equal(await timeout(gone, 8000, "disconnect at exp"), "io server disconnect");
  assert.ok(errors.every((c) => c === "AUTH_EXPIRED"), `unexpected errors ${errors}`);
});

finish();
