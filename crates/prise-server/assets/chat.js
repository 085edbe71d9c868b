// Drawing the chat: the room list, the open room's messages, its members and
// who is typing, and the title with the unread count. Reads the page state;
// changes it only through the actions it is given.

import { el, paintAvatar, ui } from './dom.js';
import { byMembersThenName, dayKey, dayLabel, linkParts, num, typingText } from './format.js';
import { MAX_MESSAGES, dropPending, isGrouped, isMine, itemTs, memberCount, memberNames, presenceOrder, roomSub, typingNames, unreadTotal } from './state.js';

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });

/** Rooms offered under "Other rooms" at most. */
const MAX_OTHER_ROOMS = 30;

let state = null;
let conn = null;
let actions = null;

/**
 * Binds the drawing to the page: `page.state` (rooms, active room, view),
 * `page.conn` (a Connection) and `page.actions` ({ setActive, leaveRoom,
 * addRoom, sendMessage }).
 */
export function initChat(page) {
  ({ state, conn, actions } = page);
}

const mine = (m) => isMine(m, state.me, state.name);

export function renderTitle() {
  const unread = unreadTotal(state.rooms.values());
  const where = state.view === 'dashboard' ? 'Dashboard' : state.active ? `#${state.active}` : 'Chat';
  document.title = `${unread > 0 ? `(${unread}) ` : ''}${where} · prise`;
  ui.tabChatBadge.hidden = !(unread > 0 && state.view !== 'chat');
  ui.tabChatBadge.textContent = String(unread);
}

export function renderRooms() {
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
        onclick: () => actions.setActive(name),
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
      onclick: () => actions.leaveRoom(name),
    });
    ui.roomList.append(
      el('li', { class: `room${active ? ' active' : ''}${room.unread ? ' has-unread' : ''}`, 'data-testid': 'room-item', 'data-room': name }, btn, leave),
    );
  }
  ui.roomsEmpty.hidden = state.order.length > 0;

  const others = state.otherRooms.filter((r) => r && r.name && !state.rooms.has(r.name));
  others.sort(byMembersThenName);
  ui.otherRooms.textContent = '';
  for (const r of others.slice(0, MAX_OTHER_ROOMS)) {
    ui.otherRooms.append(
      el(
        'li',
        { class: 'room', 'data-testid': 'other-room', 'data-room': r.name },
        el(
          'button',
          { class: 'room-btn', type: 'button', 'aria-label': `Join #${r.name}, ${num(r.members)} online`, onclick: () => actions.addRoom(r.name, true) },
          el('span', { class: 'hash', 'aria-hidden': 'true', text: '#' }),
          el('span', { class: 'room-name', text: r.name }),
          el('span', { class: 'room-meta', 'aria-hidden': 'true', text: `${num(r.members)} online` }),
        ),
      ),
    );
  }
  ui.otherSection.hidden = others.length === 0;
}

export function renderHeader() {
  const room = state.rooms.get(state.active);
  ui.roomTitle.textContent = room ? room.name : 'No room';
  ui.roomSub.textContent = room ? roomSub(room, memberNames(room).size, conn.ready) : '';
  ui.input.disabled = !room;
  ui.input.placeholder = room ? `Message #${room.name}` : 'Join a room to chat';
  ui.send.disabled = !room || conn.status !== 'open';
}

export function renderActive() {
  renderHeader();
  renderMessages(true);
  renderEvents();
  renderPresence();
  renderTyping();
}

/** Longest event data shown in the log, in characters. */
const EVENT_DATA_SHOWN = 200;

/**
 * The open room's event log (events other than chat messages): collapsed
 * by default, newest last, hidden while the room has none.
 */
export function renderEvents() {
  const room = state.rooms.get(state.active);
  const events = room ? room.events : [];
  ui.eventLog.hidden = events.length === 0;
  ui.eventCount.textContent = String(events.length);
  ui.eventList.textContent = '';
  const frag = document.createDocumentFragment();
  for (const e of events) {
    let data = e.data === undefined ? '' : JSON.stringify(e.data);
    if (data.length > EVENT_DATA_SHOWN) data = `${data.slice(0, EVENT_DATA_SHOWN)}…`;
    const when = Number.isFinite(e.ts) ? timeFmt.format(new Date(e.ts)) : '';
    frag.append(
      el(
        'li',
        { class: 'event', dataset: { testid: 'event', event: e.event, offset: e.offset ?? '' } },
        el('time', { text: when }),
        el('strong', { text: (e.user && e.user.name) || '' }),
        el('code', { class: 'event-name', text: e.event }),
        el('span', { class: 'event-data', text: data }),
      ),
    );
  }
  ui.eventList.append(frag);
}

export function nearBottom() {
  const l = ui.list;
  return l.scrollHeight - l.scrollTop - l.clientHeight < 80;
}

export function scrollToBottom() {
  ui.list.scrollTop = ui.list.scrollHeight;
  ui.jump.hidden = true;
}

function fillContent(node, content) {
  node.textContent = '';
  if (typeof content !== 'string') {
    node.append(el('code', { text: JSON.stringify(content) }));
    return;
  }
  for (const part of linkParts(content)) {
    if (typeof part === 'string') node.append(part);
    else node.append(el('a', { href: part.href, target: '_blank', rel: 'noopener noreferrer', text: part.href }));
  }
}

function messageNode(m, prevItem, extraClass) {
  const node = ui.tpl.content.firstElementChild.cloneNode(true);
  const ts = num(m.timestamp) || Date.now();
  if (m.offset !== undefined) node.dataset.offset = String(m.offset);
  node.dataset.author = m.userName || '';
  if (isGrouped(prevItem, m)) node.classList.add('cont');
  if (mine(m)) node.classList.add('mine');
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
        el('button', { class: 'msg-retry', type: 'button', text: 'Retry', onclick: () => actions.sendMessage(null, p) }),
        el('button', {
          class: 'msg-retry',
          type: 'button',
          text: 'Discard',
          onclick: () => {
            dropPending(room, p);
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

export function renderMessages(toBottom) {
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
export function appendItem(room, item) {
  if (room.pending.length > 0) {
    renderMessages();
    return;
  }
  const stick = nearBottom() || (item.kind === 'msg' && mine(item.m));
  const idx = room.items.indexOf(item);
  const prev = idx > 0 ? room.items[idx - 1] : null;
  ui.list.append(...itemNodes(item, prev));
  while (ui.list.children.length > MAX_MESSAGES * 2) ui.list.firstElementChild.remove();
  ui.empty.hidden = !room.items.some((i) => i.kind === 'msg');
  if (stick) scrollToBottom();
  else if (item.kind === 'msg') ui.jump.hidden = false;
}

export function renderPresence() {
  const room = state.rooms.get(state.active);
  ui.presence.textContent = '';
  if (!room) {
    ui.membersCount.textContent = '0';
    ui.membersCountBtn.textContent = '0';
    return;
  }
  const typing = new Set(typingNames(room));
  const list = presenceOrder(room, state.name);
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
        typing.has(name) ? el('span', { class: 'is-typing', text: 'typing…' }) : null,
      ),
    );
  }
  const count = memberCount(room, list.length);
  ui.membersCount.textContent = String(count);
  ui.membersCountBtn.textContent = String(count);
  ui.roomSub.textContent = roomSub(room, count, conn.ready);
}

export function renderTyping() {
  const room = state.rooms.get(state.active);
  const names = room ? typingNames(room) : [];
  ui.typingText.textContent = typingText(names);
  ui.typing.classList.toggle('active', names.length > 0);
  ui.typingText.hidden = names.length === 0;
}
