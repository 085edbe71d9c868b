// A backend for prise's hooks in Node.js (no dependencies), answering
// exactly as backend.py does: see that file for what each hook decides.
// It checks every call's X-Prise-Signature (sha256=<HMAC-SHA256 of the
// body with the shared secret>) in constant time.
//   node backend.mjs SECRET_FILE     (prints "listening PORT", then serves)

import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";

const SECRET = fs.readFileSync(process.argv[2], "utf8").replace(/[\r\n]+$/, "");
const calls = [];
let refuseTcp = false;

function signed(body, header) {
  const expected = Buffer.from(`sha256=${crypto.createHmac("sha256", SECRET).update(body).digest("hex")}`);
  const got = Buffer.from(header || "");
  return got.length === expected.length && crypto.timingSafeEqual(got, expected);
}

const error = (code, message) => ({ error: { code, message } });

function userOf(session) {
  for (const part of (session.headers?.cookie || "").split(";")) {
    const [name, value] = part.trim().split("=");
    if (name === "session" && value) return value;
  }
  if (session.auth && typeof session.auth === "object" && session.auth.user) return session.auth.user;
  return new URLSearchParams(session.query || "").get("user");
}

const now = () => Math.floor(Date.now() / 1000);

const hooks = {
  connect({ session }) {
    if (session.auth?.token === "banned") return error("BANNED", "this client is banned");
    if (session.transport === "tcp" && refuseTcp) {
      refuseTcp = false;
      return error("LOCKDOWN", "no line clients now");
    }
    const user = userOf(session);
    if (user === "banned") return error("BANNED", "this client is banned");
    if (!user) return {};
    const answer = { user: { id: user, name: user[0].toUpperCase() + user.slice(1), info: { plan: "free" } } };
    if (user === "extend" || user === "end") answer.expires_at = now() + 2;
    if (user === "vip") answer.rooms = ["vip-lounge"];
    return answer;
  },
  refresh: ({ user }) => (user.id === "extend" ? { expires_at: now() + 3600 } : error("SESSION_OVER", "your session is over")),
  join: ({ room }) => (room.endsWith("secret") ? error("FORBIDDEN_ROOM", "room secret is for staff") : {}),
  publish({ content }) {
    if (JSON.stringify(content).includes("badword")) return error("PROFANITY", "mind your language");
    return content === "rewrite me" ? { content: "rewritten" } : {};
  },
  rpc: ({ method, data }) =>
    method === "add" ? { result: data.reduce((a, b) => a + b, 0) } : error("OUT_OF_STOCK", `cannot ${method}`),
};

const server = http.createServer((req, res) => {
  const answer = (status, value) => {
    const body = JSON.stringify(value);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    res.end(body);
  };
  if (req.method === "GET") {
    if (req.url === "/refuse-tcp") {
      refuseTcp = true;
      return answer(200, {});
    }
    return answer(200, calls);
  }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    const ok = signed(body, req.headers["x-prise-signature"]);
    const call = JSON.parse(body.toString());
    calls.push({ hook: call.hook, signed: ok, body: call });
    if (!ok) return answer(401, error("BAD_SIGNATURE", "not signed by the hub"));
    answer(200, hooks[call.hook](call));
  });
});
server.listen(0, "127.0.0.1", () => console.log(`listening ${server.address().port}`));
