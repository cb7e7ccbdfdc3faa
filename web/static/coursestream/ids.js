// @ts-check
/**
 * Event ids: decimal strings of a course's sequence, compared as such.
 * @module coursestream/ids
 */

/** An event id: a decimal without leading zeros. */
export const EVENT_ID = /^(0|[1-9][0-9]{0,19})$/

/**
 * An after= past any course: the answer carries the course's last id (as a
 * reset, which the position probe does not report).
 */
export const BEYOND = '9007199254740991'

/**
 * Compares two decimal event ids (no leading zeros) without Number's 2^53 limit.
 * @param {string} a
 * @param {string} b
 * @returns {number} negative, 0 or positive
 */
export function cmpID(a, b) {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0)
}
