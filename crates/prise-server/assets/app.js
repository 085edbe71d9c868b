// prise web client: chat over the WebSocket JSON protocol at /ws and a live
// dashboard fed by GET /stats. Plain browser JavaScript, no build step and no
// dependencies, so the server can embed it as a static file.
(() => {
  'use strict';

  // ---------------------------------------------------------------- limits
  /** Messages kept in memory per room; older ones are dropped from view. */
  const MAX_MESSAGES = 500;
  /** Messages asked for when a room is first opened. */
  const HISTORY_LIMIT = 50;
  /** A request without an answer after this long fails. */
  const REQUEST_TIMEOUT_MS = 10000;
  /** Our "typing" stops this long after the last keystroke. */
  const TYPING_IDLE_MS = 3000;
  /** While typing goes on, "typing: true" is repeated this often. */
  const TYPING_REFRESH_MS = 4000;
  /** Someone else's "typing" expires if not refreshed within this time. */
  const TYPING_REMOTE_TTL_MS = 6000;
  /** Heartbeat: ping this often, drop the socket if no pong within the timeout. */
  const PING_INTERVAL_MS = 20000;
  const PONG_TIMEOUT_MS = 10000;
  /** Reconnect backoff: exponential from BASE, capped, with jitter. */
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_CAP_MS = 15000;
  /** A connection open this long resets the backoff. */
  const STABLE_AFTER_MS = 5000;
  /** Dashboard: poll period and chart window. */
  const STATS_PERIOD_MS = 1000;
  const STATS_WINDOW = 60;
  /** Two messages closer than this from one author are drawn as one group. */
  const GROUP_GAP_MS = 5 * 60 * 1000;

  const NAME_RE = /^[\p{L}\p{N}_.\-]{1,32}$/u;
  /** Room names as the server takes them: no spaces or control characters. */
  const ROOM_RE = /^[^\s\p{Cc}]{1,64}$/u;
  const URL_RE = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;

  // ---------------------------------------------------------------- helpers
  const $ = (id) => document.getElementById(id);
  const store = {
    get(key, fallback) {
      try {
        const v = localStorage.getItem(key);
        return v === null ? fallback : JSON.parse(v);
      } catch (_) {
        return fallback;
      }
    },
    set(key, value) {
      try {
        localStorage.setItem(key, JSON.stringify(value));
      } catch (_) {
        /* private mode or quota: the page still works without persistence */
      }
    },
  };

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'class') node.className = v;
        else if (k === 'text') node.textContent = v;
        else if (k === 'dataset') Object.assign(node.dataset, v);
        else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
        else node.setAttribute(k, v === true ? '' : v);
      }
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  function hue(name) {
    let h = 0;
    for (const ch of String(name)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
    return h % 360;
  }

  function paintAvatar(node, name) {
    node.textContent = (Array.from(String(name || '?'))[0] || '?').toUpperCase();
    node.style.setProperty('--hue', hue(name));
  }

  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });
  const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', month: 'long', day: 'numeric' });

  function dayKey(ts) {
    const d = new Date(ts);
    return d.getFullYear() * 10000 + d.getMonth() * 100 + d.getDate();
  }

  function dayLabel(ts) {
    const now = new Date();
    const today = dayKey(now.getTime());
    const yesterday = dayKey(now.getTime() - 86400000);
    const k = dayKey(ts);
    if (k === today) return 'Today';
    if (k === yesterday) return 'Yesterday';
    return dayFmt.format(new Date(ts));
  }

  function formatUptime(seconds) {
    const s = Math.max(0, Math.floor(Number(seconds) || 0));
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = s % 60;
    if (d > 0) return `${d}d ${h}h`;
    if (h > 0) return `${h}h ${m}m`;
    if (m > 0) return `${m}m ${sec}s`;
    return `${sec}s`;
  }

  function formatRate(v) {
    const n = Number(v) || 0;
    if (n >= 100) return Math.round(n).toLocaleString();
    return n.toFixed(1);
  }

  function num(v) {
    const n = Number(v);
    return Number.isFinite(n) ? n : 0;
  }

  function fillContent(node, content) {
    node.textContent = '';
    if (typeof content !== 'string') {
      node.append(el('code', { text: JSON.stringify(content) }));
      return;
    }
    let last = 0;
    for (const match of content.matchAll(URL_RE)) {
      if (match.index > last) node.append(content.slice(last, match.index));
      node.append(el('a', { href: match[0], target: '_blank', rel: 'noopener noreferrer', text: match[0] }));
      last = match.index + match[0].length;
    }
    if (last < content.length) node.append(content.slice(last));
  }

  // ---------------------------------------------------------------- state
  /**
   * One room the user has joined. `items` holds messages and system notes in
   * display order; each item has a sort `key` (a message's offset, or the last
   * offset seen plus one half for a note) so that replayed history slots in
   * before notes that arrived later.
   */
  function newRoom(name) {
    return {
      name,
      items: [],
      offsets: new Set(),
      ids: new Set(),
      lastOffset: 0,
      epoch: null,
      joined: false,
      joinedOnce: false,
      joining: false,
      members: new Map(),
      typing: new Map(),
      unread: 0,
      pending: [],
    };
  }

  /** The access token lives for the tab only (sessionStorage), never on disk. */
  const tokenStore = {
    get() {
      try {
        return sessionStorage.getItem('prise.token') || '';
      } catch (_) {
        return '';
      }
    },
    set(token) {
      try {
        if (token) sessionStorage.setItem('prise.token', token);
        else sessionStorage.removeItem('prise.token');
      } catch (_) {
        /* storage unavailable: the token lasts until the page is closed */
      }
    },
  };

  const state = {
    name: store.get('prise.name', null),
    token: tokenStore.get(),
    me: null,
    rooms: new Map(),
    order: [],
    active: null,
    view: 'chat',
    otherRooms: [],
  };

  const conn = {
    ws: null,
    status: 'idle',
    attempt: 0,
    retryAt: 0,
    retryTimer: null,
    countdownTimer: null,
    stableTimer: null,
    pingTimer: null,
    pongTimer: null,
    authTimer: null,
    nextId: 1,
    pending: new Map(),
    ready: false,
  };

  // ---------------------------------------------------------------- dom refs
  const ui = {
    status: $('conn-status'),
    statusText: document.querySelector('#conn-status .status-text'),
    retryNow: $('retry-now'),
    me: $('me'),
    meName: $('me-name'),
    meAvatar: $('me-avatar'),
    themeToggle: $('theme-toggle'),
    banner: $('error-banner'),
    bannerText: $('error-text'),
    bannerClose: $('error-close'),
    tabChat: $('tab-chat'),
    tabDash: $('tab-dashboard'),
    tabChatBadge: $('tab-chat-badge'),
    viewChat: $('view-chat'),
    viewDash: $('view-dashboard'),
    sidebar: $('sidebar'),
    sidebarToggle: $('sidebar-toggle'),
    members: $('members'),
    membersToggle: $('members-toggle'),
    membersCountBtn: $('members-count-btn'),
    scrim: $('scrim'),
    roomList: $('room-list'),
    roomsEmpty: $('rooms-empty'),
    otherSection: $('other-rooms-section'),
    otherRooms: $('other-rooms'),
    newRoomForm: $('new-room-form'),
    newRoomInput: $('new-room-input'),
    newRoomError: $('new-room-error'),
    roomTitle: $('room-title-text'),
    roomSub: $('room-sub'),
    list: $('message-list'),
    empty: $('messages-empty'),
    jump: $('jump-latest'),
    typing: $('typing'),
    typingText: $('typing-text'),
    composer: $('composer'),
    input: $('composer-input'),
    send: $('composer-send'),
    presence: $('presence-list'),
    membersCount: $('members-count'),
    login: $('login'),
    loginForm: $('login-form'),
    nickname: $('nickname-input'),
    token: $('token-input'),
    loginError: $('login-error'),
    tpl: $('tpl-message'),
  };

  // ---------------------------------------------------------------- errors
  let bannerTimer = null;
  function showError(text) {
    ui.bannerText.textContent = text;
    ui.banner.hidden = false;
    clearTimeout(bannerTimer);
    bannerTimer = setTimeout(hideError, 10000);
  }
  function hideError() {
    clearTimeout(bannerTimer);
    ui.banner.hidden = true;
  }
  function describeError(err) {
    if (!err) return 'Unknown error';
    if (err.code) return `${err.message || err.code} (${err.code})`;
    return err.message || String(err);
  }

  // ---------------------------------------------------------------- connection
  function wsUrl() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${proto}//${location.host}/ws`;
  }

  function setStatus(status, text) {
    conn.status = status;
    ui.status.dataset.state = status;
    ui.statusText.textContent = text;
    ui.status.title = text;
    ui.retryNow.hidden = status !== 'waiting' && status !== 'closed';
    const ok = status === 'open';
    ui.send.disabled = !ok;
  }

  function isOpen() {
    return conn.ws !== null && conn.ws.readyState === WebSocket.OPEN;
  }

  function rawSend(obj) {
    if (!isOpen()) return false;
    conn.ws.send(JSON.stringify(obj));
    return true;
  }

  /** Sends a request with a fresh `id` and resolves with the answer that echoes it. */
  function request(obj, timeoutMs = REQUEST_TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
      if (!isOpen()) {
        reject(new Error('Not connected'));
        return;
      }
      const id = conn.nextId++;
      const timer = setTimeout(() => {
        conn.pending.delete(id);
        reject(new Error('No answer from the server'));
      }, timeoutMs);
      conn.pending.set(id, { resolve, reject, timer });
      rawSend({ ...obj, id });
    });
  }

  function failPending(reason) {
    for (const [id, p] of conn.pending) {
      clearTimeout(p.timer);
      p.reject(new Error(reason));
      conn.pending.delete(id);
    }
  }

  function connect() {
    clearTimeout(conn.retryTimer);
    clearInterval(conn.countdownTimer);
    if (!state.name) return;
    if (conn.ws) return;
    setStatus('connecting', 'Connecting…');
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (err) {
      scheduleReconnect(`Cannot connect: ${err.message}`);
      return;
    }
    conn.ws = ws;
    conn.ready = false;
    ws.addEventListener('open', () => {
      if (conn.ws !== ws) return;
      rawSend(state.token ? { type: 'auth', name: state.name, token: state.token } : { type: 'auth', name: state.name });
      // Anonymous servers may not answer auth; the name also travels in every join.
      conn.authTimer = setTimeout(() => onReady(null), 3000);
      conn.pingTimer = setInterval(heartbeat, PING_INTERVAL_MS);
    });
    ws.addEventListener('message', (ev) => {
      if (conn.ws !== ws) return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (_) {
        return;
      }
      if (msg && typeof msg === 'object') handle(msg);
    });
    ws.addEventListener('close', (ev) => {
      if (conn.ws !== ws) return;
      onClosed(ev.code, ev.reason);
    });
  }

  function heartbeat() {
    if (!isOpen() || conn.pongTimer) return;
    rawSend({ type: 'ping', timestamp: Date.now() });
    conn.pongTimer = setTimeout(() => {
      conn.pongTimer = null;
      dropSocket(4000, 'heartbeat timeout');
    }, PONG_TIMEOUT_MS);
  }

  function clearSocketTimers() {
    clearTimeout(conn.authTimer);
    clearTimeout(conn.stableTimer);
    clearInterval(conn.pingTimer);
    clearTimeout(conn.pongTimer);
    conn.authTimer = conn.stableTimer = conn.pingTimer = conn.pongTimer = null;
  }

  /** Forgets the current socket at once (close handshakes on a dead link can take long). */
  function dropSocket(code, reason) {
    const ws = conn.ws;
    if (!ws) return;
    onClosed(code, reason);
    try {
      ws.close(1000);
    } catch (_) {
      /* already closing */
    }
  }

  function onReady(user) {
    if (conn.ready) return;
    clearTimeout(conn.authTimer);
    conn.ready = true;
    if (user) {
      state.me = user;
      // With a token, the server's name (from its claims) is the one others see.
      if (user.name && user.name !== ui.meName.textContent) {
        ui.meName.textContent = user.name;
        paintAvatar(ui.meAvatar, user.name);
      }
    }
    setStatus('open', 'Connected');
    conn.stableTimer = setTimeout(() => {
      conn.attempt = 0;
    }, STABLE_AFTER_MS);
    for (const name of state.order) joinRoom(name);
    refreshOtherRooms();
  }

  function onClosed(code, reason) {
    conn.ws = null;
    conn.ready = false;
    clearSocketTimers();
    failPending('Connection lost');
    stopTyping(false);
    for (const room of state.rooms.values()) {
      room.joined = false;
      room.joining = false;
      room.typing.clear();
      for (const p of room.pending) {
        if (p.status === 'sending' && !p.messageId) {
          p.status = 'failed';
          p.error = 'Connection lost';
        }
      }
    }
    renderActive();
    if (code === 4001) {
      setStatus('closed', 'Signed out');
      openLogin(reason || 'Authentication failed');
      return;
    }
    if (code === 1008) showError(`Disconnected by the server: ${reason || 'policy violation'}. Reconnecting…`);
    else if (code === 1009) showError('Disconnected: a message was too large. Reconnecting…');
    else if (code === 1001) showError('The server is restarting. Reconnecting…');
    scheduleReconnect();
  }

  function scheduleReconnect() {
    clearTimeout(conn.retryTimer);
    clearInterval(conn.countdownTimer);
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** conn.attempt);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    conn.attempt = Math.min(conn.attempt + 1, 16);
    conn.retryAt = Date.now() + delay;
    const tick = () => {
      const left = Math.max(0, Math.ceil((conn.retryAt - Date.now()) / 1000));
      setStatus('waiting', left > 0 ? `Reconnecting in ${left} s` : 'Reconnecting…');
    };
    tick();
    conn.countdownTimer = setInterval(tick, 500);
    conn.retryTimer = setTimeout(connect, delay);
  }

  function reconnectNow() {
    if (conn.ws) dropSocket(1000, 'reconnect');
    clearTimeout(conn.retryTimer);
    clearInterval(conn.countdownTimer);
    connect();
  }

  // ---------------------------------------------------------------- protocol
  function handle(msg) {
    if (msg.id !== undefined && msg.id !== null && conn.pending.has(msg.id)) {
      const p = conn.pending.get(msg.id);
      conn.pending.delete(msg.id);
      clearTimeout(p.timer);
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
        onReady(msg.user || null);
        break;
      case 'auth_failed':
        setStatus('closed', 'Sign-in refused');
        openLogin(msg.message || 'Authentication failed');
        break;
      case 'pong':
        clearTimeout(conn.pongTimer);
        conn.pongTimer = null;
        break;
      case 'message':
        if (msg.message) onMessage(msg.message, true);
        break;
      case 'joined':
        onJoined(msg.room, msg.user);
        break;
      case 'left':
        onLeft(msg.room, msg.user);
        break;
      case 'typing':
        onTyping(msg);
        break;
      case 'error':
        if (!conn.ready) {
          // A server that does not know "auth" answers with an error: go on anonymously.
          onReady(null);
        }
        showError(describeError(msg));
        break;
      default:
        break;
    }
  }

  function isMine(m) {
    if (state.me && m.userId !== undefined) return m.userId === state.me.id;
    return m.userName === state.name;
  }

  /** Inserts a message in offset order; returns false for a duplicate. */
  function insertMessage(room, m) {
    const offset = Number(m.offset);
    const hasOffset = Number.isFinite(offset);
    if ((hasOffset && room.offsets.has(offset)) || (m.id && room.ids.has(m.id))) return false;
    const item = { kind: 'msg', key: hasOffset ? offset : room.lastOffset + 0.25, m };
    if (hasOffset) room.offsets.add(offset);
    if (m.id) room.ids.add(m.id);
    let i = room.items.length;
    while (i > 0 && room.items[i - 1].key > item.key) i--;
    room.items.splice(i, 0, item);
    if (hasOffset && offset > room.lastOffset) room.lastOffset = offset;
    while (room.items.length > MAX_MESSAGES) {
      const gone = room.items.shift();
      if (gone.kind === 'msg') {
        room.offsets.delete(Number(gone.m.offset));
        if (gone.m.id) room.ids.delete(gone.m.id);
      }
    }
    item.atEnd = i === room.items.length - 1;
    return item;
  }

  function addNote(room, html) {
    const item = { kind: 'note', key: room.lastOffset + 0.5, parts: html, ts: Date.now() };
    room.items.push(item);
    while (room.items.length > MAX_MESSAGES) room.items.shift();
    if (room.name === state.active && state.view === 'chat') appendItem(room, item);
  }

  function onMessage(m, live) {
    const room = state.rooms.get(m.roomId);
    if (!room) return;
    const item = insertMessage(room, m);
    const settled = room.pending.findIndex((p) => p.messageId && p.messageId === m.id);
    if (settled >= 0) room.pending.splice(settled, 1);
    if (!item) {
      if (settled >= 0) renderActive();
      return;
    }
    if (live && room.typing.has(m.userId)) {
      clearTimeout(room.typing.get(m.userId).timer);
      room.typing.delete(m.userId);
      if (room.name === state.active) renderTyping();
    }
    const visible = room.name === state.active && state.view === 'chat';
    if (live && !isMine(m) && !visible) {
      room.unread++;
      renderRooms();
      renderTitle();
    }
    if (room.name === state.active) {
      if (item.atEnd && settled < 0) appendItem(room, item);
      else renderMessages();
    }
  }

  function onJoined(roomName, user) {
    const room = state.rooms.get(roomName);
    if (!room || !user) return;
    const known = memberNames(room).has(user.name);
    room.members.set(user.id, user);
    if (!known) addNote(room, [el('strong', { text: user.name }), ' joined']);
    if (room.name === state.active) renderPresence();
    renderOtherRoomsSoon();
  }

  function onLeft(roomName, user) {
    const room = state.rooms.get(roomName);
    if (!room || !user) return;
    room.members.delete(user.id);
    const t = room.typing.get(user.id);
    if (t) {
      clearTimeout(t.timer);
      room.typing.delete(user.id);
    }
    if (!memberNames(room).has(user.name)) addNote(room, [el('strong', { text: user.name }), ' left']);
    if (room.name === state.active) {
      renderPresence();
      renderTyping();
    }
  }

  function onTyping(msg) {
    const room = state.rooms.get(msg.roomId || msg.room);
    if (!room) return;
    if (state.me && msg.userId === state.me.id) return;
    const prev = room.typing.get(msg.userId);
    if (prev) clearTimeout(prev.timer);
    if (msg.typing) {
      const timer = setTimeout(() => {
        room.typing.delete(msg.userId);
        if (room.name === state.active) {
          renderTyping();
          renderPresence();
        }
      }, TYPING_REMOTE_TTL_MS);
      room.typing.set(msg.userId, { name: msg.userName || 'someone', timer });
    } else {
      room.typing.delete(msg.userId);
    }
    if (room.name === state.active) {
      renderTyping();
      renderPresence();
    }
  }

  // ---------------------------------------------------------------- rooms
  function persistRooms() {
    store.set('prise.rooms', state.order);
    store.set('prise.active', state.active);
  }

  async function joinRoom(name) {
    const room = state.rooms.get(name);
    if (!room || room.joining || room.joined || !conn.ready) return;
    room.joining = true;
    const resume = room.joinedOnce;
    const req = { type: 'join', room: name, name: state.name };
    if (resume) {
      req.since = room.lastOffset;
      if (room.epoch !== null) req.epoch = room.epoch;
    }
    let ack;
    try {
      ack = await request(req);
    } catch (err) {
      room.joining = false;
      if (!state.rooms.has(name)) return;
      if (err.code) {
        showError(`Cannot join #${name}: ${describeError(err)}`);
        if (!room.joinedOnce) removeRoom(name);
      }
      return;
    }
    if (state.rooms.get(name) !== room) return;
    room.joining = false;
    room.joined = true;
    room.joinedOnce = true;
    const offset = Number(ack.offset);
    // recovered:false means the server could not replay from our offset (the
    // history was reset or retention dropped part of it): start over.
    const reset =
      resume &&
      (ack.recovered === false ||
        (ack.epoch !== undefined && room.epoch !== null && ack.epoch !== room.epoch) ||
        (Number.isFinite(offset) && offset < room.lastOffset));
    if (reset) {
      // The room's history was lost or reset: what we hold no longer lines up.
      room.items = [];
      room.offsets.clear();
      room.ids.clear();
      room.lastOffset = 0;
      addNote(room, ['Reconnected: some earlier messages could not be recovered']);
    }
    if (ack.epoch !== undefined) room.epoch = ack.epoch;
    room.members.clear();
    for (const u of ack.members || []) if (u && u.id !== undefined) room.members.set(u.id, u);
    if (state.me) room.members.set(state.me.id, state.me);
    if (room.name === state.active) {
      renderPresence();
      renderHeader();
    }
    if (!resume || reset) loadHistory(room);
  }

  async function loadHistory(room) {
    let res;
    try {
      res = await request({ type: 'history', room: room.name, limit: HISTORY_LIMIT });
    } catch (err) {
      if (err.code) showError(`Cannot load history of #${room.name}: ${describeError(err)}`);
      return;
    }
    if (state.rooms.get(room.name) !== room) return;
    if (res.epoch !== undefined && room.epoch === null) room.epoch = res.epoch;
    for (const m of res.messages || []) {
      if (m && m.roomId === undefined) m.roomId = room.name;
      insertMessage(room, m);
    }
    if (room.name === state.active) renderMessages(true);
  }

  function addRoom(name, activate) {
    let room = state.rooms.get(name);
    if (!room) {
      room = newRoom(name);
      state.rooms.set(name, room);
      state.order.push(name);
    }
    if (activate || !state.active) setActive(name);
    persistRooms();
    renderRooms();
    joinRoom(name);
    return room;
  }

  function removeRoom(name) {
    const room = state.rooms.get(name);
    if (!room) return;
    for (const t of room.typing.values()) clearTimeout(t.timer);
    state.rooms.delete(name);
    const idx = state.order.indexOf(name);
    if (idx >= 0) state.order.splice(idx, 1);
    if (state.active === name) {
      const next = state.order[Math.min(idx, state.order.length - 1)] || null;
      state.active = null;
      if (next) setActive(next);
      else renderActive();
    }
    persistRooms();
    renderRooms();
    renderTitle();
  }

  async function leaveRoom(name) {
    const room = state.rooms.get(name);
    if (!room) return;
    if (typingRoom === name) stopTyping(true);
    const wasJoined = room.joined;
    removeRoom(name);
    if (wasJoined) {
      try {
        await request({ type: 'leave', room: name });
      } catch (err) {
        if (err.code) showError(`Leaving #${name}: ${describeError(err)}`);
      }
    }
    refreshOtherRooms();
  }

  function setActive(name) {
    if (!state.rooms.has(name)) return;
    if (typingRoom && typingRoom !== name) stopTyping(true);
    state.active = name;
    const room = state.rooms.get(name);
    if (state.view === 'chat') room.unread = 0;
    persistRooms();
    renderRooms();
    renderActive();
    renderTitle();
    closeDrawers();
  }

  let otherRoomsTimer = null;
  async function refreshOtherRooms() {
    if (!conn.ready) return;
    let res;
    try {
      res = await request({ type: 'rooms' });
    } catch (_) {
      return;
    }
    state.otherRooms = Array.isArray(res.rooms) ? res.rooms : [];
    renderRooms();
  }
  function renderOtherRoomsSoon() {
    clearTimeout(otherRoomsTimer);
    otherRoomsTimer = setTimeout(refreshOtherRooms, 400);
  }

  // ---------------------------------------------------------------- sending
  let localSeq = 0;
  function sendMessage(text, retryOf) {
    const room = state.rooms.get(state.active);
    if (!room) return;
    let p = retryOf;
    if (!p) {
      p = { localId: ++localSeq, content: text, status: 'sending', messageId: null, ts: Date.now() };
      room.pending.push(p);
      if (room.pending.length > 50) room.pending.shift();
    } else {
      p.status = 'sending';
      p.error = null;
      p.ts = Date.now();
    }
    renderMessages();
    scrollToBottom();
    if (!conn.ready || !room.joined) {
      p.status = 'failed';
      p.error = 'Not connected';
      renderMessages();
      return;
    }
    request({ type: 'message', room: room.name, content: p.content })
      .then((ack) => {
        p.messageId = ack.messageId || null;
        if (!p.messageId || room.ids.has(p.messageId)) {
          const i = room.pending.indexOf(p);
          if (i >= 0) room.pending.splice(i, 1);
          if (room.name === state.active) renderMessages();
          return;
        }
        // The broadcast normally arrives with the ack; if it does not, show the
        // message from the ack rather than leave it pending.
        setTimeout(() => {
          const i = room.pending.indexOf(p);
          if (i < 0) return;
          room.pending.splice(i, 1);
          onMessage(
            {
              id: p.messageId,
              roomId: room.name,
              userId: state.me ? state.me.id : undefined,
              userName: state.name,
              content: p.content,
              timestamp: p.ts,
              offset: ack.offset,
            },
            false,
          );
          if (room.name === state.active) renderMessages();
        }, 3000);
      })
      .catch((err) => {
        p.status = 'failed';
        p.error = describeError(err);
        if (err.code) showError(`Message not sent: ${describeError(err)}`);
        if (room.name === state.active) renderMessages();
      });
  }

  // typing (ours)
  let typingRoom = null;
  let typingSentAt = 0;
  let typingIdle = null;

  function noteTyping() {
    const room = state.active;
    if (!room || !conn.ready) return;
    if (ui.input.value.trim() === '') {
      stopTyping(true);
      return;
    }
    if (typingRoom !== room) {
      stopTyping(true);
      typingRoom = room;
      typingSentAt = 0;
    }
    if (Date.now() - typingSentAt > TYPING_REFRESH_MS) {
      rawSend({ type: 'typing', room, typing: true });
      typingSentAt = Date.now();
    }
    clearTimeout(typingIdle);
    typingIdle = setTimeout(() => stopTyping(true), TYPING_IDLE_MS);
  }

  function stopTyping(tell) {
    clearTimeout(typingIdle);
    typingIdle = null;
    if (typingRoom && tell) rawSend({ type: 'typing', room: typingRoom, typing: false });
    typingRoom = null;
    typingSentAt = 0;
  }

  // ---------------------------------------------------------------- rendering: chat
  function renderTitle() {
    let unread = 0;
    for (const r of state.rooms.values()) unread += r.unread;
    const where = state.view === 'dashboard' ? 'Dashboard' : state.active ? `#${state.active}` : 'Chat';
    document.title = `${unread > 0 ? `(${unread}) ` : ''}${where} · prise`;
    ui.tabChatBadge.hidden = !(unread > 0 && state.view !== 'chat');
    ui.tabChatBadge.textContent = String(unread);
  }

  function renderRooms() {
    ui.roomList.textContent = '';
    for (const name of state.order) {
      const room = state.rooms.get(name);
      const active = name === state.active;
      const label = room.unread > 0 ? `#${name}, ${room.unread} unread` : `#${name}`;
      const btn = el(
        'button',
        {
          class: 'room-btn',
          type: 'button',
          'aria-label': label,
          'aria-current': active ? 'true' : null,
          'data-testid': 'room-button',
          onclick: () => setActive(name),
        },
        el('span', { class: 'hash', 'aria-hidden': 'true', text: '#' }),
        el('span', { class: 'room-name', text: name }),
        room.unread > 0
          ? el('span', { class: 'unread', 'data-testid': 'room-unread', 'aria-hidden': 'true', text: room.unread > 99 ? '99+' : String(room.unread) })
          : null,
      );
      const leave = el('button', {
        class: 'room-leave',
        type: 'button',
        title: `Leave #${name}`,
        'aria-label': `Leave #${name}`,
        'data-testid': 'room-leave',
        text: '×',
        onclick: () => leaveRoom(name),
      });
      ui.roomList.append(
        el('li', { class: `room${active ? ' active' : ''}${room.unread ? ' has-unread' : ''}`, 'data-testid': 'room-item', 'data-room': name }, btn, leave),
      );
    }
    ui.roomsEmpty.hidden = state.order.length > 0;

    const others = state.otherRooms.filter((r) => r && r.name && !state.rooms.has(r.name));
    others.sort((a, b) => num(b.members) - num(a.members) || String(a.name).localeCompare(b.name));
    ui.otherRooms.textContent = '';
    for (const r of others.slice(0, 30)) {
      ui.otherRooms.append(
        el(
          'li',
          { class: 'room', 'data-testid': 'other-room', 'data-room': r.name },
          el(
            'button',
            { class: 'room-btn', type: 'button', 'aria-label': `Join #${r.name}, ${num(r.members)} online`, onclick: () => addRoom(r.name, true) },
            el('span', { class: 'hash', 'aria-hidden': 'true', text: '#' }),
            el('span', { class: 'room-name', text: r.name }),
            el('span', { class: 'room-meta', 'aria-hidden': 'true', text: `${num(r.members)} online` }),
          ),
        ),
      );
    }
    ui.otherSection.hidden = others.length === 0;
  }

  function renderHeader() {
    const room = state.rooms.get(state.active);
    ui.roomTitle.textContent = room ? room.name : 'No room';
    const n = room ? memberNames(room).size : 0;
    ui.roomSub.textContent = room ? (room.joined ? `${n} online` : conn.ready ? 'joining…' : 'offline') : '';
    ui.input.disabled = !room;
    ui.input.placeholder = room ? `Message #${room.name}` : 'Join a room to chat';
    ui.send.disabled = !room || conn.status !== 'open';
  }

  function renderActive() {
    renderHeader();
    renderMessages(true);
    renderPresence();
    renderTyping();
  }

  function nearBottom() {
    const l = ui.list;
    return l.scrollHeight - l.scrollTop - l.clientHeight < 80;
  }

  function scrollToBottom() {
    ui.list.scrollTop = ui.list.scrollHeight;
    ui.jump.hidden = true;
  }

  function isGrouped(prev, m) {
    return (
      prev &&
      prev.kind === 'msg' &&
      prev.m.userName === m.userName &&
      prev.m.userId === m.userId &&
      Math.abs(num(m.timestamp) - num(prev.m.timestamp)) < GROUP_GAP_MS &&
      dayKey(num(m.timestamp)) === dayKey(num(prev.m.timestamp))
    );
  }

  function itemTs(item) {
    return item.kind === 'msg' ? num(item.m.timestamp) : item.ts;
  }

  function messageNode(m, prevItem, extraClass) {
    const node = ui.tpl.content.firstElementChild.cloneNode(true);
    const ts = num(m.timestamp) || Date.now();
    if (m.offset !== undefined) node.dataset.offset = String(m.offset);
    node.dataset.author = m.userName || '';
    if (isGrouped(prevItem, m)) node.classList.add('cont');
    if (isMine(m)) node.classList.add('mine');
    if (extraClass) node.classList.add(extraClass);
    paintAvatar(node.querySelector('.avatar'), m.userName);
    node.querySelector('.msg-author').textContent = m.userName || 'unknown';
    const time = node.querySelector('.msg-time');
    time.dateTime = new Date(ts).toISOString();
    time.textContent = timeFmt.format(new Date(ts));
    time.title = fullFmt.format(new Date(ts));
    node.title = fullFmt.format(new Date(ts));
    fillContent(node.querySelector('.msg-content'), m.content);
    return node;
  }

  function itemNodes(item, prevItem) {
    const nodes = [];
    const ts = itemTs(item);
    if (!prevItem || dayKey(itemTs(prevItem)) !== dayKey(ts)) {
      nodes.push(el('li', { class: 'day', role: 'separator', 'data-testid': 'day-separator', text: dayLabel(ts) }));
      prevItem = null;
    }
    if (item.kind === 'msg') nodes.push(messageNode(item.m, prevItem));
    else nodes.push(el('li', { class: 'sys', 'data-testid': 'system-note' }, ...item.parts.map((p) => (typeof p === 'string' ? p : p.cloneNode(true)))));
    return nodes;
  }

  function pendingNode(room, p) {
    const node = messageNode(
      { userName: state.name, userId: state.me ? state.me.id : undefined, content: p.content, timestamp: p.ts },
      room.items[room.items.length - 1],
      p.status === 'failed' ? 'failed' : 'pending',
    );
    node.dataset.pending = 'true';
    node.dataset.testid = 'message-pending';
    const body = node.querySelector('.msg-body');
    if (p.status === 'failed') {
      body.append(
        el(
          'div',
          { class: 'msg-status', 'data-testid': 'message-failed' },
          `Not sent: ${p.error || 'error'}`,
          el('button', { class: 'msg-retry', type: 'button', text: 'Retry', onclick: () => sendMessage(null, p) }),
          el('button', {
            class: 'msg-retry',
            type: 'button',
            text: 'Discard',
            onclick: () => {
              const i = room.pending.indexOf(p);
              if (i >= 0) room.pending.splice(i, 1);
              renderMessages();
            },
          }),
        ),
      );
    } else {
      body.append(el('div', { class: 'msg-status', text: 'sending…' }));
    }
    return node;
  }

  function renderMessages(toBottom) {
    const room = state.rooms.get(state.active);
    const stick = toBottom || nearBottom();
    ui.list.setAttribute('aria-busy', 'true');
    ui.list.textContent = '';
    if (room) {
      const frag = document.createDocumentFragment();
      let prev = null;
      for (const item of room.items) {
        frag.append(...itemNodes(item, prev));
        prev = item;
      }
      for (const p of room.pending) frag.append(pendingNode(room, p));
      ui.list.append(frag);
    }
    ui.list.removeAttribute('aria-busy');
    ui.empty.hidden = !room || room.items.some((i) => i.kind === 'msg') || room.pending.length > 0;
    if (stick) scrollToBottom();
  }

  /** Appends one item at the end of the open room without redrawing the rest. */
  function appendItem(room, item) {
    if (room.pending.length > 0) {
      renderMessages();
      return;
    }
    const stick = nearBottom() || (item.kind === 'msg' && isMine(item.m));
    const idx = room.items.indexOf(item);
    const prev = idx > 0 ? room.items[idx - 1] : null;
    ui.list.append(...itemNodes(item, prev));
    while (ui.list.children.length > MAX_MESSAGES * 2) ui.list.firstElementChild.remove();
    ui.empty.hidden = !room.items.some((i) => i.kind === 'msg');
    if (stick) scrollToBottom();
    else if (item.kind === 'msg') ui.jump.hidden = false;
  }

  function memberNames(room) {
    const names = new Map();
    for (const u of room.members.values()) if (u && u.name !== undefined) names.set(u.name, u);
    return names;
  }

  function renderPresence() {
    const room = state.rooms.get(state.active);
    ui.presence.textContent = '';
    if (!room) {
      ui.membersCount.textContent = '0';
      ui.membersCountBtn.textContent = '0';
      return;
    }
    const names = memberNames(room);
    const typingNames = new Set(Array.from(room.typing.values(), (t) => t.name));
    const list = Array.from(names.keys()).sort((a, b) => {
      if (a === state.name) return -1;
      if (b === state.name) return 1;
      return a.localeCompare(b);
    });
    for (const name of list) {
      const avatar = el('span', { class: 'avatar avatar-xs online', 'aria-hidden': 'true' });
      paintAvatar(avatar, name);
      ui.presence.append(
        el(
          'li',
          { 'data-testid': 'presence-item', 'data-name': name },
          avatar,
          el('span', { class: 'pname', text: name }),
          name === state.name ? el('span', { class: 'you', text: 'you' }) : null,
          typingNames.has(name) ? el('span', { class: 'is-typing', text: 'typing…' }) : null,
        ),
      );
    }
    ui.membersCount.textContent = String(list.length);
    ui.membersCountBtn.textContent = String(list.length);
    ui.roomSub.textContent = room.joined ? `${list.length} online` : conn.ready ? 'joining…' : 'offline';
  }

  function renderTyping() {
    const room = state.rooms.get(state.active);
    const names = room ? Array.from(new Set(Array.from(room.typing.values(), (t) => t.name))) : [];
    let text = '';
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length === 3) text = `${names[0]}, ${names[1]} and ${names[2]} are typing…`;
    else if (names.length > 3) text = `${names[0]}, ${names[1]} and ${names.length - 2} others are typing…`;
    ui.typingText.textContent = text;
    ui.typing.classList.toggle('active', names.length > 0);
    ui.typingText.hidden = names.length === 0;
  }

  // ---------------------------------------------------------------- dashboard
  const dash = { timer: null, inflight: false, samples: [], lastOk: 0, rooms: [] };
  const chart = $('rate-chart');

  function statsWanted() {
    return state.view === 'dashboard' && document.visibilityState !== 'hidden';
  }

  function syncStatsPolling() {
    if (statsWanted()) {
      if (!dash.timer) {
        pollStats();
        dash.timer = setInterval(pollStats, STATS_PERIOD_MS);
      }
    } else if (dash.timer) {
      clearInterval(dash.timer);
      dash.timer = null;
    }
  }

  async function pollStats() {
    if (dash.inflight) return;
    dash.inflight = true;
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), 3000);
    try {
      const res = await fetch('/stats', { cache: 'no-store', signal: ctrl.signal, headers: { accept: 'application/json' } });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      renderStats(await res.json());
    } catch (err) {
      const u = $('stats-updated');
      u.classList.add('stale');
      u.textContent = `Stats unavailable: ${err.name === 'AbortError' ? 'timed out' : err.message}`;
    } finally {
      clearTimeout(timer);
      dash.inflight = false;
    }
  }

  function setText(id, text) {
    const node = $(id);
    if (node.textContent !== text) node.textContent = text;
  }

  function renderStats(s) {
    const c = s.connections || {};
    const ws = num(c.ws);
    const tcp = num(c.tcp);
    const sio = num(c.socketio);
    let total = 0;
    for (const v of Object.values(c)) total += num(v);
    setText('stat-conn-total', total.toLocaleString());
    setText('stat-conn-ws', ws.toLocaleString());
    setText('stat-conn-tcp', tcp.toLocaleString());
    setText('stat-conn-socketio', sio.toLocaleString());
    const mps = num(s.messagesPerSecond);
    setText('stat-mps', formatRate(mps));
    setText('stat-messages-total', num(s.messagesTotal).toLocaleString());
    setText('stat-uptime', formatUptime(s.uptimeSeconds));
    setText('stat-slow', num(s.slowConsumerDisconnects).toLocaleString());

    dash.samples.push(mps);
    if (dash.samples.length > STATS_WINDOW) dash.samples.shift();
    setText('stat-mps-peak', formatRate(Math.max(...dash.samples)));
    drawChart();

    const rooms = Array.isArray(s.rooms) ? s.rooms.slice() : [];
    rooms.sort((a, b) => num(b.members) - num(a.members) || String(a.name).localeCompare(String(b.name)));
    dash.rooms = rooms;
    setText('stat-room-count', rooms.length.toLocaleString());
    renderStatsRooms(rooms);

    const u = $('stats-updated');
    u.classList.remove('stale');
    u.textContent = `Live · updated ${new Date().toLocaleTimeString()}`;
  }

  function renderStatsRooms(rooms) {
    const body = $('stats-rooms-body');
    body.textContent = '';
    const maxMembers = Math.max(1, ...rooms.map((r) => num(r.members)));
    for (const r of rooms.slice(0, 200)) {
      const name = String(r.name);
      const joined = state.rooms.has(name);
      body.append(
        el(
          'tr',
          { 'data-testid': 'stats-room-row', 'data-room': name },
          el('td', { 'data-testid': 'stats-room-name' }, el('span', { class: 'hash', 'aria-hidden': 'true', text: '# ' }), name),
          el(
            'td',
            { class: 'num', 'data-testid': 'stats-room-members' },
            el('span', { class: 'bar', 'aria-hidden': 'true', style: `width:${Math.round((num(r.members) / maxMembers) * 48)}px` }),
            num(r.members).toLocaleString(),
          ),
          el('td', { class: 'num', 'data-testid': 'stats-room-offset', text: num(r.offset).toLocaleString() }),
          el(
            'td',
            { class: 'act' },
            el('button', {
              class: 'link-btn',
              type: 'button',
              text: joined ? 'Open' : 'Join',
              'aria-label': `${joined ? 'Open' : 'Join'} #${name}`,
              onclick: () => {
                addRoom(name, true);
                setView('chat');
              },
            }),
          ),
        ),
      );
    }
    $('stats-rooms-empty').hidden = rooms.length > 0;
    $('stats-rooms-sub').textContent = rooms.length > 200 ? `top 200 of ${rooms.length}` : '';
  }

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  /** The smallest 1, 2 or 5 times a power of ten that is at least v. */
  function niceStep(v) {
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 5]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function drawChart() {
    const box = chart.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) return;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.round(box.width * dpr);
    const h = Math.round(box.height * dpr);
    if (chart.width !== w || chart.height !== h) {
      chart.width = w;
      chart.height = h;
    }
    const ctx = chart.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const W = box.width;
    const H = box.height;
    ctx.clearRect(0, 0, W, H);
    const padL = 36;
    const padR = 8;
    const padT = 10;
    const padB = 20;
    const plotW = W - padL - padR;
    const plotH = H - padT - padB;
    const data = dash.samples;
    const gridStep = niceStep(Math.max(0.5, (Math.max(0, ...data) * 1.1) / 4));
    const max = gridStep * 4;
    const border = cssVar('--border');
    const muted = cssVar('--text-3');
    const accent = cssVar('--accent');

    ctx.font = `11px ${cssVar('--font') || 'sans-serif'}`;
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'right';
    ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = Math.round(padT + plotH - (plotH * i) / 4) + 0.5;
      ctx.strokeStyle = border;
      ctx.beginPath();
      ctx.moveTo(padL, y);
      ctx.lineTo(W - padR, y);
      ctx.stroke();
      ctx.fillStyle = muted;
      const label = gridStep * i;
      ctx.fillText(Number.isInteger(label) ? label.toLocaleString() : label.toFixed(1), padL - 6, y);
    }
    ctx.textAlign = 'left';
    ctx.textBaseline = 'alphabetic';
    ctx.fillText('-60 s', padL, H - 4);
    ctx.textAlign = 'right';
    ctx.fillText('now', W - padR, H - 4);

    if (data.length === 0) return;
    const step = plotW / (STATS_WINDOW - 1);
    const x0 = W - padR - (data.length - 1) * step;
    const pt = (i) => [x0 + i * step, padT + plotH - (Math.min(data[i], max) / max) * plotH];

    const grad = ctx.createLinearGradient(0, padT, 0, padT + plotH);
    grad.addColorStop(0, hexAlpha(accent, 0.28));
    grad.addColorStop(1, hexAlpha(accent, 0));
    ctx.beginPath();
    ctx.moveTo(pt(0)[0], padT + plotH);
    for (let i = 0; i < data.length; i++) ctx.lineTo(...pt(i));
    ctx.lineTo(pt(data.length - 1)[0], padT + plotH);
    ctx.closePath();
    ctx.fillStyle = grad;
    ctx.fill();

    ctx.beginPath();
    for (let i = 0; i < data.length; i++) {
      const [x, y] = pt(i);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    }
    ctx.strokeStyle = accent;
    ctx.lineWidth = 2;
    ctx.lineJoin = 'round';
    ctx.stroke();

    const [lx, ly] = pt(data.length - 1);
    ctx.beginPath();
    ctx.arc(lx, ly, 3.5, 0, Math.PI * 2);
    ctx.fillStyle = accent;
    ctx.fill();
  }

  function hexAlpha(color, alpha) {
    const m = /^#([0-9a-f]{6})$/i.exec(color);
    if (!m) return color;
    const n = parseInt(m[1], 16);
    return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
  }

  // ---------------------------------------------------------------- views
  function setView(view) {
    state.view = view;
    const chat = view === 'chat';
    ui.tabChat.setAttribute('aria-selected', String(chat));
    ui.tabDash.setAttribute('aria-selected', String(!chat));
    ui.tabChat.tabIndex = chat ? 0 : -1;
    ui.tabDash.tabIndex = chat ? -1 : 0;
    ui.viewChat.hidden = !chat;
    ui.viewDash.hidden = chat;
    if (chat) {
      const room = state.rooms.get(state.active);
      if (room && room.unread) {
        room.unread = 0;
        renderRooms();
      }
      renderMessages(true);
    } else {
      requestAnimationFrame(drawChart);
    }
    renderTitle();
    syncStatsPolling();
  }

  function closeDrawers() {
    ui.sidebar.classList.remove('open');
    ui.members.classList.remove('open');
    ui.sidebarToggle.setAttribute('aria-expanded', 'false');
    ui.membersToggle.setAttribute('aria-expanded', 'false');
    ui.scrim.hidden = true;
  }

  function toggleDrawer(panel, button) {
    const open = !panel.classList.contains('open');
    closeDrawers();
    panel.classList.toggle('open', open);
    button.setAttribute('aria-expanded', String(open));
    ui.scrim.hidden = !open;
  }

  // theme: system -> light -> dark
  const THEMES = ['system', 'light', 'dark'];
  function applyTheme(theme) {
    if (theme === 'system') delete document.documentElement.dataset.theme;
    else document.documentElement.dataset.theme = theme;
    ui.themeToggle.setAttribute('aria-label', `Theme: ${theme}`);
    ui.themeToggle.title = `Theme: ${theme}`;
    if (state.view === 'dashboard') drawChart();
  }

  // ---------------------------------------------------------------- sign in
  function openLogin(error) {
    ui.nickname.value = state.name || '';
    ui.token.value = state.token || '';
    ui.loginError.hidden = !error;
    ui.loginError.textContent = error || '';
    if (!ui.login.open) ui.login.showModal();
    ui.nickname.focus();
    ui.nickname.select();
  }

  function signIn(name, token) {
    const changed = name !== state.name || token !== state.token || conn.status === 'closed';
    state.name = name;
    state.token = token;
    store.set('prise.name', name);
    tokenStore.set(token);
    ui.me.hidden = false;
    ui.meName.textContent = name;
    paintAvatar(ui.meAvatar, name);
    if (changed || !conn.ws) {
      state.me = null;
      if (conn.ws) dropSocket(1000, 'nickname changed');
      conn.attempt = 0;
      clearTimeout(conn.retryTimer);
      clearInterval(conn.countdownTimer);
      connect();
    }
    renderPresence();
  }

  // ---------------------------------------------------------------- events
  ui.loginForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = ui.nickname.value.trim();
    if (!NAME_RE.test(name)) {
      ui.loginError.hidden = false;
      ui.loginError.textContent = 'Use 1 to 32 letters, digits, “-”, “_” or “.”.';
      ui.nickname.focus();
      return;
    }
    ui.login.close();
    signIn(name, ui.token.value.trim());
    ui.input.focus();
  });
  ui.login.addEventListener('cancel', (ev) => {
    if (!state.name) ev.preventDefault();
  });
  ui.me.addEventListener('click', () => openLogin(null));

  ui.newRoomForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = ui.newRoomInput.value.trim().replace(/^#/, '');
    if (!ROOM_RE.test(name)) {
      ui.newRoomError.hidden = false;
      ui.newRoomError.textContent = 'Room names are 1 to 64 characters, without spaces.';
      return;
    }
    ui.newRoomError.hidden = true;
    ui.newRoomInput.value = '';
    addRoom(name, true);
    ui.input.focus();
  });
  ui.newRoomInput.addEventListener('input', () => {
    ui.newRoomError.hidden = true;
  });

  ui.composer.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = ui.input.value;
    if (text.trim() === '' || !state.active) return;
    ui.input.value = '';
    autosize();
    stopTyping(true);
    sendMessage(text);
  });
  ui.input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      ui.composer.requestSubmit();
    }
  });
  function autosize() {
    ui.input.style.height = 'auto';
    ui.input.style.height = `${Math.min(ui.input.scrollHeight, 160)}px`;
  }
  ui.input.addEventListener('input', () => {
    autosize();
    noteTyping();
  });
  ui.input.addEventListener('blur', () => stopTyping(true));

  ui.list.addEventListener('scroll', () => {
    if (nearBottom()) ui.jump.hidden = true;
  });
  ui.jump.addEventListener('click', scrollToBottom);

  ui.tabChat.addEventListener('click', () => setView('chat'));
  ui.tabDash.addEventListener('click', () => setView('dashboard'));
  for (const tab of [ui.tabChat, ui.tabDash]) {
    tab.addEventListener('keydown', (ev) => {
      if (ev.key === 'ArrowRight' || ev.key === 'ArrowLeft') {
        ev.preventDefault();
        const next = tab === ui.tabChat ? ui.tabDash : ui.tabChat;
        next.focus();
        next.click();
      }
    });
  }

  ui.sidebarToggle.addEventListener('click', () => toggleDrawer(ui.sidebar, ui.sidebarToggle));
  ui.membersToggle.addEventListener('click', () => toggleDrawer(ui.members, ui.membersToggle));
  ui.scrim.addEventListener('click', closeDrawers);
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') closeDrawers();
  });

  ui.bannerClose.addEventListener('click', hideError);
  ui.retryNow.addEventListener('click', () => {
    conn.attempt = 0;
    reconnectNow();
  });

  let theme = store.get('prise.theme', 'system');
  if (!THEMES.includes(theme)) theme = 'system';
  applyTheme(theme);
  ui.themeToggle.addEventListener('click', () => {
    theme = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length];
    store.set('prise.theme', theme);
    applyTheme(theme);
  });
  window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => {
    if (state.view === 'dashboard') drawChart();
  });

  document.addEventListener('visibilitychange', syncStatsPolling);
  window.addEventListener('online', () => {
    if (conn.status === 'waiting') {
      conn.attempt = 0;
      reconnectNow();
    }
  });
  if (typeof ResizeObserver === 'function') {
    new ResizeObserver(() => {
      if (state.view === 'dashboard') drawChart();
    }).observe(chart);
  }
  setInterval(() => {
    if (state.view === 'chat' && conn.ready) refreshOtherRooms();
  }, 15000);

  // ---------------------------------------------------------------- start
  let saved = store.get('prise.rooms', null);
  if (!Array.isArray(saved)) saved = ['general'];
  for (const name of saved) {
    if (typeof name === 'string' && ROOM_RE.test(name) && !state.rooms.has(name)) {
      state.rooms.set(name, newRoom(name));
      state.order.push(name);
    }
  }
  const savedActive = store.get('prise.active', null);
  state.active = state.rooms.has(savedActive) ? savedActive : state.order[0] || null;
  renderRooms();
  renderActive();
  renderTitle();
  setStatus('idle', 'Not connected');
  renderHeader();

  if (state.name && NAME_RE.test(state.name)) signIn(state.name, state.token);
  else {
    state.name = null;
    openLogin(null);
  }
})();
