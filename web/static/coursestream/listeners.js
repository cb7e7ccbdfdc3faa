// @ts-check
/**
 * A connection's subscribers (the observer of the seed plan).
 * @module coursestream/listeners
 */

/**
 * @import { Envelope, ResetEvent } from './envelope.js'
 * @typedef {(event: Envelope | ResetEvent) => void} Listener
 */

/**
 * The listeners of one connection. A listener that throws never affects
 * another: call (the connection's) reports what it throws.
 */
export class Listeners {
  /** @type {Set<{fn: Listener}>} */
  #subs = new Set()
  #call
  #stopped

  /**
   * @param {(fn: Listener, ev: Envelope | ResetEvent) => void} call calls one listener, reporting what it throws
   * @param {() => boolean} stopped whether delivery has stopped (the connection closed), also midway
   */
  constructor(call, stopped) {
    this.#call = call
    this.#stopped = stopped
  }

  /**
   * Adds a listener; returns its unsubscribe function (calling that again
   * does nothing).
   * @param {Listener} listener
   * @returns {() => void}
   */
  add(listener) {
    if (typeof listener !== 'function') throw new TypeError('subscribe: listener must be a function')
    const sub = { fn: listener }
    this.#subs.add(sub)
    return () => { this.#subs.delete(sub) }
  }

  /** @param {Envelope | ResetEvent} ev */
  notify(ev) {
    for (const sub of [...this.#subs]) {
      if (this.#stopped()) break
      if (this.#subs.has(sub)) this.#call(sub.fn, ev) // an unsubscribe during the loop takes effect at once
    }
  }
}
