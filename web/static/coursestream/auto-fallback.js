// @ts-check
/**
 * transport 'auto': when to leave SSE for polling, and when to try SSE
 * again.
 * @module coursestream/auto-fallback
 */
import { FallbackMemory } from './fallback-memory.js'

/**
 * @import { Settings } from './options.js'
 * @import { Transport } from './status.js'
 * @typedef {{readonly transport: Transport, readonly closed: boolean, use: (transport: Transport, asTry: boolean) => void}} Host
 *   the connection, as the policy drives it
 * @typedef {'none' | 'pending' | 'suspect'} Verdict
 *   after SSE failed, the first poll tells whether SSE is the problem: pending until it is
 *   answered; suspect: that poll failed too, so the network is suspected, and SSE is tried again
 *   as soon as a poll gets through; none: no verdict is awaited
 */

/**
 * The fallback policy of one connection. It polls where SSE does not work,
 * remembers that for this browser (FallbackMemory) and tries SSE again
 * after a wait that doubles with each failed try. Its one timer (the next
 * try of SSE) ends with stop.
 */
export class AutoFallback {
  #host
  #memory
  #o
  #fallbackTo
  /** @type {string | null} */
  #reason = null // why polling (null: on SSE, or going to it)
  /** @type {Verdict} */
  #verdict = 'none'
  #tries = 0 // tries of SSE that failed since the fallback (doubles the wait for the next)
  #startsAsTry = false // the first SSE stream is a try (a remembered fallback whose wait is over)
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #probeTimer

  /** @param {Settings} settings @param {Host} host */
  constructor(settings, host) {
    this.#host = host
    this.#memory = new FallbackMemory(settings.base)
    this.#o = settings.options
    this.#fallbackTo = settings.fallbackTo
  }

  /** Why auto polls now ('unsupported', 'remembered', a failure); null on SSE. */
  get reason() { return this.#reason }

  /** Whether the first SSE stream is a try (its first failure goes back to polling). */
  get startsAsTry() { return this.#startsAsTry }

  /**
   * Where auto starts. A fallback this browser remembers: polling until its
   * wait is over, then SSE as a try (its first failure goes back to
   * polling, and the wait doubles), as the connection that fell back does.
   * @returns {Transport}
   */
  choose() {
    if (typeof EventSource !== 'function') return this.#fallBack('unsupported')
    const m = this.#memory.read()
    if (m.tries > 0) {
      this.#tries = m.tries
      if (m.until > Date.now()) return this.#fallBack('remembered')
      this.#startsAsTry = true
    }
    return 'sse'
  }

  /** The connection starts its first driver: a remembered fallback waits for its try. */
  started() {
    if (this.#reason === 'remembered') this.#scheduleTry(this.#memory.read().until - Date.now())
  }

  /** @param {string} reason @returns {Transport} */
  #fallBack(reason) {
    this.#reason = reason
    return this.#fallbackTo
  }

  /** SSE failed for reason: poll (the connection moves now). @param {string} reason @returns {boolean} whether it moved */
  sseFailed(reason) {
    if (this.#host.closed) return false
    this.#reason = reason
    this.#verdict = 'pending'
    this.#host.use(this.#fallbackTo, false)
    return true
  }

  sseOpened() {
    this.#reason = null
  }

  // A stream that opens may still bring nothing (a buffering proxy) or be
  // cut at once: SSE has worked once an event, a reset or a drain frame
  // came through it. Then the memory of its failing goes.
  sseWorked() {
    this.#tries = 0
    this.#startsAsTry = false
    this.#memory.forget()
  }

  /** A poll of the fallback was answered. @param {boolean} ok with 200 or 304 */
  pollAnswered(ok) {
    if (this.#host.transport === 'sse' || this.#reason === 'unsupported') return
    if (this.#verdict === 'pending') {
      this.#verdict = ok ? 'none' : 'suspect'
      if (ok) this.#blameSSE()
    } else if (ok && this.#verdict === 'suspect') {
      // Nothing got through at all, so SSE was not to blame: try it again.
      this.#verdict = 'none'
      this.#scheduleTry(0)
    }
  }

  /**
   * Polling works where SSE did not: try SSE again later, after a wait
   * that doubles with each failed try (a stream that did not open or
   * brought nothing costs 2 heartbeats to find out: those wait at least
   * 4), and remember it for this browser meanwhile.
   */
  #blameSSE() {
    const o = this.#o
    const why = this.#reason
    const first = why === 'silent' || why === 'stalled' ? Math.max(o.sseRetryMs, 4 * o.heartbeatMs) : o.sseRetryMs
    const wait = Math.min(o.rememberFallbackMs, first * 2 ** Math.min(this.#tries, 20))
    this.#tries++
    this.#memory.remember(why, this.#tries, wait)
    this.#scheduleTry(wait)
  }

  /** @param {number} ms */
  #scheduleTry(ms) {
    clearTimeout(this.#probeTimer)
    this.#probeTimer = setTimeout(() => {
      if (this.#host.closed || this.#host.transport === 'sse') return
      this.#reason = null
      this.#host.use('sse', true)
    }, Math.max(0, ms) * (1 + Math.random() * 0.1))
  }

  stop() {
    clearTimeout(this.#probeTimer)
  }
}
