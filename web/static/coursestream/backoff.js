// @ts-check
/**
 * Delays before trying again: the library's backoff, and the delays a
 * server asks for.
 * @module coursestream/backoff
 */

/** A drain frame's retryMs and Retry-After are clamped to this. */
export const MAX_SERVER_DELAY_MS = 60_000

/**
 * Full-jitter backoff: a random delay in [0, min(max, base * 2^attempt)).
 * @param {number} attempt 0 for the first retry
 * @param {number} base
 * @param {number} max
 */
export function backoffDelay(attempt, base, max) {
  return Math.random() * Math.min(max, base * 2 ** Math.min(attempt, 30))
}

/** A delay the server asks for, clamped to [0, MAX_SERVER_DELAY_MS]. @param {number} ms */
export function serverDelay(ms) {
  return Math.min(MAX_SERVER_DELAY_MS, Math.max(0, ms))
}

/**
 * A Retry-After header (seconds or an HTTP date) in ms, clamped as
 * serverDelay; 0 when absent or unreadable.
 * @param {string | null} header
 */
export function retryAfterMs(header) {
  if (!header) return 0
  const secs = Number(header)
  const ms = Number.isFinite(secs) ? secs * 1000 : Date.parse(header) - Date.now()
  return Number.isFinite(ms) ? serverDelay(ms) : 0
}
