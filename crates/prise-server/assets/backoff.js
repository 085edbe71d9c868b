// Reconnect backoff: exponential from a base, capped, with jitter, so a
// restarted server is not met by every page at the same instant and a dead
// one is not hammered.

/** The first retry waits between half of this and this. */
export const BACKOFF_BASE_MS = 500;
/** No retry waits longer than this. */
export const BACKOFF_CAP_MS = 15000;
/** The attempt counter stops growing here (the cap is reached long before). */
export const MAX_ATTEMPT = 16;

/**
 * The wait before retry number `attempt` (0 for the first): uniformly
 * between half the ceiling and the ceiling, the ceiling doubling from
 * `BACKOFF_BASE_MS` up to `BACKOFF_CAP_MS`. `random` is in [0, 1).
 */
export function backoffDelay(attempt, random) {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return ceiling / 2 + random * (ceiling / 2);
}

/** The attempt after `attempt`. */
export function nextAttempt(attempt) {
  return Math.min(attempt + 1, MAX_ATTEMPT);
}

/** The status line while a retry is due at `retryAt`. */
export function countdownText(retryAt, now) {
  const left = Math.max(0, Math.ceil((retryAt - now) / 1000));
  return left > 0 ? `Reconnecting in ${left} s` : 'Reconnecting…';
}
