// The dashboard: polls GET /stats while it is shown (and the tab visible),
// fills the cards and the rooms table, and draws the rate chart.

import { $, el } from './dom.js';
import { formatRate, hexAlpha, num } from './format.js';
import { MAX_TABLE_ROOMS, STATS_WINDOW, cardTexts, chartScale, pushSample, sortedRooms } from './stats.js';

/** Poll period. */
const STATS_PERIOD_MS = 1000;
/** A poll without an answer after this long is abandoned. */
const STATS_TIMEOUT_MS = 3000;

const dash = { timer: null, inflight: false, samples: [], rooms: [] };
const chart = $('rate-chart');

let state = null;
let actions = null;

/** Binds the dashboard to the page: `page.state` and `page.actions` ({ addRoom, setView }). */
export function initDashboard(page) {
  ({ state, actions } = page);
  if (typeof ResizeObserver === 'function') {
    new ResizeObserver(() => {
      if (state.view === 'dashboard') drawChart();
    }).observe(chart);
  }
}

function statsWanted() {
  return state.view === 'dashboard' && document.visibilityState !== 'hidden';
}

/** Starts or stops polling as the view and the tab's visibility want. */
export function syncStatsPolling() {
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
  const timer = setTimeout(() => ctrl.abort(), STATS_TIMEOUT_MS);
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
  for (const [id, text] of Object.entries(cardTexts(s))) setText(id, text);
  pushSample(dash.samples, s);
  setText('stat-mps-peak', formatRate(Math.max(...dash.samples)));
  drawChart();

  const rooms = sortedRooms(s);
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
  for (const r of rooms.slice(0, MAX_TABLE_ROOMS)) {
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
              actions.addRoom(name, true);
              actions.setView('chat');
            },
          }),
        ),
      ),
    );
  }
  $('stats-rooms-empty').hidden = rooms.length > 0;
  $('stats-rooms-sub').textContent = rooms.length > MAX_TABLE_ROOMS ? `top ${MAX_TABLE_ROOMS} of ${rooms.length}` : '';
}

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

export function drawChart() {
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
  const { gridStep, max } = chartScale(data);
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
