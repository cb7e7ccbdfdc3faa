// @ts-check
/**
 * The subscription to one course: its position, its status, its
 * listeners, and the driver (SSE or polling) that brings its events.
 * @module coursestream/connection
 */
import { CourseAPI } from './api.js'
import { AutoFallback } from './auto-fallback.js'
import { backoffDelay } from './backoff.js'
import { HTTPError, domError, report } from './errors.js'
import { COURSE_EVENTS, deepFreeze, resetEvent } from './envelope.js'
import { BEYOND, EVENT_ID, cmpID } from './ids.js'
import { Listeners } from './listeners.js'
import { Operations } from './operations.js'
import { DEFAULTS, parseOptions } from './options.js'
import { pageHidden, watchPage } from './page.js'
import { PollDriver } from './driver-poll.js'
import { SavedPosition } from './saved-position.js'
import { SSEDriver } from './driver-sse.js'
import { isNews, makeStatus } from './status.js'
import { join, shares } from './share.js'
import { NO_STATS, PollCounter } from './stream-stats.js'

/**
 * @import { Envelope, ResetEvent, ResetInfo } from './envelope.js'
 * @import { ConnectOptions, Settings } from './options.js'
 * @import { State, Status, Transport } from './status.js'
 * @import { PollResponse } from './api.js'
 * @import { Driver, Port } from './port.js'
 * @import { Membership } from './share.js'
 * @import { PlainError, PlainStatus } from './feed.js'
 * @import { Holder } from './share-backend.js'
 * @import { StreamStats } from './stream-stats.js'
 * @typedef {'starting' | 'running' | 'closed'} Phase
 *   starting: finding out where the course is (no driver yet); running: a driver (or, when
 *   shared, the group's stream) brings events; closed: by close, or by a fatal error
 */

/**
 * Opens a subscription to one course. It starts on the next microtask, so
 * callbacks may refer to the returned connection.
 * @param {ConnectOptions} options
 * @returns {Connection}
 */
export function connect(options) {
  return new Connection(options)
}

/** A subscription to one course; see connect. close ends its every timer and request. */
export class Connection {
  /** @type {Settings} */
  #s
  #api
  /** @type {AutoFallback | null} */
  #auto = null
  /** @type {Phase} */
  #phase = 'starting'
  /** @type {Transport} */
  #transport
  /** @type {Driver | null} */
  #driver = null
  #sharing
  /** @type {Membership | null} */
  #membership = null
  #port
  /** @type {string | null} */
  #position
  /** @type {{tag: string, pos: string} | null} */
  #etag = null
  #accepts
  #saved
  /** @type {Status} */
  #status
  #listeners
  #ops = new Operations()
  #polls = new PollCounter() // this connection's own stream
  /** @type {Readonly<StreamStats>} the shared stream's, as its holder last told */
  #sharedStats = NO_STATS
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #beginTimer
  #beginAttempt = 0
  /** @type {AbortController | null} */
  #beginAbort = null
  /** @type {Promise<PollResponse> | null} */
  #firstAsk = null
  #unwatch

  /** @param {ConnectOptions} options */
  constructor(options) {
    const s = parseOptions(options)
    this.#s = s
    this.#api = new CourseAPI(s)
    this.#accepts = s.types.length > 0 ? new Set(s.types) : null // null: every type (dispatch=message)
    this.#sharing = shares(s)
    this.#saved = new SavedPosition(s.base, s.courseId, s.types, s.options.persist !== false)
    this.#listeners = new Listeners((fn, ev) => this.#call(fn, ev), () => this.closed)
    // Where to start: the page's own position, else where this tab was
    // before a reload, else (null) the course's current id, asked first.
    this.#position = s.start ?? this.#saved.load()
    if (this.#sharing) {
      this.#transport = s.requested !== 'auto' ? s.requested : typeof EventSource === 'function' ? 'sse' : s.fallbackTo
    } else if (s.requested === 'auto') {
      this.#auto = new AutoFallback(s, this.#host())
      this.#transport = this.#auto.choose()
    } else {
      this.#transport = s.requested
    }
    this.#status = makeStatus('connecting', this.#transport, this.#reason())
    this.#port = this.#makePort()
    this.#unwatch = watchPage(() => this.#onVisibility(), () => this.#onOnline())
    if (this.#position === null && typeof s.options.token !== 'function') {
      // Ask where the course is now, from the caller's task: the request
      // leaves before whatever the caller does next (a publish, say).
      this.#beginAbort = new AbortController()
      this.#firstAsk = this.#askPosition(this.#beginAbort.signal)
      this.#firstAsk.catch(() => {}) // #begin handles it
    }
    queueMicrotask(() => {
      const onStatus = this.#s.options.onStatus
      if (onStatus && !this.closed) this.#call(onStatus, this.#status)
      this.#begin()
    })
  }

  /** The course this connection follows. */
  get courseId() { return this.#s.courseId }

  /** The transport in use now: 'sse', 'poll' or 'longpoll'. */
  get transport() { return this.#transport }

  /** The id of the last event seen (or skipped past); null until known. */
  get lastEventId() { return this.#position }

  /** The latest status, as given to onStatus. */
  get status() { return this.#status }

  /**
   * The polls of the stream this connection rides (its own, or the shared
   * one as its holder last reported): requests sent, and answers 304.
   * @returns {Readonly<StreamStats>}
   */
  get stats() { return this.#sharing ? this.#sharedStats : this.#polls.stats }

  /** Whether the connection is closed (by close, or by a fatal error). */
  get closed() { return this.#phase === 'closed' }

  /**
   * Adds a listener for every event envelope and for resets (as
   * {type: 'reset', courseId, lastEventId}). Returns its unsubscribe
   * function; calling that again does nothing.
   * @param {(event: Envelope | ResetEvent) => void} listener
   * @returns {() => void}
   */
  subscribe(listener) {
    return this.#listeners.add(listener)
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
    const seen = this.#ops.seen(operationId)
    if (seen) return Promise.resolve(seen)
    if (this.closed) return Promise.reject(domError('AbortError', 'the connection is closed'))
    const signal = opts.signal
    if (signal?.aborted) return Promise.reject(signal.reason ?? domError('AbortError', 'aborted'))
    return this.#ops.wait(operationId, ms, signal)
  }

  /** Stops delivery and releases everything; idempotent. The position stays saved for a reload. */
  close() {
    this.#shutdown(null)
  }

  // ---- lifecycle ---------------------------------------------------------

  /** The poll that tells where the course is now. @param {AbortSignal} signal */
  #askPosition(signal) {
    return this.#api.poll({ after: BEYOND, signal, etag: null, filtered: false })
  }

  async #begin() {
    if (this.closed) return
    if (this.#position === null && !(await this.#locate())) return
    this.#phase = 'running'
    if (this.#sharing) { this.#joinGroup(); return }
    this.#auto?.started()
    this.#use(this.#transport, this.#auto?.startsAsTry ?? false)
  }

  /** Rides the page's shared stream (see share.js) from the position. */
  #joinGroup() {
    const self = this
    this.#membership = join(this.#s, {
      courseId: this.#s.courseId,
      get position() { return self.#position },
      events: (envs) => this.#ingest(envs),
      reset: (courseId, lastEventId) => this.#applyReset({ courseId, lastEventId }),
      status: (st, holder) => this.#sharedStatus(st, holder),
      stats: (st) => { this.#sharedStats = Object.freeze({ polls: st.polls, notModified: st.notModified }) },
      failed: (err) => this.#shutdown(fromPlain(err)),
    })
  }

  /** The shared stream's status, as this connection's. @param {PlainStatus} st @param {Holder} holder */
  #sharedStatus(st, holder) {
    if (this.closed) return
    this.#transport = st.transport
    /** @type {Partial<Status>} */
    const detail = { sharing: holder }
    if (st.retryInMs !== undefined) detail.retryInMs = st.retryInMs
    if (st.planned) detail.planned = true
    if (st.error) detail.error = fromPlain(st.error)
    const next = makeStatus(st.state, st.transport, st.reason ?? null, detail)
    if (!isNews(this.#status, next)) return
    this.#status = next
    const onStatus = this.#s.options.onStatus
    if (onStatus) this.#call(onStatus, next)
  }

  /**
   * Asks for the course's current id first, so that nothing published
   * after connect() is missed whatever happens next (reconnects before the
   * first event, a fallback, a reload). Retries with backoff (false then).
   * @returns {Promise<boolean>} whether the position is known
   */
  async #locate() {
    if (this.#beginAttempt > 0) this.#setStatus('reconnecting')
    const ac = this.#beginAbort ?? new AbortController()
    this.#beginAbort = ac
    const ask = this.#firstAsk ?? this.#askPosition(ac.signal)
    this.#firstAsk = null
    try {
      const res = await ask
      if (this.closed) return false
      if (res.status !== 200) throw new HTTPError(res.status, res.error ?? 'unexpected status', res.url)
      this.#setPosition(String(res.body.lastEventId))
      return true
    } catch (err) {
      if (this.closed) return false
      if (this.#api.isFatal(err)) { this.#shutdown(err); return false }
      const o = this.#s.options
      const delay = backoffDelay(this.#beginAttempt++, o.backoffBaseMs, o.backoffMaxMs)
      this.#setStatus('reconnecting', { error: err, retryInMs: Math.round(delay) })
      this.#beginTimer = setTimeout(() => this.#begin(), delay)
      return false
    } finally {
      this.#beginAbort = null
    }
  }

  /**
   * @param {Transport} transport
   * @param {boolean} asTry auto trying SSE again: its first failure goes back to polling
   */
  #use(transport, asTry) {
    this.#driver?.stop()
    this.#driver = null
    if (this.closed) return
    this.#transport = transport
    this.#setStatus('connecting')
    this.#driver = transport === 'sse' ? new SSEDriver(this.#port, asTry) : new PollDriver(this.#port, transport === 'longpoll')
    this.#driver.start()
    if (pageHidden()) this.#driver.hidden()
  }

  /** @param {unknown} err null for a close by the caller */
  #shutdown(err) {
    if (this.closed) return
    this.#phase = 'closed'
    this.#driver?.stop()
    this.#driver = null
    this.#membership?.leave()
    this.#membership = null
    this.#beginAbort?.abort()
    clearTimeout(this.#beginTimer)
    this.#auto?.stop()
    this.#unwatch()
    this.#ops.rejectAll(err ?? domError('AbortError', 'the connection is closed'))
    this.#setStatus('closed', err ? { error: err } : {})
  }

  #onVisibility() {
    if (this.closed || !this.#driver) return
    if (pageHidden()) this.#driver.hidden()
    else this.#driver.visible()
  }

  #onOnline() {
    if (!this.closed && !pageHidden()) this.#driver?.visible()
  }

  /** @returns {import('./auto-fallback.js').Host} */
  #host() {
    const self = this
    return {
      get transport() { return self.#transport },
      get closed() { return self.closed },
      use: (transport, asTry) => this.#use(transport, asTry),
    }
  }

  // ---- what the drivers use ------------------------------------------------

  /** @returns {Port} */
  #makePort() {
    const s = this.#s
    const self = this
    return {
      options: s.options,
      listenTypes: Object.freeze(['message', ...new Set([...COURSE_EVENTS, ...s.types])]),
      accepts: (type) => this.#accepts?.has(type) ?? true,
      coalesceMs: s.coalesceMs,
      get position() { return self.#position },
      get etag() { return self.#etag && self.#etag.pos === self.#position ? self.#etag.tag : null },
      setETag: (tag, pos) => { if (tag) this.#etag = { tag, pos } },
      token: () => this.#api.token(),
      sseURL: (token) => this.#api.streamURL(this.#position, token),
      requestPoll: (req) => this.#polls.count(this.#api.poll(req)),
      probeStream: (url, signal) => this.#api.probeStream(url, signal),
      ingest: (envs) => this.#ingest(envs),
      advance: (id) => {
        if (EVENT_ID.test(id) && (this.#position === null || cmpID(id, this.#position) > 0)) this.#setPosition(id)
      },
      reset: (data) => this.#applyReset(data),
      report: (err) => this.#report(err),
      status: (state, detail) => this.#setStatus(state, detail),
      isFatal: (err) => this.#api.isFatal(err),
      fail: (err) => this.#shutdown(err),
      sseOpened: () => this.#auto?.sseOpened(),
      sseWorked: () => this.#auto?.sseWorked(),
      sseFailed: (reason) => this.#auto?.sseFailed(reason) ?? false,
      pollAnswered: (ok) => this.#auto?.pollAnswered(ok),
      owed: (body) => {
        let owed = body.reset ? String(body.lastEventId) : null
        for (const ev of body.events ?? []) if (ev && (this.#accepts?.has(ev.type) ?? true)) owed = String(ev.id)
        return owed
      },
      reached: (target) => this.#position !== null && cmpID(this.#position, String(target)) >= 0,
      renewable: typeof s.options.token === 'function',
    }
  }

  /** Why auto polls, for the status. */
  #reason() {
    return this.#auto?.reason ?? null
  }

  /** @param {State} state @param {Partial<Status>} [detail] */
  #setStatus(state, detail = {}) {
    const s = makeStatus(state, this.#transport, this.#reason(), detail)
    if (!isNews(this.#status, s)) return
    this.#status = s
    const onStatus = this.#s.options.onStatus
    if (onStatus) this.#call(onStatus, this.#status)
  }

  /**
   * Delivers envelopes in id order: those at or below the position are
   * dropped, those of types not listened for only move the position.
   * @param {any[]} envelopes
   */
  #ingest(envelopes) {
    const before = this.#position
    for (const raw of envelopes) {
      if (this.closed) break
      const id = raw && typeof raw === 'object' ? String(raw.id) : ''
      if (!EVENT_ID.test(id) || typeof raw.type !== 'string') {
        this.#report(new Error(`coursestream: malformed event envelope ${String(JSON.stringify(raw)).slice(0, 200)}`))
        continue
      }
      if (this.#position !== null && cmpID(id, this.#position) <= 0) continue
      this.#position = id
      if (this.#accepts?.has(raw.type) ?? true) this.#deliver(deepFreeze(raw))
    }
    if (this.#position !== before) this.#saved.save(this.#position)
  }

  /** @param {Envelope} ev */
  #deliver(ev) {
    const onEvent = this.#s.options.onEvent
    if (onEvent) this.#call(onEvent, ev)
    this.#listeners.notify(ev)
    if (typeof ev.operationId === 'string' && ev.operationId !== '') this.#ops.arrived(ev.operationId, ev)
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
    const courseId = this.#s.courseId
    /** @type {ResetInfo} */
    const info = Object.freeze({ courseId, lastEventId: id })
    const onReset = this.#s.options.onReset
    if (onReset) this.#call(onReset, info)
    this.#listeners.notify(resetEvent(courseId, id))
  }

  /** @param {string} id */
  #setPosition(id) {
    this.#position = id
    this.#saved.save(id)
  }

  /**
   * Calls a user callback; what it throws is reported, never propagated.
   * @template T @param {(arg: T) => void} fn @param {T} arg
   */
  #call(fn, arg) {
    try {
      fn(arg)
    } catch (err) {
      this.#report(err)
    }
  }

  /** @param {unknown} err */
  #report(err) {
    report(this.#s.options.onError, err)
  }
}

/** An error posted as plain data, as an HTTPError again when it has a status. @param {PlainError} e */
function fromPlain(e) {
  if (typeof e.status === 'number') return new HTTPError(e.status, e.message, e.url ?? '')
  const err = new Error(e.message)
  err.name = e.name
  return err
}
