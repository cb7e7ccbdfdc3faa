// @ts-check
/**
 * Who wants which course of one shared stream, and from where: the
 * members (tabs, or the connections of one page) and, for each course a
 * member newly asks for, the position it asks from.
 * @module coursestream/roster
 */
import { minID } from './cursor.js'

/** @import { Positions } from './cursor.js' */

/** The members of one shared stream and the courses each wants. */
export class Roster {
  /** @type {Map<string, Set<string>>} member → its courses */
  #members = new Map()
  /** @type {Positions} course → the lowest position a member newly asked from, not yet started */
  #asks = new Map()

  /**
   * Sets a member's courses. Positions count for the courses new to the
   * member only: a member's later report of a course it already had lags
   * the stream, and must not move it back.
   * @param {string} member
   * @param {Record<string, string>} courses course → the member's position
   */
  set(member, courses) {
    const had = this.#members.get(member) ?? new Set()
    for (const [c, pos] of Object.entries(courses)) {
      if (had.has(c)) continue
      const ask = this.#asks.get(c)
      this.#asks.set(c, ask === undefined ? pos : minID(ask, pos))
    }
    this.#members.set(member, new Set(Object.keys(courses)))
  }

  /** @param {string} member */
  remove(member) {
    this.#members.delete(member)
  }

  /** Whether anyone is left. */
  get empty() { return this.#members.size === 0 }

  /** The members that want course. @param {string} course */
  wanting(course) {
    return [...this.#members].filter(([, cs]) => cs.has(course)).map(([m]) => m)
  }

  /**
   * Where the stream should be: every wanted course (sorted, so that equal
   * sets give equal cursors), at the stream's own position unless a member
   * asked from further back; the asks are then used up.
   * @param {Positions} current the stream's positions now
   * @returns {Positions}
   */
  startFrom(current) {
    const wanted = new Set()
    for (const cs of this.#members.values()) for (const c of cs) wanted.add(c)
    /** @type {Positions} */
    const out = new Map()
    for (const c of [...wanted].sort()) {
      const now = current.get(c)
      const ask = this.#asks.get(c)
      const pos = now === undefined ? ask : ask === undefined ? now : minID(now, ask)
      if (pos !== undefined) out.set(c, pos)
    }
    this.#asks.clear()
    return out
  }
}

/**
 * Whether two position maps name the same courses at the same positions,
 * in the same order.
 * @param {Positions} a @param {Positions} b
 */
export function samePositions(a, b) {
  if (a.size !== b.size) return false
  const bs = [...b]
  let i = 0
  for (const [c, p] of a) {
    const [bc, bp] = bs[i++]
    if (c !== bc || p !== bp) return false
  }
  return true
}
