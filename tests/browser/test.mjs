// End-to-end test of the web page served by `prise serve`: two headless
// Chromium users and one TCP line-protocol user share a room.
//
// The server is the real binary (PRISE_BIN, default target/debug/prise),
// started here on 127.0.0.1:0 with an in-memory store and stopped at the end
// by its pid. Chromium is Debian's /usr/bin/chromium driven by playwright-core.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import { jwt, lineClient, startPrise } from '../common/harness.mjs';

const __dirname = import.meta.dirname;
const ROOT = path.resolve(__dirname, '..', '..');
const OUT = path.join(__dirname, 'out');
const PRISE_BIN = process.env.PRISE_BIN
  ? path.resolve(process.env.PRISE_BIN)
  : path.join(ROOT, 'target', 'debug', 'prise');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
/** Longest wait for any single event (a message shown, a line received...). */
const WAIT_MS = 8000;
/** The whole run is stopped, as a failure, after this long. */
const RUN_DEADLINE_MS = 75000;
/** Longest wait for the server to print its listening addresses. */
const STARTUP_MS = 15000;

const ctx = {
  server: null,
  serverLog: [],
  httpBase: null,
  tcpPort: null,
  browser: null,
  pages: {},
  carol: null,
  pageErrors: [],
  broken: null,
  cutter: null,
};

fs.mkdirSync(OUT, { recursive: true });

// ---------------------------------------------------------------- server
function remember(line) {
  ctx.serverLog.push(line);
  if (ctx.serverLog.length > 200) ctx.serverLog.shift();
}

/** Starts `prise serve` with `extra` flags; `key` names it in ctx (ctx[key] is what startPrise gives). */
async function startServer(extra = [], key = 'server') {
  const server = await startPrise(['--http', '127.0.0.1:0', '--tcp', '127.0.0.1:0', '--store', 'memory', ...extra], {
    bin: PRISE_BIN,
    ms: STARTUP_MS,
    log: remember,
  });
  ctx[key] = server;
  const tcp = server.addrs.tcp;
  const cut = tcp.lastIndexOf(':');
  return { http: `http://${server.addrs.http}`, tcp: { host: tcp.slice(0, cut), port: Number(tcp.slice(cut + 1)) } };
}

async function stopServer(key = 'server') {
  if (ctx[key]) await ctx[key].stop();
}

process.on('exit', () => {
  for (const server of [ctx.server, ctx.authServer]) {
    const child = server && server.child;
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});

const deadline = setTimeout(async () => {
  process.stderr.write(`browser test: whole run exceeded ${RUN_DEADLINE_MS} ms\n`);
  await screenshots('deadline').catch(() => {});
  if (ctx.browser) await ctx.browser.close().catch(() => {});
  await stopServer().catch(() => {});
  process.exit(1);
}, RUN_DEADLINE_MS);
deadline.unref();

// ---------------------------------------------------------------- fault injection
/**
 * A TCP forwarder in front of the HTTP port: the test can cut every
 * connection through it and refuse new ones, as a dropped network would.
 */
function cutter(target) {
  const conns = new Set();
  let blocked = false;
  const server = net.createServer((client) => {
    if (blocked) {
      client.destroy();
      return;
    }
    const upstream = net.connect({ host: target.host, port: target.port });
    const pair = [client, upstream];
    conns.add(pair);
    const end = () => {
      conns.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        base: `http://127.0.0.1:${server.address().port}`,
        cut() {
          blocked = true;
          for (const [a, b] of conns) {
            a.destroy();
            b.destroy();
          }
          conns.clear();
        },
        restore() {
          blocked = false;
        },
        close() {
          this.cut();
          server.close();
        },
      });
    });
  });
}

// ---------------------------------------------------------------- browser helpers
async function openAs(name, options, base = ctx.httpBase) {
  const context = await ctx.browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on('pageerror', (err) => ctx.pageErrors.push(`${name}: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/WebSocket connection to .* failed/.test(msg.text())) {
      ctx.pageErrors.push(`${name} console: ${msg.text()}`);
    }
  });
  await page.goto(`${base}/`);
  await page.getByTestId('login').waitFor({ state: 'visible' });
  await page.getByTestId('nickname-input').fill(name);
  await page.getByTestId('login-submit').click();
  await connected(page);
  ctx.pages[name] = page;
  return page;
}

function connected(page) {
  return page.locator('[data-testid="conn-status"][data-state="open"]').waitFor();
}

function message(page, author, text) {
  return page.locator(`[data-testid="message-list"] [data-testid="message"][data-author="${author}"]`, { hasText: text });
}

function presence(page, name) {
  return page.locator(`[data-testid="presence-list"] [data-testid="presence-item"][data-name="${name}"]`);
}

async function send(page, text) {
  await page.getByTestId('composer-input').fill(text);
  await page.getByTestId('composer-input').press('Enter');
}

async function numberIn(page, testId, atLeast) {
  await page.waitForFunction(
    ([id, min]) => {
      const node = document.querySelector(`[data-testid="${id}"]`);
      const n = node ? Number(node.textContent.replace(/[^\d.]/g, '')) : NaN;
      return Number.isFinite(n) && n >= min;
    },
    [testId, atLeast],
    { timeout: WAIT_MS },
  );
}

async function screenshots(label) {
  const safe = label.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '').toLowerCase();
  for (const [name, page] of Object.entries(ctx.pages)) {
    if (page.isClosed()) continue;
    const file = path.join(OUT, `failure-${safe}-${name}.png`);
    await page.screenshot({ path: file, fullPage: false, timeout: 3000 }).catch(() => {});
    process.stderr.write(`screenshot: ${path.relative(ROOT, file)}\n`);
  }
}

/** One scenario; after a failure the later ones fail at once instead of waiting out their timeouts. */
function step(name, fn) {
  test(name, async () => {
    if (ctx.broken) throw new Error(`not run: an earlier step failed (${ctx.broken})`);
    try {
      await fn();
    } catch (err) {
      ctx.broken = name;
      await screenshots(name);
      if (ctx.serverLog.length) {
        process.stderr.write(`--- last server output ---\n${ctx.serverLog.slice(-40).join('\n')}\n`);
      }
      throw err;
    }
  });
}

// ---------------------------------------------------------------- lifecycle
before(async () => {
  for (const f of fs.readdirSync(OUT)) if (f.endsWith('.png')) fs.rmSync(path.join(OUT, f));
  const addr = await startServer();
  ctx.httpBase = addr.http;
  ctx.tcpPort = addr.tcp;
  ctx.browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 20000 });
});

after(async () => {
  if (ctx.carol) ctx.carol.close();
  if (ctx.cutter) ctx.cutter.close();
  if (ctx.browser) await ctx.browser.close().catch(() => {});
  await stopServer();
  await stopServer('authServer');
});

// ---------------------------------------------------------------- scenarios
step('the page is served with its script and stylesheet', async () => {
  for (const [file, type] of [
    ['/', /text\/html/],
    ['/app.js', /javascript/],
    ['/style.css', /text\/css/],
  ]) {
    const res = await fetch(`${ctx.httpBase}${file}`);
    assert.equal(res.status, 200, `GET ${file}`);
    assert.match(res.headers.get('content-type') || '', type, `content type of ${file}`);
  }
});

step('alice and bob join general and see each other present', async () => {
  const alice = await openAs('alice', { colorScheme: 'light' });
  const bob = await openAs('bob', { colorScheme: 'dark' });
  for (const page of [alice, bob]) {
    await page.locator('[data-testid="room-item"][data-room="general"]').waitFor();
    assert.equal((await page.locator('#room-title-text').textContent()).trim(), 'general');
  }
  await presence(alice, 'bob').waitFor();
  await presence(bob, 'alice').waitFor();
  await presence(alice, 'alice').waitFor();
});

step('typing shows an indicator to the other user and clears on stop', async () => {
  const { alice, bob } = ctx.pages;
  const indicator = bob.getByTestId('typing-indicator');
  await alice.getByTestId('composer-input').fill('hel');
  await indicator.filter({ hasText: 'alice is typing' }).waitFor();
  // Emptying the box sends typing:false; the wait is shorter than the page's
  // 6 s expiry of a stale indicator, so only the explicit stop can pass it.
  await alice.getByTestId('composer-input').fill('');
  await indicator.waitFor({ state: 'hidden', timeout: 4000 });
});

step('alice and bob exchange messages both ways', async () => {
  const { alice, bob } = ctx.pages;
  await send(alice, 'hello bob');
  await message(bob, 'alice', 'hello bob').waitFor();
  await message(alice, 'alice', 'hello bob').waitFor();
  await send(bob, 'hi alice');
  await message(alice, 'bob', 'hi alice').waitFor();
  await message(bob, 'bob', 'hi alice').waitFor();
  assert.equal(await alice.getByTestId('message-pending').count(), 0, 'no message left pending');
});

step('a TCP line-protocol user shares the room with the browsers', async () => {
  const { alice, bob } = ctx.pages;
  const carol = lineClient(`${ctx.tcpPort.host}:${ctx.tcpPort.port}`, WAIT_MS);
  ctx.carol = carol;
  await carol.until(/./); // greeting
  carol.send('NICK carol');
  carol.send('JOIN general');
  await presence(alice, 'carol').waitFor();
  await presence(bob, 'carol').waitFor();

  carol.send('SAY general hello from nc');
  const shown = message(alice, 'carol', 'hello from nc');
  await shown.waitFor();
  await message(bob, 'carol', 'hello from nc').waitFor();
  const offset = await shown.getAttribute('data-offset');
  assert.match(offset || '', /^\d+$/, 'message carries its offset');
  await carol.until(new RegExp(`^OK ${offset}$`));

  await send(alice, 'welcome carol');
  await carol.until(/^MSG general \d+ alice welcome carol$/);

  // A named event is not a chat message: it goes to the room's event log.
  carol.send('EMIT general move {"x":3}');
  await carol.until(/^OK \d+$/);
  const logged = alice.locator('[data-testid="event-list"] [data-testid="event"][data-event="move"]');
  await logged.waitFor({ state: 'attached' });
  assert.match(await logged.textContent(), /carol.*move.*\{"x":3\}/);
  assert.equal(await alice.getByTestId('event-count').textContent(), '1');
  assert.equal(await alice.getByTestId('event-log').isVisible(), true, 'the log shows once it has an event');
  await alice.getByTestId('event-log').locator('summary').click();
  await logged.waitFor();
});

step('a reload shows the room history', async () => {
  const { bob } = ctx.pages;
  await bob.reload();
  await connected(bob);
  for (const [author, text] of [
    ['alice', 'hello bob'],
    ['bob', 'hi alice'],
    ['carol', 'hello from nc'],
    ['alice', 'welcome carol'],
  ]) {
    await message(bob, author, text).waitFor();
  }
  const offsets = await bob
    .locator('[data-testid="message-list"] [data-testid="message"]')
    .evaluateAll((nodes) => nodes.map((n) => Number(n.dataset.offset)));
  assert.ok(offsets.length >= 4, `history has the 4 messages (got ${offsets.length})`);
  assert.deepEqual(offsets, [...offsets].sort((a, b) => a - b), 'history is in offset order');
  await presence(bob, 'alice').waitFor();
  await presence(bob, 'carol').waitFor();
  // The event came back from history into the log, not into the chat.
  await bob.locator('[data-testid="event-list"] [data-testid="event"][data-event="move"]').waitFor({ state: 'attached' });
  assert.equal(await bob.getByTestId('event-count').textContent(), '1');
  assert.ok(offsets.length === 4, `the event is not a chat message (got ${offsets.length} messages)`);
});

step('after a dropped connection the page reconnects and catches up from its last offset', async () => {
  const { alice } = ctx.pages;
  ctx.cutter = await cutter({ host: new URL(ctx.httpBase).hostname, port: Number(new URL(ctx.httpBase).port) });
  const dave = await openAs('dave', { colorScheme: 'light' }, ctx.cutter.base);
  const joins = [];
  dave.on('websocket', (ws) =>
    ws.on('framesent', (f) => {
      try {
        const msg = JSON.parse(String(f.payload));
        if (msg.type === 'join') joins.push(msg);
      } catch (_) {
        /* not JSON */
      }
    }),
  );
  await message(dave, 'alice', 'welcome carol').waitFor();
  // The last offset the page saw: a chat message's or an event's.
  await dave.locator('[data-testid="event-list"] [data-testid="event"]').last().waitFor({ state: 'attached' });
  const seen = Math.max(
    Number(await dave.locator('[data-testid="message-list"] [data-testid="message"]').last().getAttribute('data-offset')),
    Number(await dave.locator('[data-testid="event-list"] [data-testid="event"]').last().getAttribute('data-offset')),
  );

  ctx.cutter.cut();
  await dave.locator('[data-testid="conn-status"][data-state="waiting"]').waitFor();
  await send(alice, 'sent while dave was away');
  await message(alice, 'alice', 'sent while dave was away').waitFor();
  ctx.cutter.restore();

  await connected(dave);
  await message(dave, 'alice', 'sent while dave was away').waitFor();
  const resume = joins.find((j) => j.room === 'general');
  assert.ok(resume, 'the page joined general again');
  assert.equal(resume.since, seen, 'the join resumed from the last offset seen');
  const offsets = await dave
    .locator('[data-testid="message-list"] [data-testid="message"]')
    .evaluateAll((nodes) => nodes.map((n) => Number(n.dataset.offset)));
  assert.equal(new Set(offsets).size, offsets.length, 'no message shown twice');
  assert.deepEqual(offsets, [...offsets].sort((a, b) => a - b), 'messages stay in offset order');
  await dave.context().close();
  delete ctx.pages.dave;
});

step('rooms: create, switch, and unread counts', async () => {
  const { alice, bob } = ctx.pages;
  for (const page of [alice, bob]) {
    await page.getByTestId('new-room-input').fill('random');
    await page.getByTestId('new-room-input').press('Enter');
    await page.locator('[data-testid="room-item"][data-room="random"].active').waitFor();
  }
  await presence(alice, 'bob').waitFor();
  await bob.locator('[data-testid="room-item"][data-room="general"] [data-testid="room-button"]').click();
  await bob.locator('[data-testid="room-item"][data-room="general"].active').waitFor();

  await send(alice, 'anyone in random?');
  const badge = bob.locator('[data-testid="room-item"][data-room="random"] [data-testid="room-unread"]');
  await badge.filter({ hasText: /^1$/ }).waitFor();
  await send(alice, 'second one');
  await badge.filter({ hasText: /^2$/ }).waitFor();
  // a message in the open room adds no badge
  ctx.carol.send('SAY general still in general');
  await message(bob, 'carol', 'still in general').waitFor();
  assert.equal(await bob.locator('[data-testid="room-item"][data-room="general"] [data-testid="room-unread"]').count(), 0);

  await bob.locator('[data-testid="room-item"][data-room="random"] [data-testid="room-button"]').click();
  await message(bob, 'alice', 'anyone in random?').waitFor();
  await message(bob, 'alice', 'second one').waitFor();
  await badge.waitFor({ state: 'detached' });
  // back to general for the final picture
  await bob.locator('[data-testid="room-item"][data-room="general"] [data-testid="room-button"]').click();
  await alice.locator('[data-testid="room-item"][data-room="general"] [data-testid="room-button"]').click();
});

step('the dashboard shows live connections, rates and rooms', async () => {
  const { alice } = ctx.pages;
  await alice.getByTestId('tab-dashboard').click();
  await alice.getByTestId('view-dashboard').waitFor();
  await numberIn(alice, 'stat-conn-total', 3);
  await numberIn(alice, 'stat-conn-ws', 2);
  await numberIn(alice, 'stat-conn-tcp', 1);
  await numberIn(alice, 'stat-messages-total', 7);
  const general = alice.locator('[data-testid="stats-room-row"][data-room="general"]');
  await general.waitFor();
  await numberIn(alice, 'stats-room-members', 1);
  assert.ok(Number(await general.getByTestId('stats-room-members').textContent()) >= 3, 'general has 3 members');
  assert.ok(Number(await general.getByTestId('stats-room-offset').textContent()) >= 5, 'general offset counts its messages');
  await alice.locator('[data-testid="stats-room-row"][data-room="random"]').waitFor();
  // Two more polls so the chart has a line to draw in the final picture.
  for (let i = 0; i < 2; i++) {
    const before = await alice.getByTestId('stats-updated').textContent();
    await alice.waitForFunction(
      (prev) => document.querySelector('[data-testid="stats-updated"]').textContent !== prev,
      before,
      { timeout: 4000 },
    );
  }
});

step('on a narrow screen the room list opens as a drawer', async () => {
  const { bob } = ctx.pages;
  await bob.setViewportSize({ width: 390, height: 800 });
  const rooms = bob.getByTestId('sidebar');
  await bob.getByTestId('sidebar-toggle').click();
  await bob.waitForFunction(() => {
    const r = document.querySelector('[data-testid="sidebar"]').getBoundingClientRect();
    return r.left >= 0 && r.right <= window.innerWidth;
  });
  await rooms.locator('[data-testid="room-item"][data-room="random"]').waitFor();
  await bob.screenshot({ path: path.join(OUT, 'final-mobile-rooms.png') });
  await rooms.locator('[data-testid="room-item"][data-room="general"] [data-testid="room-button"]').click();
  await bob.waitForFunction(() => document.querySelector('[data-testid="sidebar"]').getBoundingClientRect().right <= 0);
  await message(bob, 'carol', 'hello from nc').waitFor();
  await bob.screenshot({ path: path.join(OUT, 'final-mobile-chat.png') });
  await bob.setViewportSize({ width: 1280, height: 800 });
});

step('on a server that requires sign-in, a bad token is refused and a valid one signs in with its name', async () => {
  const secret = crypto.randomBytes(16).toString('hex');
  const addr = await startServer(['--jwt-secret', secret, '--anonymous', 'deny'], 'authServer');
  const context = await ctx.browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on('pageerror', (err) => ctx.pageErrors.push(`dana: ${err.message}`));
  ctx.pages.dana = page;
  await page.goto(`${addr.http}/`);
  await page.getByTestId('login').waitFor({ state: 'visible' });
  await page.getByTestId('nickname-input').fill('dana');
  await page.getByTestId('token-input').fill(jwt({ sub: 'u-dana', name: 'Dana', exp: Math.floor(Date.now() / 1000) + 600 }, 'not-the-secret'));
  await page.getByTestId('login-submit').click();
  await page.getByTestId('login').waitFor({ state: 'visible' });
  await page.locator('[data-testid="login-error"]:not([hidden])').waitFor();
  assert.match(await page.getByTestId('login-error').textContent(), /signature|auth/i);
  await page.getByTestId('token-input').fill(jwt({ sub: 'u-dana', name: 'Dana', exp: Math.floor(Date.now() / 1000) + 600 }, secret));
  await page.getByTestId('login-submit').click();
  await connected(page);
  await page.locator('[data-testid="me-name"]', { hasText: 'Dana' }).waitFor();
  await send(page, 'signed in with a token');
  await message(page, 'Dana', 'signed in with a token').waitFor();
  // The token stays in the tab (sessionStorage), not on disk (localStorage).
  const stored = await page.evaluate(() => [sessionStorage.getItem('prise.token') !== null, JSON.stringify(localStorage).includes('eyJ')]);
  assert.deepEqual(stored, [true, false]);
});

step('no script errors on the page', async () => {
  assert.deepEqual(ctx.pageErrors, []);
  const { alice, bob } = ctx.pages;
  await alice.screenshot({ path: path.join(OUT, 'final-dashboard.png') });
  await bob.screenshot({ path: path.join(OUT, 'final-chat.png') });
});
