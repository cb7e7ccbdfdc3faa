// @ts-check
/**
 * The connections of a page that may share a stream (same base URL,
 * credentials, types, coalesce and transport: see share-key.js) join one
 * group; the group rides one stream, held by the SharedWorker where the
 * browser has one, else by the tab that leads (Web Locks and
 * BroadcastChannel), else by this page alone. Each member gets its own
 * course's events; it drops those at or below its position itself, so a
 * stream that re-opens from further back repeats nothing to it.
 * @module coursestream/share
 */
import { credentialOf, feedSettings, shareKey } from './share-key.js'
import { LeaderBackend, leaderSupported } from './share-leader.js'
import { PageBackend } from './share-backend.js'
import { WorkerBackend, workerSupported } from './share-worker.js'
import { minID } from './cursor.js'

/**
 * @import { Settings } from './options.js'
 * @import { FeedSettings } from './share-key.js'
 * @import { PlainError, PlainStatus } from './feed.js'
 * @import { Backend, BackendSink, Holder } from './share-backend.js'
 * @import { StreamStats } from './stream-stats.js'
 * @typedef {{
 *   readonly courseId: string, readonly position: string | null,
 *   events: (envs: any[]) => void, reset: (courseId: string, lastEventId: string) => void,
 *   status: (status: PlainStatus, holder: Holder) => void, stats: (stats: StreamStats) => void,
 *   failed: (error: PlainError) => void,
 * }} Member one connection, as its group sees it
 * @typedef {{changed: () => void, leave: () => void}} Membership
 *   changed: the member's position became known; leave: it closed
 */

/** @type {Map<string, Group>} */
const groups = new Map()
/** @type {WeakMap<Function, number>} */
const functionIDs = new WeakMap()
let nextFunction = 0

/**
 * Joins the page's group for settings. A member whose position is still
 * null counts once it calls changed.
 * @param {Settings} s
 * @param {Member} member
 * @returns {Membership}
 */
export function join(s, member) {
  const key = pageKey(s)
  let g = groups.get(key)
  if (!g) {
    g = new Group(s, () => groups.delete(key))
    groups.set(key, g)
  }
  return g.add(member)
}

/** The key within the page: a token function counts by identity. @param {Settings} s */
function pageKey(s) {
  const t = s.options.token
  let cred = typeof t === 'string' ? `t:${t}` : ''
  if (typeof t === 'function') {
    if (!functionIDs.has(t)) functionIDs.set(t, nextFunction++)
    cred = `f:${functionIDs.get(t)}`
  }
  return shareKey(feedSettings(s), cred)
}

/** A holder that dies again within this long of the last one is not started again: the next kind runs. */
const LOST_AGAIN_MS = 10_000

/** The connections of this page that share one stream. */
class Group {
  /** @type {Set<Member>} */
  #members = new Set()
  #f
  #tokenOption
  #onEmpty
  /** @type {Backend | null} */
  #backend = null
  #starting = false
  #pushQueued = false
  /** @type {{status: PlainStatus, holder: Holder} | null} */
  #last = null
  /** @type {StreamStats | null} */
  #lastStats = null
  #lostAt = -Infinity // when the backend's holder last died

  /** @param {Settings} s @param {() => void} onEmpty */
  constructor(s, onEmpty) {
    this.#f = feedSettings(s)
    this.#tokenOption = s.options.token
    this.#onEmpty = onEmpty
  }

  /** @param {Member} m @returns {Membership} */
  add(m) {
    this.#members.add(m)
    if (this.#last) m.status(this.#last.status, this.#last.holder)
    if (this.#lastStats) m.stats(this.#lastStats)
    this.#push()
    return {
      changed: () => this.#push(),
      leave: () => {
        if (!this.#members.delete(m)) return
        if (this.#members.size === 0) {
          this.#backend?.close()
          this.#backend = null
          this.#onEmpty()
        } else {
          this.#push()
        }
      },
    }
  }

  /** The token to send now. @returns {Promise<string | null>} */
  async #token() {
    const t = this.#tokenOption
    const v = typeof t === 'function' ? await t() : t
    return v == null || v === '' ? null : String(v)
  }

  /** Tells the backend the page's courses, once per task (a burst of connect()s is one change). */
  #push() {
    if (this.#pushQueued) return
    this.#pushQueued = true
    queueMicrotask(() => {
      this.#pushQueued = false
      if (this.#members.size === 0) return
      if (!this.#backend) { this.#start(); return }
      this.#backend.set(this.#courses())
    })
  }

  /** Every course of a member with a known position, at the lowest of them. */
  #courses() {
    /** @type {Record<string, string>} */
    const out = {}
    for (const m of this.#members) {
      const p = m.position
      if (p === null) continue
      out[m.courseId] = out[m.courseId] === undefined ? p : minID(out[m.courseId], p)
    }
    return out
  }

  /** Picks where the stream runs: the group's name across tabs needs the token's identity. */
  async #start() {
    if (this.#starting) return
    this.#starting = true
    let token = null
    try { token = await this.#token() } catch { /* the stream asks again, and reports */ }
    const name = shareKey(this.#f, credentialOf(token))
    this.#starting = false
    if (this.#members.size === 0 || this.#backend) return
    this.#backend = this.#backendFor(name, workerSupported() ? 'worker' : leaderSupported() ? 'leader' : 'page')
    this.#backend.set(this.#courses())
  }

  /**
   * @param {string} name @param {'worker' | 'leader' | 'page'} kind
   * @returns {Backend}
   */
  #backendFor(name, kind) {
    const next = kind === 'worker' ? (leaderSupported() ? 'leader' : 'page') : 'page'
    /** @type {BackendSink} */
    const sink = {
      events: (json) => this.#events(json),
      reset: (c, id) => { for (const m of this.#members) if (m.courseId === c) m.reset(c, id) },
      status: (status, holder) => {
        this.#last = { status, holder }
        for (const m of this.#members) m.status(status, holder)
      },
      stats: (stats) => {
        this.#lastStats = stats
        for (const m of this.#members) m.stats(stats)
      },
      failed: (error) => { for (const m of [...this.#members]) m.failed(error) },
      token: () => this.#token(),
      positions: () => this.#courses(),
      unavailable: () => this.#replace(name, next), // this kind cannot run here: the next one
      lost: () => { // the SharedWorker died: a new one, unless the last one died moments ago too
        const now = Date.now()
        const again = now - this.#lostAt < LOST_AGAIN_MS
        this.#lostAt = now
        this.#replace(name, again ? next : kind)
      },
    }
    if (kind === 'worker') return new WorkerBackend(name, this.#f, sink)
    if (kind === 'leader') return new LeaderBackend(name, this.#f, sink)
    return new PageBackend(this.#f, sink)
  }

  /**
   * Runs the group's stream on a new backend of kind, from the members'
   * positions of now. @param {string} name @param {'worker' | 'leader' | 'page'} kind
   */
  #replace(name, kind) {
    if (this.#members.size === 0) return
    this.#backend = this.#backendFor(name, kind)
    this.#backend.set(this.#courses())
  }

  /** @param {string} json */
  #events(json) {
    let envs
    try { envs = JSON.parse(json) } catch { return }
    if (!Array.isArray(envs)) return
    /** @type {Map<string, any[]>} */
    const byCourse = new Map()
    for (const env of envs) {
      const c = String(env?.courseId)
      if (!byCourse.has(c)) byCourse.set(c, [])
      byCourse.get(c)?.push(env)
    }
    for (const m of [...this.#members]) {
      const mine = byCourse.get(m.courseId)
      if (mine) m.events(mine)
    }
  }
}

/** Whether a connection shares: share !== false, and an environment with a page (or worker) to share in. @param {Settings} s */
export function shares(s) {
  return /** @type {any} */ (s.options).share !== false
}

export { feedSettings }
/** @typedef {FeedSettings} _FeedSettings */
