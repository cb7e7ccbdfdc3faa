// @ts-check
/**
 * What a browser remembers of SSE failing, per server (localStorage), so
 * that its other tabs and the next page load start on polling while the
 * wait is on.
 * @module coursestream/fallback-memory
 */
import { storageGet, storageSet } from './storage.js'

const PREFIX = 'coursestream:sse-fallback:'
// A memory of SSE failing that is this old past its wait is forgotten.
const STALE_MS = 60 * 60_000

/**
 * The memory: until when to keep to polling, and how many tries of SSE
 * failed. NONE when SSE has brought an event since, or long after the wait.
 * @typedef {{until: number, tries: number}} Remembered
 */

/** @type {Readonly<Remembered>} */
export const NONE = Object.freeze({ until: 0, tries: 0 })

/** The memory of one server (its base URL). */
export class FallbackMemory {
  #key

  /** @param {URL} base */
  constructor(base) {
    this.#key = `${PREFIX}${base.href}`
  }

  /** @returns {Readonly<Remembered>} */
  read() {
    try {
      const raw = storageGet('localStorage', this.#key)
      const m = raw ? JSON.parse(raw) : {}
      const until = Number(m.until)
      const tries = Number(m.tries)
      if (!Number.isFinite(until) || !Number.isInteger(tries) || tries <= 0 || Date.now() - until > STALE_MS) return NONE
      return { until, tries }
    } catch {
      return NONE
    }
  }

  /**
   * Keep to polling for wait ms (the tries-th failed try of SSE).
   * @param {string | null} reason why SSE failed
   * @param {number} tries
   * @param {number} wait
   */
  remember(reason, tries, wait) {
    storageSet('localStorage', this.#key, JSON.stringify({ until: Date.now() + wait, reason, tries, wait }))
  }

  /** SSE worked: forget its failures. */
  forget() {
    if (this.read().tries > 0) storageSet('localStorage', this.#key, null)
  }
}
