// @ts-check
/**
 * A shared stream: the one multi-course stream (or multi-course poll) that
 * carries the courses of every member of a group, wherever it runs (this
 * page, the tab that leads, or the SharedWorker). It keeps the stream's
 * cursor, runs one driver at a time on it, and re-opens it from the cursor
 * when the set of courses changes or a member asks from further back.
 * @module coursestream/feed
 */
import { AutoFallback } from './auto-fallback.js'
import { COURSE_EVENTS } from './envelope.js'
import { advanceTo, formatCursor, parseCursor, reached } from './cursor.js'
import { DEFAULTS } from './options.js'
import { EVENT_ID } from './ids.js'
import { MultiAPI } from './multi-api.js'
import { PollDriver } from './driver-poll.js'
import { Roster, samePositions } from './roster.js'
import { SSEDriver } from './driver-sse.js'
import { makeStatus } from './status.js'
import { PollCounter } from './stream-stats.js'

/**
 * @import { Positions } from './cursor.js'
 * @import { FeedSettings } from './share-key.js'
 * @import { Driver, Port } from './port.js'
 * @import { State, Status, Transport } from './status.js'
 * @import { StreamStats } from './stream-stats.js'
 * @typedef {{name: string, message: string, status?: number, url?: string}} PlainError an error as posted
 * @typedef {{state: State, transport: Transport, reason?: string, retryInMs?: number, planned?: boolean,
 *   error?: PlainError}} PlainStatus a status as posted
 * @typedef {{
 *   events: (json: string) => void, reset: (courseId: string, lastEventId: string) => void,
 *   status: (status: PlainStatus) => void, stats: (stats: StreamStats) => void, failed: (error: PlainError) => void,
 * }} FeedSink where a feed's output goes: envelopes as JSON text (an array), plain data only;
 *   stats after each poll
 * @typedef {'idle' | 'running' | 'stopped'} Phase
 *   idle: no course wanted (no driver); running: a driver brings the courses' events; stopped: for good
 */

/** How long a feed waits for more changes of its courses before it re-opens (a burst of connect()s). */
export const SETTLE_MS = 25

/** One shared stream. Its driver and timer end with stop. */
export class Feed {
  /** @type {Phase} */
  #phase = 'idle'
  /** @type {Positions} */
  #positions = new Map()
  #roster = new Roster()
  #api
  #f
  #sink
  #token
  /** @type {Driver | null} */
  #driver = null
  /** @type {AutoFallback | null} */
  #auto = null
  /** @type {Transport} */
  #transport
  /** @type {{tag: string, pos: string} | null} */
  #etag = null
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #settle
  #port
  #options
  #polls

  /**
   * @param {FeedSettings} f
   * @param {() => Promise<string | null>} token asks for the token of the next request
   * @param {FeedSink} sink
   */
  constructor(f, token, sink) {
    this.#f = f
    this.#api = new MultiAPI(f)
    this.#sink = sink
    this.#token = token
    this.#polls = new PollCounter((st) => { if (this.#phase !== 'stopped') this.#sink.stats({ ...st }) })
    this.#options = /** @type {any} */ ({ ...DEFAULTS, ...f.tuning, withCredentials: f.withCredentials, pauseWhenHidden: false })
    if (f.requested === 'auto') {
      const self = this
      this.#auto = new AutoFallback(/** @type {any} */ ({ base: new URL(f.base), options: this.#options, fallbackTo: f.fallbackTo }), {
        get transport() { return self.#transport },
        get closed() { return self.#phase === 'stopped' },
        use: (transport, asTry) => this.#use(transport, asTry),
      })
      this.#transport = this.#auto.choose()
    } else {
      this.#transport = f.requested
    }
    this.#port = this.#makePort()
  }

  /** The stream's cursor now ('' before it has courses). */
  get cursor() { return formatCursor(this.#positions) }

  /** The transport in use now. */
  get transport() { return this.#transport }

  /**
   * Sets a member's courses (course → its position); the stream re-opens
   * once the changes settle, when the set or a start position changed.
   * @param {string} member @param {Record<string, string>} courses
   */
  set(member, courses) {
    if (this.#phase === 'stopped') return
    this.#roster.set(member, courses)
    this.#changed()
  }

  /** @param {string} member */
  remove(member) {
    if (this.#phase === 'stopped') return
    this.#roster.remove(member)
    this.#changed()
  }

  /** The members that want course. @param {string} course */
  wanting(course) { return this.#roster.wanting(course) }

  /** Whether no member is left. */
  get empty() { return this.#roster.empty }

  stop() {
    this.#phase = 'stopped'
    clearTimeout(this.#settle)
    this.#driver?.stop()
    this.#driver = null
    this.#auto?.stop()
  }

  #changed() {
    clearTimeout(this.#settle)
    this.#settle = setTimeout(() => this.#reopen(), SETTLE_MS)
  }

  #reopen() {
    if (this.#phase === 'stopped') return
    const next = this.#roster.startFrom(this.#positions)
    if (this.#driver && samePositions(next, this.#positions)) return
    this.#positions = next
    this.#etag = null
    if (next.size === 0) {
      this.#driver?.stop()
      this.#driver = null
      this.#phase = 'idle'
      return
    }
    if (this.#phase === 'idle') this.#auto?.started()
    this.#phase = 'running'
    this.#use(this.#transport, this.#driver ? false : this.#auto?.startsAsTry ?? false)
  }

  /** @param {Transport} transport @param {boolean} asTry */
  #use(transport, asTry) {
    this.#driver?.stop()
    this.#driver = null
    if (this.#phase !== 'running') return
    this.#transport = transport
    this.#status('connecting')
    this.#driver = transport === 'sse' ? new SSEDriver(this.#port, asTry) : new PollDriver(this.#port, transport === 'longpoll')
    this.#driver.start()
  }

  /** @param {State} state @param {Partial<Status>} [detail] */
  #status(state, detail = {}) {
    const s = /** @type {PlainStatus} */ ({ ...makeStatus(state, this.#transport, this.#auto?.reason ?? null, detail) })
    if (detail.error) s.error = plainError(detail.error)
    this.#sink.status(s)
  }

  /** @returns {Port} */
  #makePort() {
    const self = this
    return {
      options: this.#options,
      listenTypes: Object.freeze(['message', ...new Set([...COURSE_EVENTS, ...this.#f.types])]),
      accepts: () => true, // the server filters types
      coalesceMs: this.#f.coalesceMs,
      get position() { return formatCursor(self.#positions) },
      get etag() { return self.#etag && self.#etag.pos === formatCursor(self.#positions) ? self.#etag.tag : null },
      setETag: (tag, pos) => { if (tag) this.#etag = { tag, pos } },
      token: () => this.#token(),
      sseURL: (token) => this.#api.streamURL(this.#positions, token),
      requestPoll: async (req) => {
        const token = await this.#token()
        return this.#polls.count(this.#api.poll(req, this.#positions, token))
      },
      probeStream: (url, signal) => this.#api.probeStream(url, signal),
      ingest: (envs) => this.#ingest(envs),
      advance: (cursor) => {
        for (const [c, id] of parseCursor(cursor)) if (this.#positions.has(c)) advanceTo(this.#positions, c, id)
      },
      reset: (data) => this.#reset(data),
      report: () => {}, // a malformed frame: the members' own checks report what reaches them
      status: (state, detail) => this.#status(state, detail),
      isFatal: (err) => this.#api.isFatal(err),
      fail: (err) => { this.stop(); this.#sink.failed(plainError(err)) },
      sseOpened: () => this.#auto?.sseOpened(),
      sseWorked: () => this.#auto?.sseWorked(),
      sseFailed: (reason) => this.#auto?.sseFailed(reason) ?? false,
      pollAnswered: (ok) => this.#auto?.pollAnswered(ok),
      owed: (body) => {
        /** @type {Positions} */
        const target = new Map()
        for (const r of body.resets ?? []) target.set(String(r.courseId), String(r.lastEventId))
        for (const ev of body.events ?? []) if (ev) target.set(String(ev.courseId), String(ev.id))
        return target.size > 0 ? target : null
      },
      reached: (target) => reached(this.#positions, /** @type {Positions} */ (target)),
      renewable: this.#f.tokenFunction,
    }
  }

  /** Moves the cursor past each envelope of a course of the stream, and passes the new ones on. @param {any[]} envs */
  #ingest(envs) {
    const fresh = []
    for (const env of envs) {
      const c = env && typeof env === 'object' ? String(env.courseId) : ''
      if (!this.#positions.has(c)) continue
      if (advanceTo(this.#positions, c, String(env.id))) fresh.push(env)
    }
    if (fresh.length > 0) this.#sink.events(JSON.stringify(fresh))
  }

  /** @param {unknown} data */
  #reset(data) {
    const d = /** @type {any} */ (data)
    const c = String(d?.courseId ?? '')
    const id = String(d?.lastEventId ?? '')
    if (!this.#positions.has(c) || !EVENT_ID.test(id)) return
    this.#positions.set(c, id)
    this.#sink.reset(c, id)
  }
}

/** An error as plain data (an HTTPError's status and URL kept). @param {unknown} err @returns {PlainError} */
export function plainError(err) {
  const e = /** @type {any} */ (err)
  /** @type {PlainError} */
  const out = { name: String(e?.name ?? 'Error'), message: String(e?.message ?? e) }
  if (typeof e?.status === 'number') out.status = e.status
  if (typeof e?.url === 'string') out.url = e.url
  return out
}
