// The Socket.IO "get started" chat (chat.html: socket.emit('chat message')
// and socket.on('chat message')) between two headless Chromium tabs, with
// prise as its server from chat.toml alone. A tiny static server of this
// test serves the page and the official client bundle; the page talks to
// prise (polling first, then the websocket upgrade, as the client does).
//   node chat.mjs   (PRISE_BIN: the binary; CHROMIUM_BIN: default /usr/bin/chromium)

import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import path from "node:path";
import { checks, startPrise } from "../common/harness.mjs";

const HERE = import.meta.dirname;
const ROOT = path.resolve(HERE, "..", "..");
const BIN = process.env.PRISE_BIN || path.join(ROOT, "target", "debug", "prise");
const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
// Pinned in tests/browser (playwright-core) and tests/socketio (the client bundle).
const { chromium } = createRequire(path.join(ROOT, "tests", "browser", "package.json"))("playwright-core");
const BUNDLE = path.join(ROOT, "tests", "socketio", "node_modules", "socket.io-client", "dist", "socket.io.min.js");

const server = await startPrise(["--config", path.join(HERE, "chat.toml")], { bin: BIN });
const PRISE = `http://${server.addrs.http}`;

const files = {
  "/": ["text/html", path.join(HERE, "chat.html")],
  "/socket.io/socket.io.js": ["text/javascript", BUNDLE],
};
const web = http.createServer((req, res) => {
  const file = files[new URL(req.url, "http://x").pathname];
  if (!file) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { "content-type": file[0] });
  fs.createReadStream(file[1]).pipe(res);
});
await new Promise((res) => web.listen(0, "127.0.0.1", res));
const PAGE = `http://127.0.0.1:${web.address().port}/?server=${encodeURIComponent(PRISE)}`;

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
const errors = [];
const { check, finish } = checks({ limitMs: 30000 });

async function tab() {
  const page = await (await browser.newContext()).newPage();
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(PAGE);
  // Connected once the socket says so (it joined `lobby` on connect).
  await page.waitForFunction(() => typeof socket !== "undefined" && socket.connected, null, { timeout: 10000 });
  return page;
}

const items = (page) => page.$$eval("#messages > li", (lis) => lis.map((li) => li.textContent));

async function say(page, text) {
  await page.fill("#input", text);
  await page.click("#form > button");
}

await check("two tabs chat through prise with only a config file", async () => {
  const [one, two] = [await tab(), await tab()];
  await say(one, "hello from one");
  for (const p of [one, two]) {
    await p.waitForFunction(() => document.querySelectorAll("#messages > li").length === 1, null, { timeout: 10000 });
  }
  await say(two, "and back from two");
  for (const p of [one, two]) {
    await p.waitForFunction(() => document.querySelectorAll("#messages > li").length === 2, null, { timeout: 10000 });
    assert.deepEqual(await items(p), ["hello from one", "and back from two"], "io.emit: the sender too, in order");
  }
  const transport = await one.evaluate(() => socket.io.engine.transport.name);
  assert.equal(transport, "websocket", "upgraded from polling");
  assert.deepEqual(errors, []);
});

await browser.close();
web.close();
await server.stop();
finish();
