// prise web client: chat over the WebSocket JSON protocol at /ws and a live
// dashboard fed by GET /stats. Plain browser JavaScript as ES modules, no
// build step and no dependencies, so the server can embed them as static
// files. This module wires them together:
//
//   connection.js  the socket: sign-in, requests, heartbeat, reconnects
//   state.js       rooms, members, unread counts and how events change them
//   chat.js        drawing the chat          dashboard.js  the dashboard
//   signin.js      the sign-in dialog        format.js     text helpers
//   storage.js     what the page remembers   dom.js        DOM glue

import { appendItem, initChat, nearBottom, renderActive, renderEvents, renderHeader, renderMessages, renderPresence, renderRooms, renderTitle, renderTyping, scrollToBottom } from './chat.js';
import { Connection, wsUrl } from './connection.js';
import { drawChart, initDashboard, syncStatsPolling } from './dashboard.js';
import { el, hideError, paintAvatar, showError, ui } from './dom.js';
import { NAME_RE, ROOM_RE, describeError, roomFromInput } from './format.js';
import { initSignIn, openLogin } from './signin.js';
import {
  HISTORY_LIMIT,
  addEvent,
  addNote,
  addPending,
  applyHistory,
  applyJoinAck,
  applyJoinMembers,
  applyPresenceDiff,
  dropPending,
  eventFromMessage,
  eventFromPush,
  isChatMessage,
  isMine,
  joinRequest,
  markDisconnected,
  memberNames,
  newRoom,
  nextActive,
  receiveMessage,
  savedRooms,
} from './state.js';
import { jsonStore, tokenStore } from './storage.js';

/** Our "typing" stops this long after the last keystroke. */
const TYPING_IDLE_MS = 3000;
/** While typing goes on, "typing: true" is repeated this often. */
const TYPING_REFRESH_MS = 4000;
/** Someone else's "typing" expires if not refreshed within this time. */
const TYPING_REMOTE_TTL_MS = 6000;
/** The broadcast of our message normally comes with its ack; it is shown from the ack after this long. */
const ACK_ONLY_AFTER_MS = 3000;
/** "Other rooms" is refreshed this often while the chat is shown. */
const OTHER_ROOMS_PERIOD_MS = 15000;

const store = jsonStore(() => localStorage);
const tokens = tokenStore(() => sessionStorage);

const state = {
  name: store.get('prise.name', null),
  token: tokens.get(),
  me: null,
  rooms: new Map(),
  order: [],
  active: null,
  view: 'chat',
  otherRooms: [],
};

const conn = new Connection({
  url: wsUrl(location),
  credentials: () => ({ name: state.name, token: state.token }),
  hooks: {
    status(status, text) {
      ui.status.dataset.state = status;
      ui.statusText.textContent = text;
      ui.status.title = text;
      ui.retryNow.hidden = status !== 'waiting' && status !== 'closed';
      ui.send.disabled = status !== 'open';
    },
    ready(user) {
      if (user) {
        state.me = user;
        // With a token, the server's name (from its claims) is the one others see.
        if (user.name && user.name !== ui.meName.textContent) {
          ui.meName.textContent = user.name;
          paintAvatar(ui.meAvatar, user.name);
        }
      }
      for (const name of state.order) joinRoom(name);
      refreshOtherRooms();
    },
    frame: handle,
    closed() {
      stopTyping(false);
      for (const room of state.rooms.values()) markDisconnected(room);
      renderActive();
    },
    notice: showError,
    signInNeeded: openLogin,
  },
});

// ---------------------------------------------------------------- events from the server
function handle(msg) {
  switch (msg.type) {
    case 'message':
      if (msg.message) onMessage(msg.message, true);
      break;
    case 'event':
      onEvent(msg.room, eventFromPush(msg, Date.now()));
      break;
    case 'joined':
      onJoined(msg.room, msg.user);
      break;
    case 'left':
      onLeft(msg.room, msg.user);
      break;
    case 'presence_diff':
      onPresenceDiff(msg);
      break;
    case 'typing':
      onTyping(msg);
      break;
    case 'error':
      showError(describeError(msg));
      break;
    default:
      break;
  }
}

function note(room, parts) {
  const item = addNote(room, parts, Date.now());
  if (room.name === state.active && state.view === 'chat') appendItem(room, item);
}

/** An event other than a chat message: into the room's event log. */
function onEvent(roomName, e) {
  const room = state.rooms.get(roomName);
  if (!room || !addEvent(room, e)) return;
  if (room.name === state.active) renderEvents();
}

function onMessage(m, live) {
  if (!isChatMessage(m)) {
    onEvent(m.roomId, eventFromMessage(m));
    return;
  }
  const room = state.rooms.get(m.roomId);
  if (!room) return;
  const { item, settled } = receiveMessage(room, m);
  if (!item) {
    if (settled) renderActive();
    return;
  }
  if (live && room.typing.has(m.userId)) {
    clearTimeout(room.typing.get(m.userId).timer);
    room.typing.delete(m.userId);
    if (room.name === state.active) renderTyping();
  }
  const visible = room.name === state.active && state.view === 'chat';
  if (live && !isMine(m, state.me, state.name) && !visible) {
    room.unread++;
    renderRooms();
    renderTitle();
  }
  if (room.name === state.active) {
    if (item.atEnd && !settled) appendItem(room, item);
    else renderMessages();
  }
}

function onJoined(roomName, user) {
  const room = state.rooms.get(roomName);
  if (!room || !user) return;
  const known = memberNames(room).has(user.name);
  if (room.count !== null && !room.members.has(user.id)) room.count++;
  room.members.set(user.id, user);
  if (!known) note(room, [el('strong', { text: user.name }), ' joined']);
  if (room.name === state.active) renderPresence();
  renderOtherRoomsSoon();
}

function onPresenceDiff(diff) {
  const room = state.rooms.get(diff.room);
  if (!room) return;
  applyPresenceDiff(room, diff);
  if (room.name === state.active) renderPresence();
  renderOtherRoomsSoon();
}

function onLeft(roomName, user) {
  const room = state.rooms.get(roomName);
  if (!room || !user) return;
  if (room.count !== null && room.members.has(user.id)) room.count = Math.max(0, room.count - 1);
  room.members.delete(user.id);
  const t = room.typing.get(user.id);
  if (t) {
    clearTimeout(t.timer);
    room.typing.delete(user.id);
  }
  if (!memberNames(room).has(user.name)) note(room, [el('strong', { text: user.name }), ' left']);
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
  let ack;
  try {
    ack = await conn.request(joinRequest(room, state.name));
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
  const reset = applyJoinAck(room, ack, resume);
  // The room's history was lost or reset: what we held no longer lines up.
  if (reset) note(room, ['Reconnected: some earlier messages could not be recovered']);
  applyJoinMembers(room, ack, state.me);
  if (room.name === state.active) {
    renderPresence();
    renderHeader();
  }
  if (!resume || reset) loadHistory(room);
}

async function loadHistory(room) {
  let res;
  try {
    res = await conn.request({ type: 'history', room: room.name, limit: HISTORY_LIMIT });
  } catch (err) {
    if (err.code) showError(`Cannot load history of #${room.name}: ${describeError(err)}`);
    return;
  }
  if (state.rooms.get(room.name) !== room) return;
  applyHistory(room, res);
  if (room.name === state.active) {
    renderMessages(true);
    renderEvents();
  }
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
    const next = nextActive(state.order, idx);
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
      await conn.request({ type: 'leave', room: name });
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
    res = await conn.request({ type: 'rooms' });
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
    p = addPending(room, ++localSeq, text, Date.now());
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
  conn
    .request({ type: 'message', room: room.name, content: p.content })
    .then((ack) => {
      p.messageId = ack.messageId || null;
      if (!p.messageId || room.ids.has(p.messageId)) {
        dropPending(room, p);
        if (room.name === state.active) renderMessages();
        return;
      }
      // The broadcast normally arrives with the ack; if it does not, show the
      // message from the ack rather than leave it pending.
      setTimeout(() => {
        if (!dropPending(room, p)) return;
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
      }, ACK_ONLY_AFTER_MS);
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
    conn.send({ type: 'typing', room, typing: true });
    typingSentAt = Date.now();
  }
  clearTimeout(typingIdle);
  typingIdle = setTimeout(() => stopTyping(true), TYPING_IDLE_MS);
}

function stopTyping(tell) {
  clearTimeout(typingIdle);
  typingIdle = null;
  if (typingRoom && tell) conn.send({ type: 'typing', room: typingRoom, typing: false });
  typingRoom = null;
  typingSentAt = 0;
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
function signIn(name, token) {
  const changed = name !== state.name || token !== state.token || conn.status === 'closed';
  state.name = name;
  state.token = token;
  store.set('prise.name', name);
  tokens.set(token);
  ui.me.hidden = false;
  ui.meName.textContent = name;
  paintAvatar(ui.meAvatar, name);
  if (changed || !conn.ws) {
    state.me = null;
    conn.restart();
  }
  renderPresence();
}

// ---------------------------------------------------------------- wiring
const page = { state, conn, signIn, actions: { setActive, leaveRoom, addRoom, sendMessage, setView } };
initChat(page);
initDashboard(page);
initSignIn(page);

ui.newRoomForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const name = roomFromInput(ui.newRoomInput.value);
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
ui.retryNow.addEventListener('click', () => conn.retryNow());

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
  if (conn.status === 'waiting') conn.retryNow();
});
setInterval(() => {
  if (state.view === 'chat' && conn.ready) refreshOtherRooms();
}, OTHER_ROOMS_PERIOD_MS);

// ---------------------------------------------------------------- start
for (const name of savedRooms(store.get('prise.rooms', null))) {
  state.rooms.set(name, newRoom(name));
  state.order.push(name);
}
const savedActive = store.get('prise.active', null);
state.active = state.rooms.has(savedActive) ? savedActive : state.order[0] || null;
renderRooms();
renderActive();
renderTitle();
conn.setStatus('idle', 'Not connected');
renderHeader();

if (state.name && NAME_RE.test(state.name)) signIn(state.name, state.token);
else {
  state.name = null;
  openLogin(null);
}
