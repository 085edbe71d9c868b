// DOM glue shared by the views: element lookup, a small element builder, the
// page's fixed elements and the error banner.

import { hue, initial } from './format.js';

export const $ = (id) => document.getElementById(id);

/**
 * A new element: `props` sets attributes, except `class`, `text` (the text
 * content), `dataset` and `on*` (event listeners); `children` are appended.
 */
export function el(tag, props, ...children) {
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

export function paintAvatar(node, name) {
  node.textContent = initial(name);
  node.style.setProperty('--hue', hue(name));
}

/** The page's fixed elements (index.html). Modules run after parsing, so they all exist. */
export const ui = {
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
  eventLog: $('event-log'),
  eventCount: $('event-count'),
  eventList: $('event-list'),
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

let bannerTimer = null;
export function showError(text) {
  ui.bannerText.textContent = text;
  ui.banner.hidden = false;
  clearTimeout(bannerTimer);
  bannerTimer = setTimeout(hideError, 10000);
}
export function hideError() {
  clearTimeout(bannerTimer);
  ui.banner.hidden = true;
}
