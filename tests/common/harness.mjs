// What the Node test scripts share: bounded waits, a list of named checks
// that prints "ok"/"FAIL" per check and "N passed, M failed" at the end,
// starting `prise` and waiting for its listening lines, a line-protocol
// client, HS256 tokens and a fake clock.
//   import { checks, once, timeout } from "../common/harness.mjs";

import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import readline from "node:readline";

/** `p`, or a rejection naming `what` after `ms`. */
export function timeout(p, ms, what) {
  let t;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise((_, rej) => (t = setTimeout(() => rej(new Error(`timeout: ${what}`)), ms))),
  ]);
}

/** The arguments of the next `ev` from `emitter`, within `ms`. */
export function once(emitter, ev, ms = 8000) {
  const p = timeout(new Promise((res) => emitter.once(ev, (...a) => res(a))), ms, ev);
  p.catch(() => {});
  return p;
}

export const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

/** Polls `cond` (sync or async) every 50 ms until it holds, within `ms`. */
export async function until(cond, ms, what) {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timeout: ${what}`);
    await sleep(50);
  }
}

/** Resolves with `socket` (a Socket.IO client) once it is connected, within `ms`. */
export async function connected(socket, ms = 8000) {
  if (!socket.connected) await once(socket, "connect", ms);
  return socket;
}

/** An HS256 JWT of `claims` signed with `secret`, as `prise serve --jwt-secret` checks them. */
export function jwt(claims, secret) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  const sig = crypto.createHmac("sha256", secret).update(body).digest("base64url");
  return `${body}.${sig}`;
}

/**
 * Starts `bin serve ...args` in a fresh temporary directory and resolves once
 * it printed a `listening KIND ADDR` line for each kind in `want`, with
 * `{ child, addrs, exited, stop }`: `addrs` maps each kind to its host:port,
 * `exited` resolves with `{ code, signal }`, `stop()` sends SIGTERM and, after
 * 3 s, SIGKILL. Rejects when the process cannot start, exits first, or
 * prints nothing within `ms` (it is then killed). Every output line goes to `log`.
 */
export function startPrise(args, { bin, want = ["http", "tcp"], ms = 15000, log = () => {} } = {}) {
  const cwd = fs.mkdtempSync(`${os.tmpdir()}/prise-test-`);
  const child = spawn(bin, ["serve", ...args], {
    cwd,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NO_COLOR: "1" },
  });
  const exited = new Promise((res) => child.once("exit", (code, signal) => res({ code, signal })));
  exited.then(() => fs.rmSync(cwd, { recursive: true, force: true }));
  readline.createInterface({ input: child.stderr }).on("line", (l) => log(`[stderr] ${l}`));
  async function stop() {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const grace = new Promise((res) => setTimeout(() => res(null), 3000).unref());
    if ((await Promise.race([exited, grace])) === null && child.exitCode === null) {
      child.kill("SIGKILL");
      await exited;
    }
  }
  return new Promise((resolve, reject) => {
    const addrs = {};
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`server printed no listening lines within ${ms} ms`));
    }, ms);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${bin}: ${err.message}`));
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`server exited early (code ${code}, signal ${signal})`));
    });
    readline.createInterface({ input: child.stdout }).on("line", (line) => {
      log(`[stdout] ${line}`);
      const m = /^listening (\S+) (\S+)/.exec(line);
      if (m) addrs[m[1]] = m[2];
      if (want.every((k) => addrs[k])) {
        clearTimeout(timer);
        resolve({ child, addrs, exited, stop });
      }
    });
  });
}

/**
 * Named checks run one after the other, each bounded by `limitMs`; `after`
 * runs after each (e.g. to close its clients). `finish()` prints the totals
 * and exits non-zero unless every check passed (and at least one ran).
 */
export function checks({ limitMs = 15000, traceLines = 6, after = () => {} } = {}) {
  let passed = 0;
  let failed = 0;
  async function check(name, fn) {
    try {
      await timeout(Promise.resolve().then(fn), limitMs, name);
      passed++;
      console.log(`ok   ${name}`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${name}\n     ${(e && e.stack) || e}`.split("\n").slice(0, traceLines).join("\n"));
    } finally {
      await after();
    }
  }
  function finish() {
    console.log(`${passed} passed, ${failed} failed`);
    // A moment for the last packets of closing clients.
    setTimeout(() => process.exit(failed === 0 && passed > 0 ? 0 : 1), 50);
  }
  return { check, finish };
}

/**
 * A client of the hub's WebSocket JSON protocol at `url`, with the `ws`
 * package's `WebSocket` (passed in: this folder has no node_modules).
 * `send(obj)`; `next(pred)`: the next frame that fits, within `ms`;
 * `request(obj)`: sends it with a fresh `id` and answers the frame that
 * carries it back; `closed`: resolves with `{code, reason}`.
 */
export async function jsonSocket(WebSocket, url, ms = 8000) {
  const ws = new WebSocket(url);
  const frames = [];
  const waiters = [];
  const closed = new Promise((res) => ws.on("close", (code, reason) => res({ code, reason: reason.toString() })));
  ws.on("message", (d) => {
    frames.push(JSON.parse(d.toString()));
    for (const w of waiters.splice(0)) w();
  });
  await once(ws, "open", ms);
  let id = 0;
  const c = {
    closed,
    close: () => ws.close(),
    send: (obj) => ws.send(JSON.stringify(obj)),
    async next(pred, what = "frame") {
      for (;;) {
        const i = frames.findIndex(pred);
        if (i >= 0) return frames.splice(i, 1)[0];
        await timeout(new Promise((res) => waiters.push(res)), ms, `${what}; got ${JSON.stringify(frames)}`);
      }
    },
    async request(obj) {
      const n = ++id;
      c.send({ ...obj, id: n });
      return c.next((f) => f.id === n, `answer to ${obj.type}`);
    },
  };
  return c;
}

/**
 * A netcat-style client of the TCP line protocol at `hostport`: `send` a
 * line; `until(pattern)` returns the next line that starts with `pattern`
 * (a string) or matches it (a RegExp), within `ms`, dropping the lines
 * before it.
 */
export function lineClient(hostport, ms = 8000) {
  const cut = hostport.lastIndexOf(":");
  const sock = net.connect(Number(hostport.slice(cut + 1)), hostport.slice(0, cut));
  let buf = "";
  const lines = [];
  const waiters = [];
  sock.setEncoding("utf8");
  sock.on("data", (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      lines.push(buf.slice(0, i).replace(/\r$/, ""));
      buf = buf.slice(i + 1);
    }
    for (const w of waiters.splice(0)) w();
  });
  return {
    send: (l) => sock.write(`${l}\n`),
    async until(pattern) {
      const fits = typeof pattern === "string" ? (l) => l.startsWith(pattern) : (l) => pattern.test(l);
      for (;;) {
        const i = lines.findIndex(fits);
        if (i >= 0) return lines.splice(0, i + 1).pop();
        await timeout(new Promise((res) => waiters.push(res)), ms, `line ${pattern}; got ${JSON.stringify(lines)}`);
      }
    },
    close: () => sock.destroy(),
  };
}

/**
 * A clock and timers that move only when told, for code that takes its
 * timers and `now` as parameters: `advance(ms)` runs every timer due, in
 * order, each at its own time.
 */
export function fakeClock(start = 0) {
  let now = start;
  let seq = 0;
  const timers = new Map();
  const add = (fn, ms, every) => {
    const id = ++seq;
    timers.set(id, { at: now + Math.max(0, Number(ms) || 0), fn, every });
    return id;
  };
  return {
    now: () => now,
    setTimeout: (fn, ms) => add(fn, ms, 0),
    setInterval: (fn, ms) => add(fn, ms, Math.max(1, Number(ms) || 0)),
    clearTimeout: (id) => timers.delete(id),
    clearInterval: (id) => timers.delete(id),
    /** How many timers are set. */
    get timers() {
      return timers.size;
    },
    advance(ms) {
      const end = now + ms;
      for (;;) {
        let next = null;
        for (const [id, t] of timers) {
          if (t.at <= end && (!next || t.at < next.t.at)) next = { id, t };
        }
        if (!next) break;
        now = next.t.at;
        if (next.t.every) next.t.at += next.t.every;
        else timers.delete(next.id);
        next.t.fn();
      }
      now = end;
    },
  };
}
