// @ts-check
/**
 * The multi-course cursor of the contract, `<courseId>:<seq>,...`, as a
 * map from course to position, and the sum of the positions that several
 * members ask one stream to start from.
 * @module coursestream/cursor
 */
import { EVENT_ID, cmpID } from './ids.js'

/** @typedef {Map<string, string>} Positions course id → id of the last event seen */

/**
 * The cursor text of positions, in the map's order (the order of courses=).
 * @param {Positions} positions
 */
export function formatCursor(positions) {
  return [...positions].map(([c, seq]) => `${c}:${seq}`).join(',')
}

/**
 * Parses a cursor; entries that are not `<courseId>:<seq>` are skipped
 * (the sequence is after the last colon: course ids may hold colons).
 * @param {string} text
 * @returns {Positions}
 */
export function parseCursor(text) {
  /** @type {Positions} */
  const out = new Map()
  for (const part of String(text ?? '').split(',')) {
    const at = part.lastIndexOf(':')
    if (at <= 0) continue
    const seq = part.slice(at + 1)
    if (EVENT_ID.test(seq)) out.set(part.slice(0, at), seq)
  }
  return out
}

/**
 * Moves positions forward to id for course; never back. Returns whether it moved.
 * @param {Positions} positions @param {string} course @param {string} id
 */
export function advanceTo(positions, course, id) {
  if (!EVENT_ID.test(id)) return false
  const now = positions.get(course)
  if (now !== undefined && cmpID(id, now) <= 0) return false
  positions.set(course, id)
  return true
}

/**
 * Whether every course of target is at or past its id in positions.
 * @param {Positions} positions @param {Positions} target
 */
export function reached(positions, target) {
  for (const [c, id] of target) {
    const now = positions.get(c)
    if (now === undefined || cmpID(now, id) < 0) return false
  }
  return true
}

/** The lower of two ids. @param {string} a @param {string} b */
export function minID(a, b) {
  return cmpID(a, b) <= 0 ? a : b
}
