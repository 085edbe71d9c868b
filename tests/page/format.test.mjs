// Formatting and validation helpers of the page (assets/format.js, stats.js).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  NAME_RE,
  ROOM_RE,
  byMembersThenName,
  dayKey,
  dayLabel,
  describeError,
  formatRate,
  formatUptime,
  hexAlpha,
  hue,
  initial,
  linkParts,
  niceStep,
  num,
  roomFromInput,
  typingText,
} from '../../crates/prise-server/assets/format.js';
import { STATS_WINDOW, cardTexts, chartScale, pushSample, sortedRooms } from '../../crates/prise-server/assets/stats.js';

test('links: http and https become links, trailing punctuation stays text', () => {
  assert.deepEqual(linkParts('see https://example.com/a?b=1, then'), ['see ', { href: 'https://example.com/a?b=1' }, ', then']);
  assert.deepEqual(linkParts('(http://x.io/p).'), ['(', { href: 'http://x.io/p' }, ').']);
  assert.deepEqual(linkParts('http://a.b http://c.d'), [{ href: 'http://a.b' }, ' ', { href: 'http://c.d' }]);
  assert.deepEqual(linkParts('ftp://x.y and javascript:alert(1)'), ['ftp://x.y and javascript:alert(1)']);
  assert.deepEqual(linkParts(''), []);
});

test('who is typing, in words', () => {
  assert.equal(typingText([]), '');
  assert.equal(typingText(['bob']), 'bob is typing…');
  assert.equal(typingText(['bob', 'carol']), 'bob and carol are typing…');
  assert.equal(typingText(['a', 'b', 'c']), 'a, b and c are typing…');
  assert.equal(typingText(['a', 'b', 'c', 'd', 'e']), 'a, b and 3 others are typing…');
});

test('uptime in its two largest units', () => {
  assert.equal(formatUptime(0), '0s');
  assert.equal(formatUptime(59.9), '59s');
  assert.equal(formatUptime(61), '1m 1s');
  assert.equal(formatUptime(3 * 3600 + 120), '3h 2m');
  assert.equal(formatUptime(2 * 86400 + 5 * 3600 + 7), '2d 5h');
  assert.equal(formatUptime(-5), '0s');
  assert.equal(formatUptime('junk'), '0s');
});

test('rates: one decimal below 100, whole from there', () => {
  assert.equal(formatRate(0), '0.0');
  assert.equal(formatRate(2.345), '2.3');
  assert.equal(formatRate(99.94), '99.9');
  assert.equal(formatRate(100.4), '100');
  assert.equal(formatRate(undefined), '0.0');
});

test('errors: the server code in brackets, else the message', () => {
  assert.equal(describeError({ code: 'FORBIDDEN', message: 'not allowed' }), 'not allowed (FORBIDDEN)');
  assert.equal(describeError({ code: 'FORBIDDEN' }), 'FORBIDDEN (FORBIDDEN)');
  assert.equal(describeError(new Error('Not connected')), 'Not connected');
  assert.equal(describeError(null), 'Unknown error');
  assert.equal(describeError('plain'), 'plain');
});

test('nicknames and room names as the server takes them', () => {
  for (const ok of ['alice', 'Zoë_2', 'a.b-c', 'x'.repeat(32)]) assert.ok(NAME_RE.test(ok), ok);
  for (const bad of ['', 'a b', 'x'.repeat(33), 'a/b', 'é!']) assert.ok(!NAME_RE.test(bad), bad);
  for (const ok of ['general', 'café-☕', '#x', 'x'.repeat(64)]) assert.ok(ROOM_RE.test(ok), ok);
  for (const bad of ['', 'a b', 'tab\there', 'x'.repeat(65), 'nul\u0000']) assert.ok(!ROOM_RE.test(bad), JSON.stringify(bad));
  assert.equal(roomFromInput('  #random '), 'random');
  assert.equal(roomFromInput('##x'), '#x');
});

test('avatars: one stable hue per name, the first character upper-cased', () => {
  assert.equal(hue('alice'), hue('alice'));
  assert.notEqual(hue('alice'), hue('bob'));
  for (const n of ['', 'alice', '🦊', 'x'.repeat(1000)]) assert.ok(hue(n) >= 0 && hue(n) < 360);
  assert.equal(initial('alice'), 'A');
  assert.equal(initial('🦊fox'), '🦊');
  assert.equal(initial(''), '?');
  assert.equal(initial(undefined), '?');
});

test('days: today, yesterday, then the date', () => {
  const now = new Date(2024, 4, 10, 9, 0).getTime();
  assert.equal(dayLabel(new Date(2024, 4, 10, 0, 1).getTime(), now), 'Today');
  assert.equal(dayLabel(new Date(2024, 4, 9, 23, 59).getTime(), now), 'Yesterday');
  assert.match(dayLabel(new Date(2024, 4, 1, 12).getTime(), now), /1/);
  assert.equal(dayKey(new Date(2024, 0, 31, 23).getTime()) < dayKey(new Date(2024, 1, 1, 0).getTime()), true);
});

test('numbers from the server: anything else counts as 0', () => {
  assert.equal(num('12'), 12);
  assert.equal(num('x'), 0);
  assert.equal(num(Infinity), 0);
  assert.equal(num(undefined), 0);
});

test('rooms sort busiest first, then by name', () => {
  const rooms = [{ name: 'b', members: 1 }, { name: 'a', members: 1 }, { name: 'c', members: 5 }, { name: 'd' }];
  assert.deepEqual(rooms.sort(byMembersThenName).map((r) => r.name), ['c', 'a', 'b', 'd']);
});

test('chart scale: four round steps above the highest sample', () => {
  assert.equal(niceStep(0.5), 0.5);
  assert.equal(niceStep(3), 5);
  assert.equal(niceStep(7), 10);
  assert.equal(niceStep(120), 200);
  assert.deepEqual(chartScale([]), { gridStep: 0.5, max: 2 });
  assert.deepEqual(chartScale([1, 30, 2]), { gridStep: 10, max: 40 });
  assert.equal(hexAlpha('#4f46e5', 0.5), 'rgba(79, 70, 229, 0.5)');
  assert.equal(hexAlpha('rgb(1, 2, 3)', 0.5), 'rgb(1, 2, 3)');
});

test('dashboard cards from a /stats answer', () => {
  const texts = cardTexts({
    connections: { ws: 2, tcp: 1, socketio: 4, sse: 3, other: 'x' },
    messagesPerSecond: 1.25,
    messagesTotal: 999,
    uptimeSeconds: 65,
    slowConsumerDisconnects: 0,
  });
  assert.deepEqual(texts, {
    'stat-conn-total': '10',
    'stat-conn-ws': '2',
    'stat-conn-tcp': '1',
    'stat-conn-socketio': '4',
    'stat-conn-sse': '3',
    'stat-mps': '1.3',
    'stat-messages-total': '999',
    'stat-uptime': '1m 5s',
    'stat-slow': '0',
  });
  assert.equal(cardTexts({})['stat-conn-total'], '0');
});

test('the chart keeps the last STATS_WINDOW samples; rooms come sorted', () => {
  const samples = [];
  for (let i = 0; i < STATS_WINDOW + 5; i++) pushSample(samples, { messagesPerSecond: i });
  assert.equal(samples.length, STATS_WINDOW);
  assert.equal(samples[0], 5);
  pushSample(samples, {});
  assert.equal(samples.at(-1), 0);
  const s = { rooms: [{ name: 'a', members: 1 }, { name: 'b', members: 3 }] };
  assert.deepEqual(sortedRooms(s).map((r) => r.name), ['b', 'a']);
  assert.equal(s.rooms[0].name, 'a', 'the answer itself is left as it is');
  assert.deepEqual(sortedRooms({ rooms: 'junk' }), []);
});
