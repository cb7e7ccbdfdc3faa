// @ts-check
/**
 * Where a tab was in a course, kept in sessionStorage so that a reload
 * neither loses nor repeats events.
 * @module coursestream/saved-position
 */
import { EVENT_ID } from './ids.js'
import { storageGet, storageSet } from './storage.js'

const PREFIX = 'coursestream:lastEventId:'

/** The saved position of one subscription (server, course and types). */
export class SavedPosition {
  #key
  #enabled

  /**
   * @param {URL} base the service's base URL
   * @param {string} courseId
   * @param {readonly string[]} types
   * @param {boolean} enabled false: nothing is read or written (persist: false)
   */
  constructor(base, courseId, types, enabled) {
    this.#key = `${PREFIX}${base.href}|${courseId}|${[...types].sort().join(',')}`
    this.#enabled = enabled
  }

  /** The saved id, or null. @returns {string | null} */
  load() {
    if (!this.#enabled) return null
    const saved = storageGet('sessionStorage', this.#key)
    return saved !== null && EVENT_ID.test(saved) ? saved : null
  }

  /** @param {string | null} id */
  save(id) {
    if (this.#enabled && id !== null) storageSet('sessionStorage', this.#key, id)
  }
}
