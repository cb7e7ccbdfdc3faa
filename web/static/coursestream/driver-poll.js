// @ts-check
/**
 * The polling transports: ETag polling, and long-polling with ?wait=.
 * @module coursestream/driver-poll
 */
import { backoffDelay } from './backoff.js'
import { HTTPError } from './errors.js'

/**
 * @import { Port } from './port.js'
 * @import { PollResponse } from './api.js'
 * @typedef {'waiting' | 'asking' | 'stopped'} Phase
 *   waiting: the next poll is due (on a timer, or when the page shows); asking: a poll is in
 *   flight; stopped: for good
 */

/**
 * ETag polling, and long-polling with ?wait=. It follows more:true at once,
 * waits an interval that grows x1.5 while nothing changes (with +-20%
 * jitter), backs off with full jitter on errors (at least Retry-After), and
 * pauses while the page is hidden. Its timer and request end with stop.
 */
export class PollDriver {
  /** @type {Phase} */
  #phase = 'waiting'
  #paused = false // the page is hidden: no poll until it shows (a poll in flight is aborted)
  #answered = false // a poll of this driver was answered
  #errors = 0
  #idle = 0
  /** @type {ReturnType<typeof setTimeout> | undefined} */ #timer
  /** @type {AbortController | null} */ #ac = null
  #port
  #long

  /** @param {Port} port @param {boolean} long */
  constructor(port, long) {
    this.#port = port
    this.#long = long
  }

  start() { this.#step() }

  stop() {
    this.#phase = 'stopped'
    clearTimeout(this.#timer)
    this.#ac?.abort()
  }

  /** Whether stop was called (a method: the phase changes across awaits). */
  #stopped() { return this.#phase === 'stopped' }

  hidden() {
    if (this.#port.options.pauseWhenHidden === false || this.#paused) return
    this.#paused = true
    clearTimeout(this.#timer)
    this.#ac?.abort() // a waiting long-poll too
    this.#port.status('paused')
  }

  visible() {
    if (this.#stopped()) return
    this.#paused = false
    if (this.#phase === 'asking') return // the request in flight (or its abort) carries on
    clearTimeout(this.#timer)
    this.#step()
  }

  /** @param {number} ms */
  #schedule(ms) {
    clearTimeout(this.#timer)
    if (this.#phase !== 'stopped' && !this.#paused) this.#timer = setTimeout(() => this.#step(), ms)
  }

  async #step() {
    if (this.#phase !== 'waiting' || this.#paused) return
    const port = this.#port
    const after = port.position ?? '0'
    const ac = new AbortController()
    this.#ac = ac
    this.#phase = 'asking'
    const started = Date.now()
    let res
    try {
      // A long-poll driver asks once without waiting first: it tells at
      // once that the server answers (status open) and where things are.
      const wait = this.#long && this.#answered ? String(port.options.longPollWait) : undefined
      res = await port.requestPoll({ after, signal: ac.signal, etag: port.etag, wait })
    } catch (err) {
      if (this.#stopped()) return
      this.#phase = 'waiting'
      if (ac.signal.aborted) { this.#schedule(0); return } // paused meanwhile: schedule waits for visible
      this.#retry(err, 0)
      return
    }
    if (this.#stopped()) return
    this.#phase = 'waiting'
    if (this.#paused) return // hidden meanwhile: the next poll asks again
    if (res.status === 200 || res.status === 304) {
      this.#answer(res, after, started)
      return
    }
    const err = new HTTPError(res.status, res.error ?? 'unexpected status', res.url)
    if (port.isFatal(err)) { port.fail(err); return }
    this.#retry(err, res.retryAfterMs)
  }

  /**
   * A 200 or 304: deliver what it brings, then schedule the next poll.
   * @param {PollResponse} res
   * @param {string} after the position the poll asked from
   * @param {number} started when the poll left (Date.now())
   */
  #answer(res, after, started) {
    const port = this.#port
    this.#errors = 0
    const held = this.#long && this.#answered
    this.#answered = true
    port.status('open')
    let changed = false
    if (res.status === 200) {
      const body = res.body
      const last = String(body.lastEventId)
      const before = port.position
      for (const r of body.resets ?? []) port.reset(r) // several courses: each reset before the events
      if (body.reset) {
        port.reset({ courseId: body.courseId, lastEventId: last })
      } else {
        port.ingest(body.events ?? [])
        port.advance(last)
      }
      changed = body.reset || (body.resets ?? []).length > 0 || port.position !== before
      port.setETag(res.etag, last)
      port.pollAnswered(true)
      if (this.#stopped()) return
      if (body.more) { this.#schedule(0); return }
    } else {
      port.setETag(res.etag, after)
      port.pollAnswered(true)
      if (this.#stopped()) return
    }
    this.#idle = changed ? 0 : this.#idle + 1
    if (this.#long && (!held || Date.now() - started >= 1_000)) { this.#schedule(0); return } // held (or first): ask again
    const o = port.options
    const interval = Math.min(o.maxPollIntervalMs, o.pollIntervalMs * 1.5 ** Math.max(0, this.#idle - 1))
    this.#schedule(changed && this.#long ? 0 : interval * (0.8 + 0.4 * Math.random()))
  }

  /** @param {unknown} err @param {number} atLeast */
  #retry(err, atLeast) {
    const port = this.#port
    port.pollAnswered(false)
    if (this.#stopped()) return
    const delay = Math.max(atLeast, backoffDelay(this.#errors++, port.options.backoffBaseMs, port.options.backoffMaxMs))
    port.status('reconnecting', { error: err, retryInMs: Math.round(delay) })
    this.#schedule(delay)
  }
}
