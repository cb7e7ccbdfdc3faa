// @ts-check
/**
 * connect()'s options: their defaults, and their checks, which throw a
 * TypeError before any request.
 * @module coursestream/options
 */
import { COURSE_EVENTS, EVENT_TYPE } from './envelope.js'
import { EVENT_ID } from './ids.js'

/**
 * @import { Envelope, ResetInfo } from './envelope.js'
 * @import { Status, Transport } from './status.js'
 * @typedef {{
 *   courseId: string, baseUrl?: string | URL, transport?: 'auto' | Transport, fallback?: 'poll' | 'longpoll',
 *   token?: string | null | (() => string | null | Promise<string | null>), withCredentials?: boolean,
 *   types?: string[], coalesce?: string | number, lastEventId?: string | number | null, persist?: boolean,
 *   pauseWhenHidden?: boolean, share?: boolean,
 *   onEvent?: (event: Envelope) => void, onReset?: (reset: ResetInfo) => void,
 *   onStatus?: (status: Status) => void, onError?: (error: unknown) => void,
 *   heartbeatMs?: number, pollIntervalMs?: number, maxPollIntervalMs?: number, longPollWait?: string,
 *   backoffBaseMs?: number, backoffMaxMs?: number, sseRetryMs?: number, rememberFallbackMs?: number,
 * }} ConnectOptions
 * @typedef {ConnectOptions & typeof DEFAULTS} Options the options with the defaults filled in
 * @typedef {{
 *   options: Options, base: URL, courseId: string, requested: 'auto' | Transport, fallbackTo: 'poll' | 'longpoll',
 *   types: string[], coalesce: string, coalesceMs: number, start: string | null,
 * }} Settings what connect() works from: the options checked and normalized
 */

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
const DURATION = /^\d+(\.\d+)?(ms|s)$/
const TRANSPORTS = ['auto', 'sse', 'poll', 'longpoll']

/**
 * Checks connect()'s options and fills in the defaults.
 * @param {ConnectOptions} options
 * @returns {Settings}
 */
export function parseOptions(options) {
  if (!options || typeof options !== 'object') throw new TypeError('connect: options are required')
  /** @type {Options} */
  const o = /** @type {any} */ ({ ...DEFAULTS })
  for (const [k, v] of Object.entries(options)) if (v !== undefined) /** @type {any} */ (o)[k] = v
  if (!COURSE_ID.test(String(o.courseId ?? ''))) {
    throw new TypeError(`connect: invalid courseId ${JSON.stringify(o.courseId)}: it must match ${COURSE_ID}`)
  }
  if (o.share !== undefined && typeof o.share !== 'boolean') throw new TypeError(`connect: share must be a boolean, got ${JSON.stringify(o.share)}`)
  const requested = requestedTransport(o.transport)
  const fallbackTo = fallbackTransport(o.fallback)
  const types = typesParam(o.types)
  const coalesce = coalesceParam(o.coalesce)
  const start = startID(o.lastEventId)
  const base = baseURL(o.baseUrl)
  return {
    options: o, base, courseId: String(o.courseId), requested, fallbackTo, types, coalesce, coalesceMs: durationMs(coalesce), start,
  }
}

/** @param {unknown} t @returns {'auto' | Transport} */
function requestedTransport(t) {
  const requested = t ?? 'auto'
  if (!TRANSPORTS.includes(/** @type {string} */ (requested))) {
    throw new TypeError(`connect: transport must be 'auto', 'sse', 'poll' or 'longpoll', got ${JSON.stringify(requested)}`)
  }
  if (requested === 'sse' && typeof EventSource !== 'function') {
    throw new TypeError("connect: transport 'sse' needs EventSource, which this environment lacks: use 'auto' or 'poll'")
  }
  return /** @type {'auto' | Transport} */ (requested)
}

/** @param {unknown} f @returns {'poll' | 'longpoll'} */
function fallbackTransport(f) {
  const to = f ?? 'poll'
  if (to !== 'poll' && to !== 'longpoll') {
    throw new TypeError(`connect: fallback must be 'poll' or 'longpoll', got ${JSON.stringify(to)}`)
  }
  return to
}

/** @param {string[] | undefined} list @returns {string[]} */
function typesParam(list) {
  const types = [...new Set(list ?? [])]
  for (const t of types) {
    if (typeof t !== 'string' || !EVENT_TYPE.test(t) || t === 'reset') {
      throw new TypeError(`connect: invalid type ${JSON.stringify(t)} in types`)
    }
  }
  return types
}

/** The ?coalesce= value ('' for none). @param {string | number | undefined} c */
function coalesceParam(c) {
  if (c == null || c === '' || c === 0) return ''
  const coalesce = typeof c === 'number' ? `${Math.round(c)}ms` : String(c)
  const ms = DURATION.test(coalesce) ? durationMs(coalesce) : NaN
  if (!(ms >= 0 && ms <= 10_000)) {
    throw new TypeError(`connect: coalesce must be a duration up to 10s such as '500ms' (or a number of ms), got ${JSON.stringify(c)}`)
  }
  return coalesce
}

/** '500ms' or '1.5s' in ms; 0 for ''. @param {string} d */
function durationMs(d) {
  return d ? parseFloat(d) * (d.endsWith('ms') ? 1 : 1000) : 0
}

/** @param {string | number | null | undefined} id @returns {string | null} */
function startID(id) {
  const start = id == null || id === '' ? null : String(id)
  if (start !== null && !EVENT_ID.test(start)) {
    throw new TypeError(`connect: lastEventId must be a decimal event id, got ${JSON.stringify(id)}`)
  }
  return start
}

/**
 * The service's base URL: baseUrl against the page, else the page's
 * origin; a path prefix is kept, query and hash are not.
 * @param {string | URL | undefined} baseUrl
 */
function baseURL(baseUrl) {
  const loc = /** @type {any} */ (globalThis).location
  const origin = loc?.origin && loc.origin !== 'null' ? loc.origin : undefined // 'null': an opaque origin
  if (baseUrl == null && !origin) throw new TypeError('connect: baseUrl is required outside a page')
  const base = new URL(baseUrl ?? /** @type {string} */ (origin), origin ?? loc?.href)
  if (!base.pathname.endsWith('/')) base.pathname += '/'
  base.search = ''
  base.hash = ''
  return base
}
