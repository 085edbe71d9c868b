// What the Node test scripts share: bounded waits and a list of named checks
// that prints "ok"/"FAIL" per check and "N passed, M failed" at the end.
//   import { checks, once, timeout } from "../common/harness.mjs";

import net from "node:net";

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
 * A netcat-style client of the TCP line protocol at `hostport`: `send` a
 * line; `until(prefix)` returns the next line starting with `prefix`
 * (within `ms`), dropping the lines before it.
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
    async until(prefix) {
      for (;;) {
        const i = lines.findIndex((l) => l.startsWith(prefix));
        if (i >= 0) return lines.splice(0, i + 1).pop();
        await timeout(new Promise((res) => waiters.push(res)), ms, `line ${prefix}`);
      }
    },
    close: () => sock.destroy(),
  };
}
