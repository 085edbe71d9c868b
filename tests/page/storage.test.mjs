// What the page remembers (assets/storage.js, backoff.js): the token for the
// tab only, settings as JSON, and the reconnect backoff.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BACKOFF_BASE_MS, BACKOFF_CAP_MS, MAX_ATTEMPT, backoffDelay, countdownText, nextAttempt } from '../../crates/prise-server/assets/backoff.js';
import { TOKEN_KEY, jsonStore, tokenStore } from '../../crates/prise-server/assets/storage.js';

/** A Storage over a Map; `broken` makes every call throw, as disabled storage does. */
function memoryStorage() {
  const map = new Map();
  const s = {
    broken: false,
    check() {
      if (s.broken) throw new Error('SecurityError');
    },
    getItem: (k) => (s.check(), map.has(k) ? map.get(k) : null),
    setItem: (k, v) => (s.check(), map.set(k, String(v))),
    removeItem: (k) => (s.check(), map.delete(k)),
    map,
  };
  return s;
}

test('the token is kept under its key; an empty token removes it', () => {
  const storage = memoryStorage();
  const tokens = tokenStore(() => storage);
  assert.equal(tokens.get(), '');
  tokens.set('eyJ.abc.def');
  assert.equal(storage.map.get(TOKEN_KEY), 'eyJ.abc.def');
  assert.equal(tokens.get(), 'eyJ.abc.def');
  tokens.set('');
  assert.equal(storage.map.has(TOKEN_KEY), false);
  assert.equal(tokens.get(), '');
});

test('without storage the token is simply not kept', () => {
  const storage = memoryStorage();
  storage.broken = true;
  const tokens = tokenStore(() => storage);
  assert.doesNotThrow(() => tokens.set('t'));
  assert.equal(tokens.get(), '');
  const missing = tokenStore(() => {
    throw new Error('SecurityError');
  });
  assert.equal(missing.get(), '');
  assert.doesNotThrow(() => missing.set(''));
});

test('settings round-trip as JSON, with a fallback for what is missing or unreadable', () => {
  const storage = memoryStorage();
  const store = jsonStore(() => storage);
  assert.equal(store.get('prise.name', null), null);
  store.set('prise.rooms', ['general', 'random']);
  assert.deepEqual(store.get('prise.rooms', null), ['general', 'random']);
  storage.map.set('prise.theme', '{not json');
  assert.equal(store.get('prise.theme', 'system'), 'system');
  storage.broken = true;
  assert.doesNotThrow(() => store.set('prise.name', 'alice'));
  assert.equal(store.get('prise.rooms', 'fallback'), 'fallback');
});

test('backoff: the ceiling doubles from the base up to the cap; jitter takes half of it', () => {
  assert.equal(backoffDelay(0, 0), BACKOFF_BASE_MS / 2);
  assert.equal(backoffDelay(0, 0.999999) < BACKOFF_BASE_MS, true);
  assert.equal(backoffDelay(1, 1), 2 * BACKOFF_BASE_MS);
  assert.equal(backoffDelay(3, 0.5), 3000);
  assert.equal(backoffDelay(MAX_ATTEMPT, 1), BACKOFF_CAP_MS);
  assert.equal(backoffDelay(MAX_ATTEMPT, 0), BACKOFF_CAP_MS / 2);
  let a = 0;
  for (let i = 0; i < 100; i++) a = nextAttempt(a);
  assert.equal(a, MAX_ATTEMPT);
});

test('countdown: whole seconds left, rounded up', () => {
  assert.equal(countdownText(5000, 0), 'Reconnecting in 5 s');
  assert.equal(countdownText(5000, 4001), 'Reconnecting in 1 s');
  assert.equal(countdownText(5000, 5000), 'Reconnecting…');
  assert.equal(countdownText(5000, 9000), 'Reconnecting…');
});
