// @ts-check
/**
 * The SSE transport: one EventSource at a time, with the library's own
 * reconnections.
 * @module coursestream/driver-sse
 */
import { backoffDelay, serverDelay } from './backoff.js'
import { DRAIN_EVENT } from './envelope.js'
import { renewDelay, tokenExpiry } from './share-key.js'

/**
 * @import { Port } from './port.js'
 * @import { Refusal } from './api.js'
 * @typedef {'refused' | 'dropped' | 'silent' | 'stalled'} Failure
 * @typedef {'waiting' | 'token' | 'connecting' | 'open' | 'probing' | 'stopped'} Phase
 *   waiting: no stream (a reconnection may be due); token: asking for the token of the next one;
 *   connecting: an EventSource that has not opened; open: it has; probing: asking why one was
 *   refused; stopped: for good
 */

/** An SSE stream open this long resets the backoff. */
const STABLE_MS = 10_000
/** auto: consecutive SSE failures before falling back. */
export const SSE_FAILURES = 3

/**
 * SSE over EventSource. The library reconnects by itself (a new EventSource
 * from ?lastEventId=<position>) with full-jitter backoff instead of the
 * browser's fixed retry, so that a restarted server is not hit by every
 * client at the same moment.
 *
 * A stream the server ends on purpose (a restart, --max-stream-age) ends
 * with a coursestream:drain frame carrying {"retryMs": N}: a planned
 * reconnection after N ms (the server spreads N over its clients), not a
 * failure. A refused stream (an error status, which EventSource hides) is
 * fetched once to learn why: a 503 naming a fallback steers auto to
 * polling; a 503 without one (a draining or overloaded instance) is retried
 * after Retry-After; a 200 is retried at once.
 *
 * Liveness: EventSource shows neither the server's heartbeats nor its retry
 * frame. So a stream that has not opened within 2 heartbeats is given up,
 * and one silent for 2 heartbeats is audited with a conditional poll: 304
 * means the silence is real; events that the stream then fails to bring
 * within a grace period mean it is stalled (a buffering proxy, say).
 *
 * Every timer and request of the driver ends with stop.
 */
export class SSEDriver {
  /** @type {Phase} */
  #phase = 'waiting'
  /** @type {EventSource | null} */
  #es = null
  #url = '' // of #es, for the probe of a refusal
  #openedAt = 0
  #attempt = 0 // failures in a row: the backoff's exponent
  #strikes = 0 // failures in a row that count toward auto's fallback (not transient refusals)
  #planned = false // the reconnection under way is the one a drain frame asked for
  #holdUntil = 0 // no reconnection before this (drain frame, Retry-After), even when the page shows
  #worked = false // something came through a stream of this driver
  /** @type {ReturnType<typeof setTimeout> | undefined} */ #retryTimer
  /** @type {ReturnType<typeof setTimeout> | undefined} */ #watchdog
  /** @type {ReturnType<typeof setTimeout> | undefined} */ #auditTimer
  /** @type {ReturnType<typeof setTimeout> | undefined} */ #renewTimer
  /** @type {string | null} */ #token = null // of #es
  /** @type {AbortController | null} */ #auditAbort = null
  /** @type {AbortController | null} */ #probeAbort = null
  #port
  #twoBeats

  /**
   * @param {Port} port
   * @param {boolean} [asTry] auto trying SSE again: its first failure goes back to polling
   */
  constructor(port, asTry = false) {
    this.#port = port
    this.#twoBeats = 2 * port.options.heartbeatMs
    if (asTry) this.#strikes = SSE_FAILURES - 1
  }

  start() { this.#open() }

  stop() {
    this.#phase = 'stopped'
    this.#closeSource()
    this.#probeAbort?.abort()
    clearTimeout(this.#retryTimer)
  }

  /** Whether stop was called (a method: the phase changes across awaits). */
  #stopped() { return this.#phase === 'stopped' }

  hidden() {} // an open stream costs little; it stays open

  visible() {
    if (this.#phase === 'waiting') { // reconnect now, unless the server asked for the wait
      if (Date.now() < this.#holdUntil) return
      clearTimeout(this.#retryTimer)
      this.#open()
    } else if (this.#phase === 'open') {
      this.#audit()
    }
  }

  #closeSource() {
    this.#es?.close()
    this.#es = null
    clearTimeout(this.#watchdog)
    clearTimeout(this.#auditTimer)
    clearTimeout(this.#renewTimer)
    this.#auditAbort?.abort()
    this.#auditAbort = null
  }

  async #open() {
    if (this.#phase !== 'waiting') return
    const port = this.#port
    let token
    this.#phase = 'token'
    try {
      token = await port.token()
    } catch (err) {
      if (this.#phase !== 'token') return
      this.#phase = 'waiting'
      this.#failed('dropped', err)
      return
    }
    if (this.#phase !== 'token') return
    clearTimeout(this.#retryTimer)
    this.#holdUntil = 0
    if (this.#planned) port.status('reconnecting', { planned: true })
    else if (this.#attempt > 0) port.status('reconnecting')
    this.#token = token
    const url = port.sseURL(token)
    const es = new EventSource(url, { withCredentials: !!port.options.withCredentials })
    this.#es = es
    this.#url = url
    this.#openedAt = 0
    this.#phase = 'connecting'
    this.#listen(es)
    this.#watchdog = setTimeout(() => {
      if (es === this.#es && this.#phase === 'connecting') this.#failed('silent')
    }, this.#twoBeats)
  }

  /** @param {EventSource} es */
  #listen(es) {
    const port = this.#port
    /** @param {(data: string) => void} handle @returns {(e: Event) => void} */
    const current = (handle) => (e) => { if (es === this.#es) handle(/** @type {MessageEvent} */ (e).data) }
    const onMessage = current((data) => this.#message(data))
    for (const t of port.listenTypes) es.addEventListener(t, onMessage)
    es.addEventListener('reset', current((data) => this.#reset(data)))
    es.addEventListener(DRAIN_EVENT, current((data) => {
      this.#cameThrough()
      this.#drained(retryMsOf(data))
    }))
    es.onopen = () => {
      if (es !== this.#es) return
      clearTimeout(this.#watchdog)
      this.#openedAt = Date.now()
      this.#phase = 'open'
      this.#planned = false
      port.sseOpened()
      port.status('open')
      this.#armAudit()
      this.#armRenewal()
    }
    es.onerror = () => {
      if (es !== this.#es) return
      // CLOSED: an error status or a wrong content type, which the browser
      // never retries. CONNECTING: a network error or a dropped stream.
      this.#failed(es.readyState === EventSource.CLOSED ? 'refused' : 'dropped')
    }
  }

  /** An event of a type listened for. @param {string} data */
  #message(data) {
    let env
    try {
      env = JSON.parse(data)
    } catch {
      this.#port.report(new Error(`coursestream: an SSE event is not JSON: ${String(data).slice(0, 200)}`))
      return
    }
    this.#cameThrough()
    this.#port.ingest([env])
    this.#armAudit()
  }

  /** @param {string} data */
  #reset(data) {
    this.#cameThrough()
    let parsed = null
    try { parsed = JSON.parse(data) } catch { /* reported by reset */ }
    this.#port.reset(parsed)
    this.#armAudit()
  }

  /**
   * The server ends the stream on purpose and says when to come back:
   * close it before the browser reconnects by itself, and reconnect from
   * the position after ms (the backoff's delay when the frame has none).
   * The stream worked: the failure counts start again.
   * @param {number} ms NaN when the frame carries no delay
   */
  #drained(ms) {
    if (this.#stopped()) return
    this.#closeSource()
    this.#phase = 'waiting'
    this.#attempt = 0
    this.#strikes = 0
    this.#planned = true
    const o = this.#port.options
    const delay = Number.isFinite(ms) ? serverDelay(ms) : backoffDelay(0, o.backoffBaseMs, o.backoffMaxMs)
    this.#holdUntil = Date.now() + delay
    this.#port.status('reconnecting', { retryInMs: Math.round(delay), planned: true })
    this.#retryIn(delay)
  }

  /**
   * The stream failed: find out why when it was refused, then fall back
   * (auto), give up (fatal) or reconnect after a backoff.
   * @param {Failure} why
   * @param {unknown} [error]
   */
  async #failed(why, error) {
    if (this.#stopped()) return
    const lived = this.#openedAt ? Date.now() - this.#openedAt : 0
    const url = this.#url
    this.#closeSource()
    this.#phase = 'waiting'
    this.#planned = false
    if (lived >= STABLE_MS) {
      this.#attempt = 0
      this.#strikes = 0
    }
    this.#attempt++
    const port = this.#port
    let next = { atLeast: 0, now: false, strike: true, error } // atLeast: Retry-After; now: retry at once
    if (why === 'refused') {
      const r = await this.#whyRefused(url)
      if (this.#stopped()) return
      const decided = this.#refused(r, error)
      if (!decided) return
      next = decided
    } else if (why === 'silent' || why === 'stalled') {
      if (port.sseFailed(why)) return // auto: nothing gets through over SSE
    }
    if (next.strike && ++this.#strikes >= SSE_FAILURES && port.sseFailed(why === 'dropped' ? 'unreachable' : why)) return
    const o = port.options
    const delay = next.now ? 0 : next.atLeast + backoffDelay(this.#attempt - 1, o.backoffBaseMs, o.backoffMaxMs)
    this.#holdUntil = Date.now() + next.atLeast
    port.status('reconnecting', { retryInMs: Math.round(delay), ...(next.error ? { error: next.error } : {}) })
    this.#retryIn(delay)
  }

  /**
   * What a refusal means for the next try; null when the driver is done
   * with it (the connection failed, or auto fell back to polling).
   * @param {Refusal} r
   * @param {unknown} error
   * @returns {{atLeast: number, now: boolean, strike: boolean, error: unknown} | null}
   */
  #refused(r, error) {
    const next = { atLeast: r.retryAfterMs, now: false, strike: true, error: r.error ?? error }
    switch (r.kind) {
      case 'fatal': // 400, 403, 404, or 401 with a fixed token: retrying cannot help
        this.#port.fail(r.error)
        return null
      case 'open': // refused, yet the stream answers now (an instance that was draining, say)
        return { ...next, now: true }
      case 'transient': // a 503 without fallback: a draining or overloaded instance, not SSE's fault
      case 'auth': // a 401 with a token function: the next token may do
        return { ...next, strike: false }
      default: // steered to polling, another error status, or nothing to tell: auto falls back
        return this.#port.sseFailed('refused') ? null : next
    }
  }

  /** @param {number} ms */
  #retryIn(ms) {
    clearTimeout(this.#retryTimer)
    this.#retryTimer = setTimeout(() => this.#open(), ms)
  }

  /**
   * Why the EventSource at url was refused (the probe's answer), or
   * 'other' when the probe fails too or gets no answer within 2 heartbeats.
   * @param {string} url
   * @returns {Promise<Refusal>}
   */
  async #whyRefused(url) {
    const ac = new AbortController()
    this.#probeAbort = ac
    this.#phase = 'probing'
    const timer = setTimeout(() => ac.abort(), this.#twoBeats)
    try {
      return await this.#port.probeStream(url, ac.signal)
    } catch {
      return { kind: 'other', retryAfterMs: 0 } // a network or CORS error: as any refusal
    } finally {
      clearTimeout(timer)
      ac.abort() // a 200's stream, if still open
      if (this.#phase === 'probing') this.#phase = 'waiting'
      this.#probeAbort = null
    }
  }

  /** A frame came through: SSE works here (the failure count starts again). */
  #cameThrough() {
    if (this.#worked) return
    this.#worked = true
    this.#strikes = 0
    this.#port.sseWorked()
  }

  #armAudit() {
    clearTimeout(this.#auditTimer)
    this.#auditTimer = setTimeout(() => this.#audit(), this.#twoBeats)
  }

  /** Asks the poll endpoint whether the silent stream owes events. */
  async #audit() {
    const es = this.#es
    const port = this.#port
    const from = port.position
    if (!es || this.#phase !== 'open' || this.#auditAbort || from === null) return
    clearTimeout(this.#auditTimer)
    const ac = new AbortController()
    this.#auditAbort = ac
    let res = null
    try {
      res = await port.requestPoll({ after: from, signal: ac.signal, etag: port.etag })
    } catch {
      // the poll failing is not the stream's fault
    } finally {
      if (this.#auditAbort === ac) this.#auditAbort = null
    }
    if (es !== this.#es) return
    if (!res || res.status !== 200) { this.#armAudit(); return }
    const body = res.body
    port.setETag(res.etag, String(body.lastEventId))
    const owed = port.owed(body)
    if (owed === null) {
      // Nothing owed: events up to there are of other types. Moving past
      // them keeps the next audit's If-None-Match matching (a 304).
      port.advance(String(body.lastEventId))
      this.#armAudit()
      return
    }
    this.#expect(es, owed)
  }

  /**
   * The stream owes events up to target: give it a moment (longer than a
   * coalesce window) to bring them, else it is stalled.
   * @param {EventSource} es
   * @param {unknown} target what port.owed gave
   */
  #expect(es, target) {
    const port = this.#port
    this.#auditTimer = setTimeout(() => {
      if (es !== this.#es) return
      if (port.reached(target)) this.#armAudit()
      else this.#failed('stalled')
    }, Math.max(2_000, port.coalesceMs + 1_000))
  }

  /**
   * A token function's token that expires (a JWT's exp) is renewed ahead
   * of it: the stream moves to a fresh token from the position, a planned
   * reconnection, so that it never sits refused at exp. (The server also
   * ends a stream at its token's expiry with a drain frame.)
   */
  #armRenewal() {
    clearTimeout(this.#renewTimer)
    if (!this.#port.renewable) return
    const delay = renewDelay(tokenExpiry(this.#token), Date.now())
    if (Number.isFinite(delay)) this.#renewTimer = setTimeout(() => this.#renew(), delay)
  }

  async #renew() {
    const es = this.#es
    if (!es || this.#phase !== 'open') return
    this.#port.status('reconnecting', { planned: true })
    this.#closeSource()
    this.#phase = 'waiting'
    this.#planned = true
    this.#open()
  }
}

/** A drain frame's retryMs; NaN when it gives none. @param {string} data */
function retryMsOf(data) {
  try {
    const v = JSON.parse(data)?.retryMs
    return typeof v === 'number' ? v : NaN
  } catch {
    return NaN // no delay given: the backoff picks one
  }
}
