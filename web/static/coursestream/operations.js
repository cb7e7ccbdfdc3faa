// @ts-check
/**
 * awaitOperation's bookkeeping: who waits for which operationId, and the
 * operations seen lately.
 * @module coursestream/operations
 */
import { domError } from './errors.js'

/**
 * @import { Envelope } from './envelope.js'
 * @typedef {{resolve: (ev: Envelope) => void, reject: (e: unknown) => void, done: () => void}} Waiter
 */

/** Operation ids remembered for awaitOperation. */
const RECENT = 256

/** The waiters of one connection; every timer ends with its waiter. */
export class Operations {
  /** @type {Map<string, Set<Waiter>>} */
  #waiters = new Map()
  /** @type {Map<string, Envelope>} */
  #recent = new Map()

  /** The event of operationId when it arrived lately. @param {string} operationId */
  seen(operationId) {
    return this.#recent.get(operationId)
  }

  /**
   * Waits for the event of operationId: rejects with a TimeoutError after
   * ms (Infinity: never), or with the signal's reason when it aborts.
   * @param {string} operationId
   * @param {number} ms
   * @param {AbortSignal | undefined} signal
   * @returns {Promise<Envelope>}
   */
  wait(operationId, ms, signal) {
    return new Promise((resolve, reject) => {
      let set = this.#waiters.get(operationId)
      if (!set) this.#waiters.set(operationId, (set = new Set()))
      /** @type {ReturnType<typeof setTimeout> | undefined} */
      let timer
      const onAbort = () => { w.done(); reject(signal?.reason ?? domError('AbortError', 'aborted')) }
      /** @type {Waiter} */
      const w = {
        resolve,
        reject,
        done: () => {
          clearTimeout(timer)
          signal?.removeEventListener('abort', onAbort)
          const s = this.#waiters.get(operationId)
          s?.delete(w)
          if (s && s.size === 0) this.#waiters.delete(operationId)
        },
      }
      set.add(w)
      if (Number.isFinite(ms) && ms >= 0) {
        timer = setTimeout(() => {
          w.done()
          reject(domError('TimeoutError', `timeout: no event with operationId ${operationId} within ${ms}ms`))
        }, ms)
      }
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  /** The event of operationId arrived: remember it, resolve its waiters. @param {string} operationId @param {Envelope} ev */
  arrived(operationId, ev) {
    this.#recent.delete(operationId)
    this.#recent.set(operationId, ev)
    if (this.#recent.size > RECENT) this.#recent.delete(/** @type {string} */ (this.#recent.keys().next().value))
    const set = this.#waiters.get(operationId)
    if (!set) return
    for (const w of [...set]) { w.done(); w.resolve(ev) }
  }

  /** Rejects every waiter with reason (the connection closed). @param {unknown} reason */
  rejectAll(reason) {
    for (const set of [...this.#waiters.values()]) {
      for (const w of [...set]) { w.done(); w.reject(reason) }
    }
  }
}
