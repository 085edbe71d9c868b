// The connection to the hub: one WebSocket speaking the JSON protocol at /ws,
// with sign-in, requests answered by their `id`, a heartbeat, and reconnects
// with backoff. The WebSocket class, the timers, the clock and the random
// source are passed in, so tests drive it with fakes.
//
//   connect() -> "connecting" -> open: auth sent -> auth_success (or an error,
//   or silence for AUTH_WAIT_MS: anonymous) -> "open", hooks.ready(user)
//   close / heartbeat timeout -> hooks.closed(code) -> "waiting" -> connect()
//   close 4001 / auth_failed -> "closed", hooks.signInNeeded(reason)

import { backoffDelay, countdownText, nextAttempt } from './backoff.js';

/** A request without an answer after this long fails. */
export const REQUEST_TIMEOUT_MS = 10000;
/** Anonymous servers may not answer `auth`: after this long we go on without. */
export const AUTH_WAIT_MS = 3000;
/** Heartbeat: ping this often, drop the socket if no pong within the timeout. */
export const PING_INTERVAL_MS = 20000;
export const PONG_TIMEOUT_MS = 10000;
/** A connection open this long resets the backoff. */
export const STABLE_AFTER_MS = 5000;
/** The close code of a refused or expired sign-in: no reconnect, the user signs in again. */
export const CLOSE_SIGNED_OUT = 4001;
/** How often the "Reconnecting in N s" countdown is redrawn. */
const COUNTDOWN_TICK_MS = 500;

/** The WebSocket URL of the hub that served `location`. */
export function wsUrl(location) {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/ws`;
}

/** The `auth` frame: the token only when there is one. */
export function authFrame(name, token) {
  return token ? { type: 'auth', name, token } : { type: 'auth', name };
}

/** A frame from the server as an object, or null for anything else. */
export function parseFrame(data) {
  let msg;
  try {
    msg = JSON.parse(data);
  } catch (_) {
    return null;
  }
  return msg && typeof msg === 'object' ? msg : null;
}

/** What the user is told when the server closes with `code`; null for nothing. */
export function closeNotice(code, reason) {
  if (code === 1008) return `Disconnected by the server: ${reason || 'policy violation'}. Reconnecting…`;
  if (code === 1009) return 'Disconnected: a message was too large. Reconnecting…';
  if (code === 1001) return 'The server is restarting. Reconnecting…';
  return null;
}

/**
 * The page's one connection. `credentials()` gives `{ name, token }` (no
 * name: stay offline). `hooks` (all optional):
 *   status(status, text)  the state for the status line: idle, connecting,
 *                         open, waiting, closed
 *   ready(user)           signed in (user: the server's record, or null)
 *   frame(msg)            a frame that is not an answer nor connection business
 *   closed(code, reason)  the socket is gone (pending requests failed already)
 *   notice(text)          something to tell the user
 *   signInNeeded(reason)  sign-in refused: no reconnect until `restart`
 */
export class Connection {
  constructor({ url, credentials, hooks = {}, WebSocket = globalThis.WebSocket, timers = globalThis, now = () => Date.now(), random = Math.random }) {
    this.url = url;
    this.credentials = credentials;
    this.hooks = hooks;
    this.WebSocket = WebSocket;
    this.timers = timers;
    this.now = now;
    this.random = random;
    this.ws = null;
    this.status = 'idle';
    this.ready = false;
    this.attempt = 0;
    this.retryAt = 0;
    this.retryTimer = null;
    this.countdownTimer = null;
    this.stableTimer = null;
    this.pingTimer = null;
    this.pongTimer = null;
    this.authTimer = null;
    this.nextId = 1;
    this.pending = new Map();
  }

  setStatus(status, text) {
    this.status = status;
    if (this.hooks.status) this.hooks.status(status, text);
  }

  isOpen() {
    return this.ws !== null && this.ws.readyState === this.WebSocket.OPEN;
  }

  /** Sends `obj` as is; false when there is no open socket. */
  send(obj) {
    if (!this.isOpen()) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  /**
   * Sends `obj` with a fresh `id` and resolves with the answer that echoes
   * it; rejects with the server's error (its `code` set), when no answer
   * comes within `timeoutMs`, or when the connection is lost.
   */
  request(obj, timeoutMs = REQUEST_TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
      if (!this.isOpen()) {
        reject(new Error('Not connected'));
        return;
      }
      const id = this.nextId++;
      const timer = this.timers.setTimeout(() => {
        this.pending.delete(id);
        reject(new Error('No answer from the server'));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.send({ ...obj, id });
    });
  }

  failPending(reason) {
    for (const [id, p] of this.pending) {
      this.timers.clearTimeout(p.timer);
      p.reject(new Error(reason));
      this.pending.delete(id);
    }
  }

  /** Opens the socket unless one is open or there is no name; cancels a scheduled retry. */
  connect() {
    this.clearRetry();
    if (!this.credentials().name) return;
    if (this.ws) return;
    this.setStatus('connecting', 'Connecting…');
    let ws;
    try {
      ws = new this.WebSocket(this.url);
    } catch (_) {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    this.ready = false;
    ws.addEventListener('open', () => {
      if (this.ws !== ws) return;
      const { name, token } = this.credentials();
      this.send(authFrame(name, token));
      // Anonymous servers may not answer auth; the name also travels in every join.
      this.authTimer = this.timers.setTimeout(() => this.becomeReady(null), AUTH_WAIT_MS);
      this.pingTimer = this.timers.setInterval(() => this.heartbeat(), PING_INTERVAL_MS);
    });
    ws.addEventListener('message', (ev) => {
      if (this.ws !== ws) return;
      const msg = parseFrame(ev.data);
      if (msg) this.handle(msg);
    });
    ws.addEventListener('close', (ev) => {
      if (this.ws !== ws) return;
      this.onClosed(ev.code, ev.reason);
    });
  }

  heartbeat() {
    if (!this.isOpen() || this.pongTimer) return;
    this.send({ type: 'ping', timestamp: this.now() });
    this.pongTimer = this.timers.setTimeout(() => {
      this.pongTimer = null;
      this.dropSocket(4000, 'heartbeat timeout');
    }, PONG_TIMEOUT_MS);
  }

  clearSocketTimers() {
    this.timers.clearTimeout(this.authTimer);
    this.timers.clearTimeout(this.stableTimer);
    this.timers.clearInterval(this.pingTimer);
    this.timers.clearTimeout(this.pongTimer);
    this.authTimer = this.stableTimer = this.pingTimer = this.pongTimer = null;
  }

  clearRetry() {
    this.timers.clearTimeout(this.retryTimer);
    this.timers.clearInterval(this.countdownTimer);
  }

  /** Forgets the current socket at once (close handshakes on a dead link can take long). */
  dropSocket(code, reason) {
    const ws = this.ws;
    if (!ws) return;
    this.onClosed(code, reason);
    try {
      ws.close(1000);
    } catch (_) {
      /* already closing */
    }
  }

  becomeReady(user) {
    if (this.ready) return;
    this.timers.clearTimeout(this.authTimer);
    this.ready = true;
    this.setStatus('open', 'Connected');
    this.stableTimer = this.timers.setTimeout(() => {
      this.attempt = 0;
    }, STABLE_AFTER_MS);
    if (this.hooks.ready) this.hooks.ready(user);
  }

  onClosed(code, reason) {
    this.ws = null;
    this.ready = false;
    this.clearSocketTimers();
    this.failPending('Connection lost');
    if (this.hooks.closed) this.hooks.closed(code, reason);
    if (code === CLOSE_SIGNED_OUT) {
      this.setStatus('closed', 'Signed out');
      if (this.hooks.signInNeeded) this.hooks.signInNeeded(reason || 'Authentication failed');
      return;
    }
    const notice = closeNotice(code, reason);
    if (notice && this.hooks.notice) this.hooks.notice(notice);
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    this.clearRetry();
    const delay = backoffDelay(this.attempt, this.random());
    this.attempt = nextAttempt(this.attempt);
    this.retryAt = this.now() + delay;
    const tick = () => this.setStatus('waiting', countdownText(this.retryAt, this.now()));
    tick();
    this.countdownTimer = this.timers.setInterval(tick, COUNTDOWN_TICK_MS);
    this.retryTimer = this.timers.setTimeout(() => this.connect(), delay);
  }

  /** Reconnects at once, with a fresh backoff (the user asked, or the network came back). */
  retryNow() {
    this.attempt = 0;
    if (this.ws) this.dropSocket(1000, 'reconnect');
    this.clearRetry();
    this.connect();
  }

  /** Connects anew with the current credentials (the user signed in again). */
  restart() {
    if (this.ws) this.dropSocket(1000, 'nickname changed');
    this.attempt = 0;
    this.clearRetry();
    this.connect();
  }

  handle(msg) {
    if (msg.id !== undefined && msg.id !== null && this.pending.has(msg.id)) {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      this.timers.clearTimeout(p.timer);
      if (msg.type === 'error') {
        const err = new Error(msg.message || msg.code || 'Request failed');
        err.code = msg.code;
        p.reject(err);
      } else {
        p.resolve(msg);
      }
      return;
    }
    switch (msg.type) {
      case 'auth_success':
        this.becomeReady(msg.user || null);
        return;
      case 'auth_failed':
        this.setStatus('closed', 'Sign-in refused');
        if (this.hooks.signInNeeded) this.hooks.signInNeeded(msg.message || 'Authentication failed');
        return;
      case 'pong':
        this.timers.clearTimeout(this.pongTimer);
        this.pongTimer = null;
        return;
      case 'error':
        // A server that does not know "auth" answers with an error: go on anonymously.
        if (!this.ready) this.becomeReady(null);
        break;
      default:
        break;
    }
    if (this.hooks.frame) this.hooks.frame(msg);
  }
}
