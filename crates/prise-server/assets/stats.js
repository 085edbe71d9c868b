// What the dashboard shows of a GET /stats answer: pure functions of the
// answer and of the recent samples.

import { byMembersThenName, formatRate, formatUptime, niceStep, num } from './format.js';

/** Samples (one per poll) kept for the chart. */
export const STATS_WINDOW = 60;
/** Rooms listed in the table at most. */
export const MAX_TABLE_ROOMS = 200;

/** The cards' texts, by element id, for stats `s`. */
export function cardTexts(s) {
  const c = s.connections || {};
  let total = 0;
  for (const v of Object.values(c)) total += num(v);
  return {
    'stat-conn-total': total.toLocaleString(),
    'stat-conn-ws': num(c.ws).toLocaleString(),
    'stat-conn-tcp': num(c.tcp).toLocaleString(),
    'stat-conn-socketio': num(c.socketio).toLocaleString(),
    'stat-conn-sse': num(c.sse).toLocaleString(),
    'stat-mps': formatRate(num(s.messagesPerSecond)),
    'stat-messages-total': num(s.messagesTotal).toLocaleString(),
    'stat-uptime': formatUptime(s.uptimeSeconds),
    'stat-slow': num(s.slowConsumerDisconnects).toLocaleString(),
  };
}

/** Adds the rate of `s` to `samples`, keeping the last `STATS_WINDOW`. */
export function pushSample(samples, s) {
  samples.push(num(s.messagesPerSecond));
  if (samples.length > STATS_WINDOW) samples.shift();
}

/** The rooms of `s`, busiest first. */
export function sortedRooms(s) {
  const rooms = Array.isArray(s.rooms) ? s.rooms.slice() : [];
  rooms.sort(byMembersThenName);
  return rooms;
}

/** The chart's vertical scale: four grid steps of a round size above the highest sample. */
export function chartScale(samples) {
  const gridStep = niceStep(Math.max(0.5, (Math.max(0, ...samples) * 1.1) / 4));
  return { gridStep, max: gridStep * 4 };
}
