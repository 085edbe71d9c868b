// Formatting and validation: pure functions of their arguments, shared by the
// chat, the dashboard and the sign-in dialog.

/** Two messages closer than this from one author are drawn as one group. */
export const GROUP_GAP_MS = 5 * 60 * 1000;

/** Nicknames as the server takes them. */
export const NAME_RE = /^[\p{L}\p{N}_.\-]{1,32}$/u;
/** Room names as the server takes them: no spaces or control characters. */
export const ROOM_RE = /^[^\s\p{Cc}]{1,64}$/u;
const URL_RE = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;

/** A number, or 0 for anything that is not a finite number. */
export function num(v) {
  const n = Number(v);
  return Number.isFinite(n) ? n : 0;
}

/** A stable hue (0..359) for a name, so each author keeps one avatar colour. */
export function hue(name) {
  let h = 0;
  for (const ch of String(name)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return h % 360;
}

/** The letter on an avatar: the name's first character, upper-cased. */
export function initial(name) {
  return (Array.from(String(name || '?'))[0] || '?').toUpperCase();
}

/** The local calendar day of a timestamp, as one comparable number. */
export function dayKey(ts) {
  const d = new Date(ts);
  return d.getFullYear() * 10000 + d.getMonth() * 100 + d.getDate();
}

const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', month: 'long', day: 'numeric' });

/** "Today", "Yesterday" or the date of `ts`, seen from `now`. */
export function dayLabel(ts, now = Date.now()) {
  const k = dayKey(ts);
  if (k === dayKey(now)) return 'Today';
  if (k === dayKey(now - 86400000)) return 'Yesterday';
  return dayFmt.format(new Date(ts));
}

/** An uptime in its two largest units: "3d 4h", "2h 5m", "1m 7s", "9s". */
export function formatUptime(seconds) {
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

/** A rate with one decimal, or a whole number from 100 on. */
export function formatRate(v) {
  const n = Number(v) || 0;
  if (n >= 100) return Math.round(n).toLocaleString();
  return n.toFixed(1);
}

/**
 * A message's text cut into plain strings and `{ href }` links (http and
 * https only; trailing punctuation stays outside the link).
 */
export function linkParts(content) {
  const parts = [];
  let last = 0;
  for (const match of content.matchAll(URL_RE)) {
    if (match.index > last) parts.push(content.slice(last, match.index));
    parts.push({ href: match[0] });
    last = match.index + match[0].length;
  }
  if (last < content.length) parts.push(content.slice(last));
  return parts;
}

/** The line under the messages naming who is typing ('' for nobody). */
export function typingText(names) {
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  if (names.length === 3) return `${names[0]}, ${names[1]} and ${names[2]} are typing…`;
  if (names.length > 3) return `${names[0]}, ${names[1]} and ${names.length - 2} others are typing…`;
  return '';
}

/** A server error (`{ code, message }`) or an Error as one line of text. */
export function describeError(err) {
  if (!err) return 'Unknown error';
  if (err.code) return `${err.message || err.code} (${err.code})`;
  return err.message || String(err);
}

/** A room name typed by the user, without the "#" it may start with. */
export function roomFromInput(value) {
  return value.trim().replace(/^#/, '');
}

/** The smallest 1, 2 or 5 times a power of ten that is at least v. */
export function niceStep(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5]) if (v <= m * p) return m * p;
  return 10 * p;
}

/** "#rrggbb" as rgba() with `alpha`; any other colour as it is. */
export function hexAlpha(color, alpha) {
  const m = /^#([0-9a-f]{6})$/i.exec(color);
  if (!m) return color;
  const n = parseInt(m[1], 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

/** Rooms by members (most first), then by name. */
export function byMembersThenName(a, b) {
  return num(b.members) - num(a.members) || String(a.name).localeCompare(String(b.name));
}
