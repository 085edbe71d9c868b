// An EventSource in headless Chromium against `prise serve`'s /sse.
//
// The page is written here and served from this script's own HTTP server,
// so the EventSource is cross-origin: the hub is started with
// --allowed-origins naming the page's origin. The hub runs on its SQLite
// store; it is stopped and started again on the same port while the page
// stays open. Chromium's reconnect is held (by request interception) until
// messages were published on the restarted hub, so it can only see them
// through Last-Event-ID and the hub's durable history.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { checks, lineClient, startPrise, until } from '../common/harness.mjs';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const require = createRequire(path.join(ROOT, 'tests', 'browser', 'package.json'));
const { chromium } = require('playwright-core');

const PRISE_BIN = process.env.PRISE_BIN
  ? path.resolve(process.env.PRISE_BIN)
  : path.join(ROOT, 'target', 'debug', 'prise');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const WAIT_MS = 8000;

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>sse</title>
<pre id="log"></pre>
<script>
  const hub = new URLSearchParams(location.search).get('hub');
  window.events = [];
  if (hub) {
  window.opens = 0;
  const es = new EventSource(hub + '/sse?room=news&room=sports');
  const keep = (e) => {
    window.events.push({ type: e.type, id: e.lastEventId, data: JSON.parse(e.data) });
    document.getElementById('log').textContent += e.type + ' ' + e.lastEventId + '\\n';
  };
  for (const name of ['ready', 'message', 'gap', 'joined', 'left']) es.addEventListener(name, keep);
  es.onopen = () => window.opens++;
  }
</script>`;

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'prise-sse-'));
const state = { hub: null, browser: null, site: null, tcp: null, log: [] };

function serveSite() {
  return new Promise((resolve) => {
    const server = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(PAGE);
    });
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

async function startHub(httpAddr, origin) {
  const hub = await startPrise(
    ['--http', httpAddr, '--tcp', '127.0.0.1:0', '--store', 'sqlite', '--data', dataDir, '--allowed-origins', origin],
    { bin: PRISE_BIN, log: (l) => state.log.push(l) },
  );
  state.hub = hub;
  return hub;
}

async function publisher(hub) {
  const tcp = lineClient(hub.addrs.tcp, WAIT_MS);
  await tcp.until('HELLO');
  tcp.send('JOIN news');
  await tcp.until('OK news');
  tcp.send('JOIN sports');
  await tcp.until('OK sports');
  state.tcp = tcp;
  return tcp;
}

async function say(tcp, room, text) {
  tcp.send(`SAY ${room} ${text}`);
  await tcp.until(/^OK \d+$/);
}

const t0 = Date.now();
const mark = (what) => console.log(`     ${((Date.now() - t0) / 1000).toFixed(1)}s ${what}`);
const { check, finish } = checks({ limitMs: 45000 });

await check('an EventSource resumes with Last-Event-ID after the hub restarts', async () => {
  state.site = await serveSite();
  const origin = `http://127.0.0.1:${state.site.address().port}`;
  let hub = await startHub('127.0.0.1:0', origin);
  const hubAddr = hub.addrs.http;
  state.browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  const page = await state.browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));

  // Every /sse request passes through here and, while `hold` is set,
  // waits. (Chromium adds Last-Event-ID below the interception layer, so
  // the hub's answer is what shows it arrived: a `ready` with `resumed`.)
  const requests = [];
  let hold = null;
  await page.route('**/sse?**', async (route) => {
    requests.push(route.request().url());
    if (hold) await hold.promise;
    await route.continue();
  });

  mark('browser up');
  await page.goto(`${origin}/?hub=http://${hubAddr}`);
  const events = () => page.evaluate(() => window.events);
  const messages = async () => (await events()).filter((e) => e.type === 'message');
  await until(async () => (await events()).some((e) => e.type === 'ready'), WAIT_MS, 'ready');
  let tcp = await publisher(hub);
  await say(tcp, 'news', 'one');
  await say(tcp, 'sports', 'two');
  await until(async () => (await messages()).length === 2, WAIT_MS, 'two live messages');

  // Hold the reconnect, restart the hub on the same port, publish.
  let release;
  hold = { promise: new Promise((res) => (release = res)) };
  tcp.close();
  await hub.stop();
  mark('hub stopped');
  await until(() => requests.length === 2, WAIT_MS, 'the reconnect attempt');
  mark('reconnect held');
  hub = await startHub(hubAddr, origin);
  tcp = await publisher(hub);
  await say(tcp, 'news', 'three');
  await say(tcp, 'sports', 'four');
  hold = null;
  release();
  await until(async () => (await messages()).length === 4, WAIT_MS, 'the missed messages');
  await say(tcp, 'news', 'five');
  await until(async () => (await messages()).length === 5, WAIT_MS, 'a live message after the resume');

  assert.equal(requests.length, 2, 'one reconnect');
  const got = await messages();
  assert.deepEqual(
    got.map((e) => [e.id, e.data.roomId, e.data.content]),
    [
      ['1', 'news', 'one'],
      ['2', 'sports', 'two'],
      ['3', 'news', 'three'],
      ['4', 'sports', 'four'],
      ['5', 'news', 'five'],
    ],
  );
  const readies = (await events()).filter((e) => e.type === 'ready');
  assert.deepEqual(
    readies.map((e) => [e.id, e.data.resumed]),
    // The resumed stream's ready carries no id: the client keeps its own.
    [['0', false], ['2', true]],
  );
  assert.ok(!(await events()).some((e) => e.type === 'gap'), 'no gap');
  assert.ok((await page.evaluate(() => window.opens)) >= 2);
  assert.deepEqual(errors, []);
});

await check('a page on an origin not allowed cannot read the stream', async () => {
  // The same page from another port: another origin, not in --allowed-origins.
  const elsewhere = await serveSite();
  const other = await state.browser.newPage();
  await other.goto(`http://127.0.0.1:${elsewhere.address().port}/`);
  const result = await other.evaluate(
    (hub) =>
      new Promise((resolve) => {
        const es = new EventSource(`${hub}/sse?room=news`);
        es.onopen = () => resolve('open');
        es.onerror = () => resolve(es.readyState === EventSource.CLOSED ? 'closed' : 'retrying');
      }),
    `http://${state.hub.addrs.http}`,
  );
  assert.equal(result, 'closed');
  await other.close();
  elsewhere.close();
});

if (state.tcp) state.tcp.close();
if (state.browser) await state.browser.close();
if (state.hub) await state.hub.stop();
if (state.site) state.site.close();
fs.rmSync(dataDir, { recursive: true, force: true });
if (process.exitCode) console.log(state.log.slice(-30).join('\n'));
finish();
