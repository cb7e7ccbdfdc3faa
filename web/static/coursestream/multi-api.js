// @ts-check
/**
 * The multi-course endpoints as a shared stream uses them:
 * GET /v1/events?courses=&lastEventId=<cursor>&dispatch=message and
 * GET /v1/poll?courses=&cursor=. Poll answers are given in the shape the
 * drivers read (lastEventId holds the cursor; resets a list).
 * @module coursestream/multi-api
 */
import { retryAfterMs } from './backoff.js'
import { isFatalRefusal, refusalText } from './errors.js'
import { probeStream } from './api.js'
import { formatCursor, parseCursor } from './cursor.js'

/**
 * @import { Positions } from './cursor.js'
 * @import { PollRequest, PollResponse } from './api.js'
 * @import { FeedSettings } from './share-key.js'
 */

/** The endpoints of one shared stream. */
export class MultiAPI {
  #f
  #base

  /** @param {FeedSettings} f */
  constructor(f) {
    this.#f = f
    this.#base = new URL(f.base)
  }

  /** The EventSource URL for positions. @param {Positions} positions @param {string | null} token */
  streamURL(positions, token) {
    const f = this.#f
    const one = single(positions)
    if (one) {
      return this.#url(`v1/courses/${encodeURIComponent(one[0])}/events`, {
        lastEventId: one[1], dispatch: 'message', types: f.types.join(','), coalesce: f.coalesce, token,
      })
    }
    return this.#url('v1/events', {
      courses: [...positions.keys()].join(','), lastEventId: formatCursor(positions), dispatch: 'message',
      types: f.types.join(','), coalesce: f.coalesce, token,
    })
  }

  /**
   * One multi-course poll from req.after (a cursor) for the courses of
   * positions. Resolves with 200, 304 or an error status; rejects on
   * network errors and malformed answers.
   * @param {PollRequest} req
   * @param {Positions} positions
   * @param {string | null} token
   * @returns {Promise<PollResponse>}
   */
  async poll(req, positions, token) {
    const one = single(positions)
    const types = this.#f.types.join(',')
    const url = one
      ? this.#url(`v1/courses/${encodeURIComponent(one[0])}/poll`, { after: parseCursor(req.after).get(one[0]) ?? '0', types, wait: req.wait })
      : this.#url('v1/poll', { courses: [...positions.keys()].join(','), cursor: req.after, types, wait: req.wait })
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
      const b = oneCourse(await res.json(), one)
      if (!b || typeof b.cursor !== 'string' || !Array.isArray(b.events ?? []) || !Array.isArray(b.resets ?? [])) {
        throw new Error(`coursestream: malformed poll answer from ${url}`)
      }
      out.body = { lastEventId: b.cursor, events: b.events ?? [], more: !!b.more, reset: false, resets: b.resets ?? [] }
    } else if (res.status !== 304) {
      out.error = await refusalText(res)
    }
    return out
  }

  /** Why the server refused the stream at url (see api.js probeStream). @param {string} url @param {AbortSignal} signal */
  probeStream(url, signal) {
    return probeStream(url, signal, this.#credentials(), (err) => this.isFatal(err))
  }

  /** Whether retrying cannot help. @param {unknown} err */
  isFatal(err) { return isFatalRefusal(err, !!this.#f.tokenFunction) }


  /** @returns {RequestCredentials} */
  #credentials() {
    return this.#f.withCredentials ? 'include' : 'same-origin'
  }

  /** @param {string} path @param {Record<string, string | null | undefined>} params */
  #url(path, params) {
    const u = new URL(path, this.#base)
    for (const [k, v] of Object.entries(params)) if (v != null && v !== '') u.searchParams.set(k, v)
    return u.toString()
  }
}

/**
 * The one course of positions, as [course, position]; null for several.
 * One course rides the course's own endpoints (any server has them, and
 * their frames are smaller).
 * @param {import('./cursor.js').Positions} positions
 * @returns {[string, string] | null}
 */
function single(positions) {
  return positions.size === 1 ? /** @type {[string, string]} */ ([...positions][0]) : null
}

/** A one-course poll answer in the multi-course shape. @param {any} b @param {[string, string] | null} one */
function oneCourse(b, one) {
  if (!one || !b || typeof b !== 'object') return b
  const last = String(b.lastEventId)
  return { cursor: `${one[0]}:${last}`, events: b.events ?? [], more: !!b.more, resets: b.reset ? [{ courseId: one[0], lastEventId: last }] : [] }
}
