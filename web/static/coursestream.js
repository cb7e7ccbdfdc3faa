// @ts-check
/**
 * coursestream browser library: course events over Server-Sent Events, with
 * ETag polling and long-polling as fallbacks. An ES module with no build step
 * and no dependencies; the types are in coursestream.d.ts beside it.
 *
 *   import { connect } from '/coursestream.js'
 *   const conn = connect({ courseId: 'course-123', onEvent: (ev) => render(ev) })
 *   const unsubscribe = conn.subscribe((ev) => { ... })   // observer: returns its unsubscribe
 *   const ev = await conn.awaitOperation('op-9', 10_000)  // the event carrying operationId op-9
 *   conn.close()
 *
 * Guarantees: every listener sees each event once, in id order (ids at or
 * below the current position are dropped); a reset moves the position to
 * where the server says; the position survives a reload (sessionStorage),
 * so a reload neither loses nor repeats events. A listener that throws
 * never stops another: its error goes to `onError`, or, without one, to
 * `reportError` (the browser reports it like an uncaught exception).
 *
 * @module coursestream
 */

/**
 * @typedef {{id: string, courseId: string, type: string, data: unknown, operationId?: string, timestamp: number}} Envelope
 * @typedef {{courseId: string, lastEventId: string}} ResetInfo
 * @typedef {{type: 'reset', courseId: string, lastEventId: string}} ResetEvent
 * @typedef {'sse' | 'poll' | 'longpoll'} Transport
 * @typedef {{state: 'connecting' | 'open' | 'reconnecting' | 'paused' | 'closed', transport: Transport,
 *   reason?: string, error?: unknown, retryInMs?: number, planned?: boolean}} Status
 * @typedef {{
 *   courseId: string, baseUrl?: string | URL, transport?: 'auto' | Transport, fallback?: 'poll' | 'longpoll',
 *   token?: string | null | (() => string | null | Promise<string | null>), withCredentials?: boolean,
 *   types?: string[], coalesce?: string | number, lastEventId?: string | number | null, persist?: boolean,
 *   pauseWhenHidden?: boolean,
 *   onEvent?: (event: Envelope) => void, onReset?: (reset: ResetInfo) => void,
 *   onStatus?: (status: Status) => void, onError?: (error: unknown) => void,
 *   heartbeatMs?: number, pollIntervalMs?: number, maxPollIntervalMs?: number, longPollWait?: string,
 *   backoffBaseMs?: number, backoffMaxMs?: number, sseRetryMs?: number, rememberFallbackMs?: number,
 * }} ConnectOptions
 * @typedef {{after: string, wait?: string, signal: AbortSignal, etag: string | null, filtered?: boolean}} PollRequest
 * @typedef {{status: number, body: any, etag: string | null, retryAfterMs: number, error?: string, url: string}} PollResponse
 * @typedef {{kind: 'open' | 'fatal' | 'auth' | 'transient' | 'steer' | 'other', retryAfterMs: number, error?: HTTPError}} Refusal
 */

/** The seven course events; EventSource only dispatches the names it listens for. */
export const COURSE_EVENTS = Object.freeze([
  'chapter-update-complete',
  'chapter-create-complete',
  'chapter-delete-complete',
  'video-update-complete',
  'video-delete-complete',
  'upload-progress',
  'upload-complete',
])

/** Defaults of the tuning options (milliseconds unless named otherwise). */
export const DEFAULTS = Object.freeze({
  heartbeatMs: 15_000, // the server's --heartbeat: no open within 2 of them means SSE does not get through
  pollIntervalMs: 2_000, // first idle poll interval
  maxPollIntervalMs: 10_000, // the idle interval grows x1.5 per empty poll up to this
  longPollWait: '25s', // ?wait= of a long-poll (the server allows 30s)
  backoffBaseMs: 1_000, // full jitter: a random delay in [0, min(max, base * 2^attempt))
  backoffMaxMs: 30_000,
  sseRetryMs: 5_000, // auto: after a fallback, the first wait before SSE is tried again; doubles with each failed try
  rememberFallbackMs: 5 * 60_000, // auto: the longest such wait (the browser keeps to polling meanwhile)
  operationTimeoutMs: 30_000, // awaitOperation's default
})

const COURSE_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/
const EVENT_TYPE = /^[a-z0-9][a-z0-9._-]{0,63}$/
const EVENT_ID = /^(0|[1-9][0-9]{0,19})$/
const DURATION = /^\d+(\.\d+)?(ms|s)$/
// An after= past any course: the answer carries the course's last id (as a
// reset, which the position probe does not report).
const BEYOND = '9007199254740991'
const STABLE_MS = 10_000 // an SSE stream open this long resets the backoff
const SSE_FAILURES = 3 // auto: consecutive SSE failures before falling back
const RECENT_OPERATIONS = 256 // operation ids remembered for awaitOperation
const MAX_SERVER_DELAY_MS = 60_000 // a drain frame's retryMs and Retry-After are clamped to this
// The final frame of a stream the server ends on purpose (a restart,
// --max-stream-age): data {"retryMs": N}, when to reconnect.
const DRAIN_EVENT = 'coursestream:drain'
const MEMORY_PREFIX = 'coursestream:sse-fallback:'
// A memory of SSE failing that is this old past its wait is forgotten.
const MEMORY_STALE_MS = 60 * 60_000
const POSITION_PREFIX = 'coursestream:lastEventId:'

/**
 * Compares two decimal event ids (no leading zeros) without Number's 2^53 limit.
 * @param {string} a
 * @param {string} b
 */
function cmpID(a, b) {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0)
}

/**
 * A Retry-After header (seconds or an HTTP date) in ms, clamped to
 * [0, MAX_SERVER_DELAY_MS]; 0 when absent or unreadable.
 * @param {string | null} header
 */
function retryAfterMs(header) {
  if (!header) return 0
  const secs = Number(header)
  const ms = Number.isFinite(secs) ? secs * 1000 : Date.parse(header) - Date.now()
  return Number.isFinite(ms) ? Math.min(MAX_SERVER_DELAY_MS, Math.max(0, ms)) : 0
}

/** A token as sent: null when there is none. @param {unknown} v */
function tokenValue(v) {
  return v == null || v === '' ? null : String(v)
}

/** @template T @param {T} v @returns {T} */
function deepFreeze(v) {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v)
    for (const k of Object.keys(v)) deepFreeze(/** @type {any} */ (v)[k])
  }
  return v
}

/**
 * Full-jitter backoff: a random delay in [0, min(max, base * 2^attempt)).
 * @param {number} attempt 0 for the first retry
 * @param {number} base
 * @param {number} max
 */
export function backoffDelay(attempt, base, max) {
  return Math.random() * Math.min(max, base * 2 ** Math.min(attempt, 30))
}

/**
 * Tells a reset ({type: 'reset', courseId, lastEventId}) from an event
 * envelope, for subscribers.
 * @param {Envelope | ResetEvent} event
 * @returns {event is ResetEvent}
 */
export function isReset(event) {
  return !!event && event.type === 'reset' && !('id' in event)
}

/**
 * Reports an error without throwing into the caller: reportError where the
 * platform has it (the browser reports it like an uncaught exception and
 * fires window's error event), else a rethrow from a fresh task.
 * @param {unknown} err
 */
function rethrowLater(err) {
  const g = /** @type {any} */ (globalThis)
  if (typeof g.reportError === 'function') g.reportError(err)
  else setTimeout(() => { throw err })
}

/** @param {string} name @param {string} message */
function domError(name, message) {
  if (typeof DOMException === 'function') return new DOMException(message, name)
  const e = new Error(message)
  e.name = name
  return e
}

/** @param {'sessionStorage' | 'localStorage'} kind @param {string} key */
function storageGet(kind, key) {
  try {
    const s = /** @type {any} */ (globalThis)[kind]
    return s ? s.getItem(key) : null
  } catch {
    return null // storage disabled (privacy mode, sandboxed frame)
  }
}

/** @param {'sessionStorage' | 'localStorage'} kind @param {string} key @param {string | null} value */
function storageSet(kind, key, value) {
  try {
    const s = /** @type {any} */ (globalThis)[kind]
    if (!s) return
    if (value === null) s.removeItem(key)
    else s.setItem(key, value)
  } catch {
    // full or disabled: the feature degrades, delivery does not
  }
}

/** An error answer from the server: its status and the {"error"} reason. */
export class HTTPError extends Error {
  /** @param {number} status @param {string} message @param {string} url */
  constructor(status, message, url) {
    super(`${status}: ${message}`)
    this.name = 'HTTPError'
    this.status = status
    this.url = url
  }
}

/**
 * Opens a subscription to one course. It starts on the next microtask, so
 * callbacks may refer to the returned connection.
 * @param {ConnectOptions} options
 * @returns {Connection}
 */
export function connect(options) {
  return new Connection(options)
}

/** A subscription to one course; see connect. */
export class Connection {
  /** @type {ConnectOptions & typeof DEFAULTS} */
  #o
  #base
  #courseId
  /** @type {'auto' | Transport} */
  #requested
  /** @type {'poll' | 'longpoll'} */
  #fallbackTo
  /** @type {Transport} */
  #transport = 'sse'
  /** @type {SSEDriver | PollDriver | null} */
  #driver = null
  /** @type {Port} */
  #port
  /** @type {string | null} */
  #position = null
  /** @type {{tag: string, pos: string} | null} */
  #etag = null
  /** @type {string[]} */
  #types
  #accepts
  #coalesce
  #positionKey
  #memoryKey
  #closed = false
  /** @type {Status} */
  #status
  /** @type {Set<{fn: (ev: Envelope | ResetEvent) => void}>} */
  #subs = new Set()
  /** @type {Map<string, Set<{resolve: (ev: Envelope) => void, reject: (e: unknown) => void, done: () => void}>>} */
  #waiters = new Map()
  /** @type {Map<string, Envelope>} */
  #recentOps = new Map()
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #probeTimer
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #beginTimer
  #beginAttempt = 0
  /** @type {AbortController | null} */
  #beginAbort = null
  /** @type {Promise<PollResponse> | null} */
  #firstAsk = null
  #sseTries = 0 // auto: tries of SSE that failed since the fallback (doubles the wait for the next)
  #startsAsTry = false // auto: the first SSE stream is a try (a remembered fallback whose wait is over)
  // auto fallback: after SSE failed, the first poll tells whether SSE is the
  // problem (the poll works: remember it) or the network is (try SSE again
  // as soon as something gets through).
  /** @type {string | null} */
  #fallbackReason = null
  #verdictPending = false
  #networkSuspect = false
  /** @type {(() => void)[]} */
  #cleanup = []

  /** @param {ConnectOptions} options */
  constructor(options) {
    if (!options || typeof options !== 'object') throw new TypeError('connect: options are required')
    /** @type {ConnectOptions & typeof DEFAULTS} */
    const o = /** @type {any} */ ({ ...DEFAULTS })
    for (const [k, v] of Object.entries(options)) if (v !== undefined) /** @type {any} */ (o)[k] = v
    if (!COURSE_ID.test(String(o.courseId ?? ''))) {
      throw new TypeError(`connect: invalid courseId ${JSON.stringify(o.courseId)}: it must match ${COURSE_ID}`)
    }
    const requested = o.transport ?? 'auto'
    if (!['auto', 'sse', 'poll', 'longpoll'].includes(requested)) {
      throw new TypeError(`connect: transport must be 'auto', 'sse', 'poll' or 'longpoll', got ${JSON.stringify(requested)}`)
    }
    if (requested === 'sse' && typeof EventSource !== 'function') {
      throw new TypeError("connect: transport 'sse' needs EventSource, which this environment lacks: use 'auto' or 'poll'")
    }
    const fallbackTo = o.fallback ?? 'poll'
    if (fallbackTo !== 'poll' && fallbackTo !== 'longpoll') {
      throw new TypeError(`connect: fallback must be 'poll' or 'longpoll', got ${JSON.stringify(fallbackTo)}`)
    }
    const types = [...new Set(o.types ?? [])]
    for (const t of types) {
      if (typeof t !== 'string' || !EVENT_TYPE.test(t) || t === 'reset') {
        throw new TypeError(`connect: invalid type ${JSON.stringify(t)} in types`)
      }
    }
    let coalesce = ''
    if (o.coalesce != null && o.coalesce !== '' && o.coalesce !== 0) {
      coalesce = typeof o.coalesce === 'number' ? `${Math.round(o.coalesce)}ms` : String(o.coalesce)
      const ms = DURATION.test(coalesce) ? parseFloat(coalesce) * (coalesce.endsWith('ms') ? 1 : 1000) : NaN
      if (!(ms >= 0 && ms <= 10_000)) {
        throw new TypeError(`connect: coalesce must be a duration up to 10s such as '500ms' (or a number of ms), got ${JSON.stringify(o.coalesce)}`)
      }
    }
    let start = o.lastEventId == null || o.lastEventId === '' ? null : String(o.lastEventId)
    if (start !== null && !EVENT_ID.test(start)) {
      throw new TypeError(`connect: lastEventId must be a decimal event id, got ${JSON.stringify(o.lastEventId)}`)
    }
    const loc = /** @type {any} */ (globalThis).location
    const origin = loc?.origin && loc.origin !== 'null' ? loc.origin : undefined // 'null': an opaque origin
    if (o.baseUrl == null && !origin) throw new TypeError('connect: baseUrl is required outside a page')
    const base = new URL(o.baseUrl ?? /** @type {string} */ (origin), origin ?? loc?.href)
    if (!base.pathname.endsWith('/')) base.pathname += '/'
    base.search = ''
    base.hash = ''

    this.#o = o
    this.#base = base
    this.#courseId = String(o.courseId)
    this.#requested = requested
    this.#fallbackTo = fallbackTo
    this.#types = types
    this.#accepts = new Set(types.length > 0 ? types : COURSE_EVENTS)
    this.#coalesce = coalesce
    this.#positionKey = `${POSITION_PREFIX}${base.href}|${this.#courseId}|${[...types].sort().join(',')}`
    this.#memoryKey = `${MEMORY_PREFIX}${base.href}`

    // Where to start: the page's own position, else where this tab was
    // before a reload, else (null) the course's current id, asked first.
    if (start === null && o.persist !== false) {
      const saved = storageGet('sessionStorage', this.#positionKey)
      if (saved !== null && EVENT_ID.test(saved)) start = saved
    }
    this.#position = start

    if (requested === 'auto') {
      const choice = this.#autoChoice()
      this.#transport = choice.transport
      this.#fallbackReason = choice.reason
    } else {
      this.#transport = requested
    }
    this.#status = Object.freeze({
      state: 'connecting', transport: this.#transport, ...(this.#fallbackReason ? { reason: this.#fallbackReason } : {}),
    })
    this.#port = this.#makePort()
    this.#listenToPage()
    if (this.#position === null && typeof o.token !== 'function') {
      // Ask where the course is now, from the caller's task: the request
      // leaves before whatever the caller does next (a publish, say).
      this.#beginAbort = new AbortController()
      this.#firstAsk = this.#requestPoll({ after: BEYOND, signal: this.#beginAbort.signal, etag: null, filtered: false })
      this.#firstAsk.catch(() => {}) // #begin handles it
    }
    queueMicrotask(() => {
      if (this.#o.onStatus && !this.#closed) this.#call(this.#o.onStatus, this.#status)
      this.#begin()
    })
  }

  /** The course this connection follows. */
  get courseId() { return this.#courseId }

  /** The transport in use now: 'sse', 'poll' or 'longpoll'. */
  get transport() { return this.#transport }

  /** The id of the last event seen (or skipped past); null until known. */
  get lastEventId() { return this.#position }

  /** The latest status, as given to onStatus. */
  get status() { return this.#status }

  /** Whether the connection is closed (by close, or by a fatal error). */
  get closed() { return this.#closed }

  /**
   * Adds a listener for every event envelope and for resets (as
   * {type: 'reset', courseId, lastEventId}). Returns its unsubscribe
   * function; calling that again does nothing.
   * @param {(event: Envelope | ResetEvent) => void} listener
   * @returns {() => void}
   */
  subscribe(listener) {
    if (typeof listener !== 'function') throw new TypeError('subscribe: listener must be a function')
    const sub = { fn: listener }
    this.#subs.add(sub)
    return () => { this.#subs.delete(sub) }
  }

  /**
   * Resolves with the event that carries operationId, also when it arrived
   * before this call (the last 256 operation ids are remembered); rejects
   * with a TimeoutError after ms, or an AbortError on close or abort.
   * @param {string} operationId
   * @param {number} [ms] Infinity waits without a timeout
   * @param {{signal?: AbortSignal}} [opts]
   * @returns {Promise<Envelope>}
   */
  awaitOperation(operationId, ms = DEFAULTS.operationTimeoutMs, opts = {}) {
    if (typeof operationId !== 'string' || operationId === '') {
      return Promise.reject(new TypeError('awaitOperation: operationId must be a non-empty string'))
    }
    const seen = this.#recentOps.get(operationId)
    if (seen) return Promise.resolve(seen)
    if (this.#closed) return Promise.reject(domError('AbortError', 'the connection is closed'))
    const signal = opts.signal
    if (signal?.aborted) return Promise.reject(signal.reason ?? domError('AbortError', 'aborted'))
    return new Promise((resolve, reject) => {
      let set = this.#waiters.get(operationId)
      if (!set) this.#waiters.set(operationId, (set = new Set()))
      /** @type {ReturnType<typeof setTimeout> | undefined} */
      let timer
      const onAbort = () => { w.done(); reject(signal?.reason ?? domError('AbortError', 'aborted')) }
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

  /** Stops delivery and releases everything; idempotent. The position stays saved for a reload. */
  close() {
    this.#shutdown(null)
  }

  // ---- lifecycle ---------------------------------------------------------

  /**
   * Where auto starts. A fallback this browser remembers: polling until its
   * wait is over, then SSE as a try (its first failure goes back to
   * polling, and the wait doubles), as the connection that fell back does.
   * @returns {{transport: Transport, reason: string | null}}
   */
  #autoChoice() {
    if (typeof EventSource !== 'function') return { transport: this.#fallbackTo, reason: 'unsupported' }
    const m = this.#memory()
    if (m.tries > 0) {
      this.#sseTries = m.tries
      if (m.until > Date.now()) return { transport: this.#fallbackTo, reason: 'remembered' }
      this.#startsAsTry = true
    }
    return { transport: 'sse', reason: null }
  }

  /**
   * What this browser remembers of SSE failing (localStorage, per server):
   * until when to keep to polling, and how many tries failed. Nothing once
   * SSE has brought an event, or long after the wait.
   * @returns {{until: number, tries: number}}
   */
  #memory() {
    try {
      const raw = storageGet('localStorage', this.#memoryKey)
      const m = raw ? JSON.parse(raw) : {}
      const until = Number(m.until)
      const tries = Number(m.tries)
      if (!Number.isFinite(until) || !Number.isInteger(tries) || tries <= 0 || Date.now() - until > MEMORY_STALE_MS) {
        return { until: 0, tries: 0 }
      }
      return { until, tries }
    } catch {
      return { until: 0, tries: 0 }
    }
  }

  async #begin() {
    if (this.#closed) return
    if (this.#position === null) {
      // Ask for the course's current id first, so that nothing published
      // after connect() is missed whatever happens next (reconnects before
      // the first event, a fallback, a reload).
      if (this.#beginAttempt > 0) this.#setStatus('reconnecting')
      const ac = this.#beginAbort ?? new AbortController()
      this.#beginAbort = ac
      const ask = this.#firstAsk ?? this.#requestPoll({ after: BEYOND, signal: ac.signal, etag: null, filtered: false })
      this.#firstAsk = null
      try {
        const res = await ask
        if (this.#closed) return
        if (res.status !== 200) throw new HTTPError(res.status, res.error ?? 'unexpected status', res.url)
        this.#setPosition(String(res.body.lastEventId))
      } catch (err) {
        if (this.#closed) return
        if (this.#isFatal(err)) { this.#shutdown(err); return }
        const delay = backoffDelay(this.#beginAttempt++, this.#o.backoffBaseMs, this.#o.backoffMaxMs)
        this.#setStatus('reconnecting', { error: err, retryInMs: Math.round(delay) })
        this.#beginTimer = setTimeout(() => this.#begin(), delay)
        return
      } finally {
        this.#beginAbort = null
      }
    }
    if (this.#fallbackReason === 'remembered') this.#scheduleProbe(this.#memory().until - Date.now())
    this.#use(this.#transport, this.#startsAsTry)
  }

  /**
   * @param {Transport} transport
   * @param {boolean} [asTry] auto trying SSE again: its first failure goes back to polling
   */
  #use(transport, asTry = false) {
    this.#driver?.stop()
    this.#driver = null
    if (this.#closed) return
    this.#transport = transport
    this.#setStatus('connecting')
    if (transport === 'sse') {
      const d = new SSEDriver(this.#port)
      if (asTry) d.strikes = SSE_FAILURES - 1
      this.#driver = d
    } else {
      this.#driver = new PollDriver(this.#port, transport === 'longpoll')
    }
    this.#driver.start()
    if (this.#hidden()) this.#driver.hidden()
  }

  /** @param {unknown} err null for a close by the caller */
  #shutdown(err) {
    if (this.#closed) return
    this.#closed = true
    this.#driver?.stop()
    this.#driver = null
    this.#beginAbort?.abort()
    clearTimeout(this.#beginTimer)
    clearTimeout(this.#probeTimer)
    for (const f of this.#cleanup.splice(0)) f()
    const reason = err ?? domError('AbortError', 'the connection is closed')
    for (const set of [...this.#waiters.values()]) {
      for (const w of [...set]) { w.done(); w.reject(reason) }
    }
    this.#setStatus('closed', err ? { error: err } : {})
  }

  #hidden() {
    const d = /** @type {any} */ (globalThis).document
    return !!d && d.visibilityState === 'hidden'
  }

  #listenToPage() {
    const g = /** @type {any} */ (globalThis)
    if (g.document?.addEventListener) {
      const onVisibility = () => {
        if (this.#closed || !this.#driver) return
        if (this.#hidden()) this.#driver.hidden()
        else this.#driver.visible()
      }
      g.document.addEventListener('visibilitychange', onVisibility)
      this.#cleanup.push(() => g.document.removeEventListener('visibilitychange', onVisibility))
    }
    if (g.window === g && typeof g.addEventListener === 'function') {
      const onOnline = () => { if (!this.#closed && !this.#hidden()) this.#driver?.visible() }
      g.addEventListener('online', onOnline)
      this.#cleanup.push(() => g.removeEventListener('online', onOnline))
    }
  }

  // ---- auto: fallback, memory, probing SSE again ----------------------------

  /** @param {string} reason @returns {boolean} whether the connection moved to polling */
  #sseFailed(reason) {
    if (this.#requested !== 'auto' || this.#closed) return false
    this.#fallbackReason = reason
    this.#verdictPending = true
    this.#networkSuspect = false
    this.#use(this.#fallbackTo)
    return true
  }

  #sseOpened() {
    this.#fallbackReason = null
  }

  // A stream that opens may still bring nothing (a buffering proxy) or be
  // cut at once: SSE has worked once an event, a reset or a drain frame
  // came through it. Then the memory of its failing goes.
  #sseWorked() {
    this.#sseTries = 0
    this.#startsAsTry = false
    if (this.#requested === 'auto' && this.#memory().tries > 0) storageSet('localStorage', this.#memoryKey, null)
  }

  /** @param {boolean} ok the poll was answered 200 or 304 */
  #pollAnswered(ok) {
    if (this.#requested !== 'auto' || this.#transport === 'sse' || this.#fallbackReason === 'unsupported') return
    if (this.#verdictPending) {
      this.#verdictPending = false
      if (ok) {
        // Polling works where SSE did not: try SSE again later, after a
        // wait that doubles with each failed try (a stream that did not
        // open or brought nothing costs 2 heartbeats to find out: those
        // wait at least 4), and remember it for this browser meanwhile.
        const o = this.#o
        const why = this.#fallbackReason
        const first = why === 'silent' || why === 'stalled' ? Math.max(o.sseRetryMs, 4 * o.heartbeatMs) : o.sseRetryMs
        const wait = Math.min(o.rememberFallbackMs, first * 2 ** Math.min(this.#sseTries, 20))
        this.#sseTries++
        storageSet('localStorage', this.#memoryKey, JSON.stringify({ until: Date.now() + wait, reason: why, tries: this.#sseTries, wait }))
        this.#scheduleProbe(wait)
      } else {
        this.#networkSuspect = true
      }
    } else if (ok && this.#networkSuspect) {
      // Nothing got through at all, so SSE was not to blame: try it again.
      this.#networkSuspect = false
      this.#scheduleProbe(0)
    }
  }

  /** @param {number} ms */
  #scheduleProbe(ms) {
    clearTimeout(this.#probeTimer)
    this.#probeTimer = setTimeout(() => {
      if (this.#closed || this.#transport === 'sse') return
      this.#fallbackReason = null
      this.#use('sse', true)
    }, Math.max(0, ms) * (1 + Math.random() * 0.1))
  }

  // ---- what the drivers use ------------------------------------------------

  /** @returns {Port} */
  #makePort() {
    const listen = Object.freeze([...new Set([...COURSE_EVENTS, ...this.#types])])
    const self = this
    return {
      options: this.#o,
      listenTypes: listen,
      accepts: (type) => this.#accepts.has(type),
      coalesceMs: !this.#coalesce ? 0 : parseFloat(this.#coalesce) * (this.#coalesce.endsWith('ms') ? 1 : 1000),
      get position() { return self.#position },
      get etag() { return self.#etag && self.#etag.pos === self.#position ? self.#etag.tag : null },
      setETag: (tag, pos) => { if (tag) this.#etag = { tag, pos } },
      token: () => this.#token(),
      sseURL: (token) => this.#url(`v1/courses/${encodeURIComponent(this.#courseId)}/events`, {
        lastEventId: this.#position, types: this.#types.join(','), coalesce: this.#coalesce, token,
      }),
      requestPoll: (req) => this.#requestPoll(req),
      probeStream: (url, signal) => this.#probeStream(url, signal),
      ingest: (envs) => this.#ingest(envs),
      advance: (id) => {
        if (EVENT_ID.test(id) && (this.#position === null || cmpID(id, this.#position) > 0)) this.#setPosition(id)
      },
      reset: (data) => this.#applyReset(data),
      report: (err) => this.#report(err),
      status: (state, detail) => this.#setStatus(state, detail),
      isFatal: (err) => this.#isFatal(err),
      fail: (err) => this.#shutdown(err),
      sseOpened: () => this.#sseOpened(),
      sseWorked: () => this.#sseWorked(),
      sseFailed: (reason) => this.#sseFailed(reason),
      pollAnswered: (ok) => this.#pollAnswered(ok),
    }
  }

  /** @param {string} path relative to the base URL @param {Record<string, string | null | undefined>} params */
  #url(path, params) {
    const u = new URL(path, this.#base)
    for (const [k, v] of Object.entries(params)) if (v != null && v !== '') u.searchParams.set(k, v)
    return u.toString()
  }

  /** @returns {Promise<string | null>} */
  async #token() {
    const t = this.#o.token
    return tokenValue(typeof t === 'function' ? await t() : t)
  }

  /**
   * One poll request. Resolves with 200, 304 or an error status; rejects on
   * network errors and malformed answers.
   * @param {PollRequest} req
   * @returns {Promise<PollResponse>}
   */
  async #requestPoll(req) {
    // A fixed token without an await: the request leaves in the caller's task.
    const token = typeof this.#o.token === 'function' ? await this.#token() : tokenValue(this.#o.token)
    const url = this.#url(`v1/courses/${encodeURIComponent(this.#courseId)}/poll`, {
      after: req.after,
      types: req.filtered === false ? '' : this.#types.join(','),
      wait: req.wait,
    })
    /** @type {Record<string, string>} */
    const headers = { Accept: 'application/json' }
    if (token) headers.Authorization = `Bearer ${token}`
    if (req.etag) headers['If-None-Match'] = req.etag
    const res = await fetch(url, {
      headers,
      cache: 'no-store',
      signal: req.signal,
      credentials: this.#o.withCredentials ? 'include' : 'same-origin',
    })
    /** @type {PollResponse} */
    const out = {
      status: res.status, body: null, etag: res.headers.get('ETag'), url,
      retryAfterMs: retryAfterMs(res.headers.get('Retry-After')),
    }
    if (res.status === 200) {
      out.body = await res.json()
      if (!out.body || !EVENT_ID.test(String(out.body.lastEventId)) || !Array.isArray(out.body.events ?? [])) {
        throw new Error(`coursestream: malformed poll answer from ${url}`)
      }
    } else if (res.status !== 304) {
      const text = await res.text().catch(() => '')
      try { out.error = String(JSON.parse(text).error) } catch { out.error = text.slice(0, 200) || res.statusText }
    }
    return out
  }

  /**
   * Why the server refused an EventSource, which hides the status: one
   * fetch of the same URL, given up as soon as its headers are in (a 200)
   * or its small error body is read. A 503 that names a fallback steers
   * to polling; one without (a draining or overloaded instance) is
   * transient. Rejects on network errors.
   * @param {string} url the EventSource's URL
   * @param {AbortSignal} signal
   * @returns {Promise<Refusal>}
   */
  async #probeStream(url, signal) {
    const res = await fetch(url, {
      headers: { Accept: 'text/event-stream' },
      cache: 'no-store',
      signal,
      credentials: this.#o.withCredentials ? 'include' : 'same-origin',
    })
    const wait = retryAfterMs(res.headers.get('Retry-After'))
    if (res.ok) {
      res.body?.cancel().catch(() => {}) // the stream is not wanted: only that it answers
      const sse = /^text\/event-stream\b/i.test(res.headers.get('Content-Type') ?? '')
      return { kind: sse ? 'open' : 'other', retryAfterMs: wait } // not a stream: a proxy or portal in the way
    }
    const text = await res.text().catch(() => '')
    /** @type {any} */
    let body = null
    try { body = JSON.parse(text) } catch { /* not ours: a proxy's page */ }
    const clean = new URL(url)
    clean.searchParams.delete('token') // errors travel to onStatus and logs: no credentials in them
    const message = typeof body?.error === 'string' ? body.error : text.slice(0, 200) || res.statusText
    const error = new HTTPError(res.status, message, clean.toString())
    if (this.#isFatal(error)) return { kind: 'fatal', retryAfterMs: wait, error }
    if (res.status === 401) return { kind: 'auth', retryAfterMs: wait, error } // the token function may give a fresh one
    if (typeof body?.fallback === 'string' && body.fallback !== '') return { kind: 'steer', retryAfterMs: wait, error }
    if (res.status === 503) return { kind: 'transient', retryAfterMs: wait, error }
    return { kind: 'other', retryAfterMs: wait, error }
  }

  /** Whether retrying cannot help: the request or the credentials are wrong. @param {unknown} err */
  #isFatal(err) {
    if (!(err instanceof HTTPError)) return false
    if (err.status === 401) return typeof this.#o.token !== 'function' // a token function may give a fresh one
    return err.status === 400 || err.status === 403 || err.status === 404
  }

  /** @param {Status['state']} state @param {Partial<Status>} [detail] */
  #setStatus(state, detail = {}) {
    /** @type {Status} */
    const s = { state, transport: this.#transport, ...(this.#fallbackReason ? { reason: this.#fallbackReason } : {}), ...detail }
    const prev = this.#status
    if (prev.state === s.state && prev.transport === s.transport && prev.reason === s.reason &&
      !s.error && !prev.error && s.retryInMs === prev.retryInMs && s.planned === prev.planned) return
    this.#status = Object.freeze(s)
    if (this.#o.onStatus) this.#call(this.#o.onStatus, this.#status)
  }

  /**
   * Delivers envelopes in id order: those at or below the position are
   * dropped, those of types not listened for only move the position.
   * @param {any[]} envelopes
   */
  #ingest(envelopes) {
    const before = this.#position
    for (const raw of envelopes) {
      if (this.#closed) break
      const id = raw && typeof raw === 'object' ? String(raw.id) : ''
      if (!EVENT_ID.test(id) || typeof raw.type !== 'string') {
        this.#report(new Error(`coursestream: malformed event envelope ${String(JSON.stringify(raw)).slice(0, 200)}`))
        continue
      }
      if (this.#position !== null && cmpID(id, this.#position) <= 0) continue
      this.#position = id
      if (!this.#accepts.has(raw.type)) continue
      /** @type {Envelope} */
      const ev = deepFreeze(raw)
      if (this.#o.onEvent) this.#call(this.#o.onEvent, ev)
      this.#notify(ev)
      if (typeof ev.operationId === 'string' && ev.operationId !== '') this.#operation(ev.operationId, ev)
    }
    if (this.#position !== before) this.#persist()
  }

  /**
   * A reset: the events after the position are gone. The position becomes
   * the server's, even when lower (the course's ids may have restarted).
   * @param {unknown} data
   */
  #applyReset(data) {
    const id = String(/** @type {any} */ (data)?.lastEventId ?? '')
    if (!EVENT_ID.test(id)) {
      this.#report(new Error(`coursestream: malformed reset ${String(JSON.stringify(data)).slice(0, 200)}`))
      return
    }
    this.#setPosition(id)
    this.#etag = null
    /** @type {ResetInfo} */
    const info = Object.freeze({ courseId: this.#courseId, lastEventId: id })
    if (this.#o.onReset) this.#call(this.#o.onReset, info)
    this.#notify(Object.freeze({ type: /** @type {'reset'} */ ('reset'), courseId: this.#courseId, lastEventId: id }))
  }

  /** @param {Envelope | ResetEvent} ev */
  #notify(ev) {
    for (const sub of [...this.#subs]) {
      if (this.#closed) break
      if (this.#subs.has(sub)) this.#call(sub.fn, ev) // an unsubscribe during the loop takes effect at once
    }
  }

  /** @param {string} id */
  #setPosition(id) {
    this.#position = id
    this.#persist()
  }

  #persist() {
    if (this.#o.persist !== false && this.#position !== null) {
      storageSet('sessionStorage', this.#positionKey, this.#position)
    }
  }

  /** @param {string} opId @param {Envelope} ev */
  #operation(opId, ev) {
    this.#recentOps.delete(opId)
    this.#recentOps.set(opId, ev)
    if (this.#recentOps.size > RECENT_OPERATIONS) {
      this.#recentOps.delete(/** @type {string} */ (this.#recentOps.keys().next().value))
    }
    const set = this.#waiters.get(opId)
    if (!set) return
    for (const w of [...set]) { w.done(); w.resolve(ev) }
  }

  /** Calls a user callback; what it throws is reported, never propagated. @param {Function} fn @param {unknown} arg */
  #call(fn, arg) {
    try {
      fn(arg)
    } catch (err) {
      this.#report(err)
    }
  }

  /** @param {unknown} err */
  #report(err) {
    const onError = this.#o.onError
    if (typeof onError === 'function') {
      try {
        onError(err)
        return
      } catch (err2) {
        rethrowLater(err2)
      }
    }
    rethrowLater(err)
  }
}

/**
 * What a driver may do to its connection.
 * @typedef {{
 *   options: ConnectOptions & typeof DEFAULTS, listenTypes: readonly string[], accepts: (type: string) => boolean,
 *   coalesceMs: number, readonly position: string | null, readonly etag: string | null,
 *   setETag: (tag: string | null, pos: string) => void, token: () => Promise<string | null>,
 *   sseURL: (token: string | null) => string, requestPoll: (req: PollRequest) => Promise<PollResponse>,
 *   probeStream: (url: string, signal: AbortSignal) => Promise<Refusal>,
 *   ingest: (envs: any[]) => void, advance: (id: string) => void, reset: (data: unknown) => void,
 *   report: (err: unknown) => void, status: (state: Status['state'], detail?: Partial<Status>) => void,
 *   isFatal: (err: unknown) => boolean, fail: (err: unknown) => void,
 *   sseOpened: () => void, sseWorked: () => void, sseFailed: (reason: string) => boolean, pollAnswered: (ok: boolean) => void,
 * }} Port
 */

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
 */
class SSEDriver {
  /** @type {EventSource | null} */
  es = null
  url = '' // of es, for the probe of a refusal
  stopped = false
  opening = false
  probing = false
  attempt = 0 // failures in a row: the backoff's exponent
  strikes = 0 // failures in a row that count toward auto's fallback (not transient refusals)
  planned = false // the reconnection under way is the one a drain frame asked for
  holdUntil = 0 // no reconnection before this (drain frame, Retry-After), even when the page shows
  openedAt = 0
  worked = false // something came through a stream of this driver
  /** @type {ReturnType<typeof setTimeout> | undefined} */ retryTimer
  /** @type {ReturnType<typeof setTimeout> | undefined} */ watchdog
  /** @type {ReturnType<typeof setTimeout> | undefined} */ auditTimer
  /** @type {AbortController | null} */ auditAbort = null
  /** @type {AbortController | null} */ probeAbort = null

  /** @param {Port} port */
  constructor(port) {
    this.port = port
    this.twoBeats = 2 * port.options.heartbeatMs
  }

  start() { this.open() }

  stop() {
    this.stopped = true
    this.closeSource()
    this.probeAbort?.abort()
    clearTimeout(this.retryTimer)
  }

  hidden() {} // an open stream costs little; it stays open

  visible() {
    if (this.stopped || this.opening || this.probing) return
    if (!this.es) { // waiting to reconnect: do it now, unless the server asked for the wait
      if (Date.now() < this.holdUntil) return
      clearTimeout(this.retryTimer)
      this.open()
    } else if (this.openedAt) {
      this.audit()
    }
  }

  closeSource() {
    this.es?.close()
    this.es = null
    clearTimeout(this.watchdog)
    clearTimeout(this.auditTimer)
    this.auditAbort?.abort()
    this.auditAbort = null
  }

  async open() {
    if (this.stopped || this.opening || this.probing || this.es) return
    const port = this.port
    let token
    this.opening = true
    try {
      token = await port.token()
    } catch (err) {
      this.opening = false
      this.failed('dropped', err)
      return
    }
    this.opening = false
    if (this.stopped || this.es) return
    clearTimeout(this.retryTimer)
    this.holdUntil = 0
    if (this.planned) port.status('reconnecting', { planned: true })
    else if (this.attempt > 0) port.status('reconnecting')
    const url = port.sseURL(token)
    const es = new EventSource(url, { withCredentials: !!port.options.withCredentials })
    this.es = es
    this.url = url
    this.openedAt = 0
    /** @param {Event} e */
    const onMessage = (e) => {
      if (es !== this.es) return
      const data = /** @type {MessageEvent} */ (e).data
      let env
      try {
        env = JSON.parse(data)
      } catch {
        port.report(new Error(`coursestream: an SSE event is not JSON: ${String(data).slice(0, 200)}`))
        return
      }
      this.cameThrough()
      port.ingest([env])
      this.armAudit()
    }
    for (const t of port.listenTypes) es.addEventListener(t, onMessage)
    es.addEventListener('reset', (e) => {
      if (es !== this.es) return
      this.cameThrough()
      let data = null
      try { data = JSON.parse(/** @type {MessageEvent} */ (e).data) } catch { /* reported by reset */ }
      port.reset(data)
      this.armAudit()
    })
    es.addEventListener(DRAIN_EVENT, (e) => {
      if (es !== this.es) return
      this.cameThrough()
      let ms = NaN
      try {
        const v = JSON.parse(/** @type {MessageEvent} */ (e).data)?.retryMs
        if (typeof v === 'number') ms = v
      } catch { /* no delay given: the backoff picks one */ }
      this.drained(ms)
    })
    es.onopen = () => {
      if (es !== this.es) return
      clearTimeout(this.watchdog)
      this.openedAt = Date.now()
      this.planned = false
      port.sseOpened()
      port.status('open')
      this.armAudit()
    }
    es.onerror = () => {
      if (es !== this.es) return
      // CLOSED: an error status or a wrong content type, which the browser
      // never retries. CONNECTING: a network error or a dropped stream.
      this.failed(es.readyState === EventSource.CLOSED ? 'refused' : 'dropped')
    }
    this.watchdog = setTimeout(() => {
      if (es === this.es && !this.openedAt) this.failed('silent')
    }, this.twoBeats)
  }

  /**
   * The server ends the stream on purpose and says when to come back:
   * close it before the browser reconnects by itself, and reconnect from
   * the position after ms (the backoff's delay when the frame has none).
   * The stream worked: the failure counts start again.
   * @param {number} ms NaN when the frame carries no delay
   */
  drained(ms) {
    if (this.stopped) return
    this.closeSource()
    this.attempt = 0
    this.strikes = 0
    this.planned = true
    const o = this.port.options
    const delay = Number.isFinite(ms) ? Math.min(MAX_SERVER_DELAY_MS, Math.max(0, ms)) : backoffDelay(0, o.backoffBaseMs, o.backoffMaxMs)
    this.holdUntil = Date.now() + delay
    this.port.status('reconnecting', { retryInMs: Math.round(delay), planned: true })
    clearTimeout(this.retryTimer)
    this.retryTimer = setTimeout(() => this.open(), delay)
  }

  /**
   * @param {'refused' | 'dropped' | 'silent' | 'stalled'} why
   * @param {unknown} [error]
   */
  async failed(why, error) {
    if (this.stopped) return
    const lived = this.openedAt ? Date.now() - this.openedAt : 0
    const url = this.url
    this.closeSource()
    this.planned = false
    if (lived >= STABLE_MS) {
      this.attempt = 0
      this.strikes = 0
    }
    this.attempt++
    const port = this.port
    let atLeast = 0 // Retry-After
    let now = false // retry at once
    let strike = true
    if (why === 'refused') {
      const r = await this.whyRefused(url)
      if (this.stopped) return
      if (r.error) error = r.error
      atLeast = r.retryAfterMs
      switch (r.kind) {
        case 'fatal': // 400, 403, 404, or 401 with a fixed token: retrying cannot help
          port.fail(r.error)
          return
        case 'open': // refused, yet the stream answers now (an instance that was draining, say)
          now = true
          break
        case 'transient': // a 503 without fallback: a draining or overloaded instance, not SSE's fault
        case 'auth': // a 401 with a token function: the next token may do
          strike = false
          break
        default: // steered to polling, another error status, or nothing to tell: auto falls back
          if (port.sseFailed('refused')) return
      }
    } else if (why === 'silent' || why === 'stalled') {
      if (port.sseFailed(why)) return // auto: nothing gets through over SSE
    }
    if (strike && ++this.strikes >= SSE_FAILURES && port.sseFailed(why === 'dropped' ? 'unreachable' : why)) return
    const o = port.options
    const delay = now ? 0 : atLeast + backoffDelay(this.attempt - 1, o.backoffBaseMs, o.backoffMaxMs)
    this.holdUntil = Date.now() + atLeast
    port.status('reconnecting', { retryInMs: Math.round(delay), ...(error ? { error } : {}) })
    clearTimeout(this.retryTimer)
    this.retryTimer = setTimeout(() => this.open(), delay)
  }

  /**
   * Why the EventSource at url was refused (the probe's answer), or
   * 'other' when the probe fails too or gets no answer within 2 heartbeats.
   * @param {string} url
   * @returns {Promise<Refusal>}
   */
  async whyRefused(url) {
    const ac = new AbortController()
    this.probeAbort = ac
    this.probing = true
    const timer = setTimeout(() => ac.abort(), this.twoBeats)
    try {
      return await this.port.probeStream(url, ac.signal)
    } catch {
      return { kind: 'other', retryAfterMs: 0 } // a network or CORS error: as any refusal
    } finally {
      clearTimeout(timer)
      ac.abort() // a 200's stream, if still open
      this.probing = false
      this.probeAbort = null
    }
  }

  /** A frame came through: SSE works here (the failure count starts again). */
  cameThrough() {
    if (this.worked) return
    this.worked = true
    this.strikes = 0
    this.port.sseWorked()
  }

  armAudit() {
    clearTimeout(this.auditTimer)
    this.auditTimer = setTimeout(() => this.audit(), this.twoBeats)
  }

  async audit() {
    const es = this.es
    const port = this.port
    const from = port.position
    if (this.stopped || !es || !this.openedAt || this.auditAbort || from === null) return
    clearTimeout(this.auditTimer)
    const ac = new AbortController()
    this.auditAbort = ac
    let res = null
    try {
      res = await port.requestPoll({ after: from, signal: ac.signal, etag: port.etag })
    } catch {
      // the poll failing is not the stream's fault
    } finally {
      if (this.auditAbort === ac) this.auditAbort = null
    }
    if (es !== this.es) return
    if (!res || res.status !== 200) { this.armAudit(); return }
    const body = res.body
    port.setETag(res.etag, String(body.lastEventId))
    /** @type {string | null} */
    let owed = body.reset ? String(body.lastEventId) : null
    for (const ev of body.events ?? []) if (ev && port.accepts(ev.type)) owed = String(ev.id)
    if (owed === null) {
      // Nothing owed: events up to there are of other types. Moving past
      // them keeps the next audit's If-None-Match matching (a 304).
      port.advance(String(body.lastEventId))
      this.armAudit()
      return
    }
    // The stream owes events up to `owed`: give it a moment (longer than a
    // coalesce window) to bring them.
    const target = owed
    this.auditTimer = setTimeout(() => {
      if (es !== this.es) return
      const now = port.position
      if (now !== null && cmpID(now, target) >= 0) this.armAudit()
      else this.failed('stalled')
    }, Math.max(2_000, port.coalesceMs + 1_000))
  }
}

/**
 * ETag polling, and long-polling with ?wait=. It follows more:true at once,
 * waits an interval that grows x1.5 while nothing changes (with +-20%
 * jitter), backs off with full jitter on errors (at least Retry-After), and
 * pauses while the page is hidden.
 */
class PollDriver {
  stopped = false
  paused = false
  busy = false
  answered = false // a poll of this driver was answered
  errors = 0
  idle = 0
  /** @type {ReturnType<typeof setTimeout> | undefined} */ timer
  /** @type {AbortController | null} */ ac = null

  /** @param {Port} port @param {boolean} long */
  constructor(port, long) {
    this.port = port
    this.long = long
  }

  start() { this.step() }

  stop() {
    this.stopped = true
    clearTimeout(this.timer)
    this.ac?.abort()
  }

  hidden() {
    if (this.port.options.pauseWhenHidden === false || this.paused) return
    this.paused = true
    clearTimeout(this.timer)
    this.ac?.abort() // a waiting long-poll too
    this.port.status('paused')
  }

  visible() {
    if (this.stopped) return
    this.paused = false
    if (this.busy) return // the request in flight (or its abort) carries on
    clearTimeout(this.timer)
    this.step()
  }

  /** @param {number} ms */
  schedule(ms) {
    clearTimeout(this.timer)
    if (!this.stopped && !this.paused) this.timer = setTimeout(() => this.step(), ms)
  }

  async step() {
    if (this.stopped || this.paused || this.busy) return
    const port = this.port
    const o = port.options
    const after = port.position ?? '0'
    const ac = new AbortController()
    this.ac = ac
    this.busy = true
    const started = Date.now()
    let res
    try {
      // A long-poll driver asks once without waiting first: it tells at
      // once that the server answers (status open) and where things are.
      const wait = this.long && this.answered ? String(o.longPollWait) : undefined
      res = await port.requestPoll({ after, signal: ac.signal, etag: port.etag, wait })
    } catch (err) {
      this.busy = false
      if (this.stopped) return
      if (ac.signal.aborted) { this.schedule(0); return } // paused meanwhile: schedule waits for visible
      this.retry(err, 0)
      return
    }
    this.busy = false
    if (this.stopped) return
    if (this.paused) return // hidden meanwhile: the next poll asks again

    if (res.status === 200 || res.status === 304) {
      this.errors = 0
      const held = this.long && this.answered
      this.answered = true
      port.status('open')
      let changed = false
      if (res.status === 200) {
        const body = res.body
        const last = String(body.lastEventId)
        const before = port.position
        if (body.reset) {
          port.reset({ courseId: body.courseId, lastEventId: last })
        } else {
          port.ingest(body.events ?? [])
          port.advance(last)
        }
        changed = body.reset || port.position !== before
        port.setETag(res.etag, last)
        port.pollAnswered(true)
        if (this.stopped) return
        if (body.more) { this.schedule(0); return }
      } else {
        port.setETag(res.etag, after)
        port.pollAnswered(true)
        if (this.stopped) return
      }
      this.idle = changed ? 0 : this.idle + 1
      if (this.long && (!held || Date.now() - started >= 1_000)) { this.schedule(0); return } // held (or first): ask again
      const interval = Math.min(o.maxPollIntervalMs, o.pollIntervalMs * 1.5 ** Math.max(0, this.idle - 1))
      this.schedule(changed && this.long ? 0 : interval * (0.8 + 0.4 * Math.random()))
      return
    }
    const err = new HTTPError(res.status, res.error ?? 'unexpected status', res.url)
    if (port.isFatal(err)) { port.fail(err); return }
    this.retry(err, res.retryAfterMs)
  }

  /** @param {unknown} err @param {number} atLeast */
  retry(err, atLeast) {
    const port = this.port
    port.pollAnswered(false)
    if (this.stopped) return
    const delay = Math.max(atLeast, backoffDelay(this.errors++, port.options.backoffBaseMs, port.options.backoffMaxMs))
    port.status('reconnecting', { error: err, retryInMs: Math.round(delay) })
    this.schedule(delay)
  }
}

export default connect
