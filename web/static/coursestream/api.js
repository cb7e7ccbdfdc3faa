// @ts-check
/**
 * The service's HTTP API as one subscription uses it: the stream's URL,
 * poll requests, the probe of a refused stream, the token.
 * @module coursestream/api
 */
import { retryAfterMs } from './backoff.js'
import { HTTPError, isFatalRefusal, refusalText } from './errors.js'
import { EVENT_ID } from './ids.js'

/**
 * @import { Settings } from './options.js'
 * @typedef {{after: string, wait?: string, signal: AbortSignal, etag: string | null, filtered?: boolean}} PollRequest
 * @typedef {{status: number, body: any, etag: string | null, retryAfterMs: number, error?: string, url: string}} PollResponse
 * @typedef {'open' | 'fatal' | 'auth' | 'transient' | 'steer' | 'other'} RefusalKind
 * @typedef {{kind: RefusalKind, retryAfterMs: number, error?: HTTPError}} Refusal
 */

/** A token as sent: null when there is none. @param {unknown} v */
function tokenValue(v) {
  return v == null || v === '' ? null : String(v)
}

/** One course's endpoints, with the subscription's credentials and filters. */
export class CourseAPI {
  #s
  #path

  /** @param {Settings} settings */
  constructor(settings) {
    this.#s = settings
    this.#path = `v1/courses/${encodeURIComponent(settings.courseId)}`
  }

  /** The token to send now (a token function is asked each time). @returns {Promise<string | null>} */
  async token() {
    const t = this.#s.options.token
    return tokenValue(typeof t === 'function' ? await t() : t)
  }

  /** The EventSource URL that resumes after position. @param {string | null} position @param {string | null} token */
  streamURL(position, token) {
    const s = this.#s
    return this.#url(`${this.#path}/events`, {
      lastEventId: position, dispatch: 'message', types: s.types.join(','), coalesce: s.coalesce, token,
    })
  }

  /**
   * One poll request. Resolves with 200, 304 or an error status; rejects on
   * network errors and malformed answers.
   * @param {PollRequest} req
   * @returns {Promise<PollResponse>}
   */
  async poll(req) {
    // A fixed token without an await: the request leaves in the caller's task.
    const fixed = this.#s.options.token
    const token = typeof fixed === 'function' ? await this.token() : tokenValue(fixed)
    const url = this.#url(`${this.#path}/poll`, {
      after: req.after, types: req.filtered === false ? '' : this.#s.types.join(','), wait: req.wait,
    })
    /** @type {Record<string, string>} */
    const headers = { Accept: 'application/json' }
    if (token) headers.Authorization = `Bearer ${token}`
    if (req.etag) headers['If-None-Match'] = req.etag
    const res = await fetch(url, { headers, cache: 'no-store', signal: req.signal, credentials: this.#credentials() })
    /** @type {PollResponse} */
    const out = {
      status: res.status, body: null, etag: res.headers.get('ETag'), url, retryAfterMs: retryAfterMs(res.headers.get('Retry-After')),
    }
    if (res.status === 200) {
      out.body = await res.json()
      if (!out.body || !EVENT_ID.test(String(out.body.lastEventId)) || !Array.isArray(out.body.events ?? [])) {
        throw new Error(`coursestream: malformed poll answer from ${url}`)
      }
    } else if (res.status !== 304) {
      out.error = await refusalText(res)
    }
    return out
  }

  /** Why the server refused the EventSource at url (see probeStream). @param {string} url @param {AbortSignal} signal */
  probeStream(url, signal) {
    return probeStream(url, signal, this.#credentials(), (err) => this.isFatal(err))
  }

  /** Whether retrying cannot help: the request or the credentials are wrong. @param {unknown} err */
  isFatal(err) { return isFatalRefusal(err, typeof this.#s.options.token === 'function') }


  /** @returns {RequestCredentials} */
  #credentials() {
    return this.#s.options.withCredentials ? 'include' : 'same-origin'
  }

  /** @param {string} path relative to the base URL @param {Record<string, string | null | undefined>} params */
  #url(path, params) {
    const u = new URL(path, this.#s.base)
    for (const [k, v] of Object.entries(params)) if (v != null && v !== '') u.searchParams.set(k, v)
    return u.toString()
  }
}

/**
 * Why the server refused an EventSource, which hides the status: one
 * fetch of the same URL, given up as soon as its headers are in (a 200)
 * or its small error body is read. A 503 that names a fallback steers
 * to polling; one without (a draining or overloaded instance) is
 * transient. Rejects on network errors.
 * @param {string} url the EventSource's URL
 * @param {AbortSignal} signal
 * @param {RequestCredentials} credentials
 * @param {(err: HTTPError) => boolean} isFatal
 * @returns {Promise<Refusal>}
 */
export async function probeStream(url, signal, credentials, isFatal) {
  const res = await fetch(url, { headers: { Accept: 'text/event-stream' }, cache: 'no-store', signal, credentials })
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
  return { kind: refusalKind(error, body, isFatal), retryAfterMs: wait, error }
}

/** @param {HTTPError} error @param {any} body @param {(err: HTTPError) => boolean} isFatal @returns {RefusalKind} */
function refusalKind(error, body, isFatal) {
  if (isFatal(error)) return 'fatal'
  if (error.status === 401) return 'auth' // the token function may give a fresh one
  if (typeof body?.fallback === 'string' && body.fallback !== '') return 'steer'
  return error.status === 503 ? 'transient' : 'other'
}
