// @ts-check
/**
 * Tabs of one origin sharing a stream without a SharedWorker: the tab
 * that holds a Web Lock leads (runs the stream) and relays it over a
 * BroadcastChannel; the others tell it their courses and get its events.
 * The lock, not a timer, elects: two leaders cannot exist, however slow
 * a tab is. When the leader goes (closed, hidden into the back/forward
 * cache or frozen: the lock is released on pagehide and on freeze), the next tab waiting on the
 * lock leads, asks every tab for its courses and positions, and resumes
 * from the lowest; each tab drops what it already has. A following tab
 * that dies without saying goodbye is noticed by its life lock
 * (tab-life.js): the leader drops its courses.
 * @module coursestream/share-leader
 */
import { Feed } from './feed.js'
import { TokenCache } from './token-cache.js'
import { holdLife, watchLife } from './tab-life.js'
import { watchPause } from './page.js'

/**
 * @import { FeedSettings } from './share-key.js'
 * @import { Backend, BackendSink } from './share-backend.js'
 * @import { Life } from './tab-life.js'
 * @import { StreamStats } from './stream-stats.js'
 * @typedef {'asking' | 'leading' | 'following' | 'suspended' | 'closed'} Phase
 *   asking: waiting on the lock (following meanwhile); leading: holds it and runs the stream;
 *   suspended: the page is in the back/forward cache or frozen (no lock, no channel); closed: for good
 * @typedef {{op: 'set', tab: string, courses: Record<string, string>, life: string | null} | {op: 'leave', tab: string}
 *   | {op: 'who'} | {op: 'events', json: string} | {op: 'reset', courseId: string, lastEventId: string}
 *   | {op: 'status', status: import('./feed.js').PlainStatus, tab: string} | {op: 'failed', error: import('./feed.js').PlainError}
 *   | {op: 'stats', stats: StreamStats}} Message
 */

/** Whether this browser has what the leader needs. */
export function leaderSupported() {
  const g = /** @type {any} */ (globalThis)
  return typeof g.BroadcastChannel === 'function' && typeof g.navigator?.locks?.request === 'function'
}

/** One tab's side of a stream shared by Web Lock and BroadcastChannel. @implements {Backend} */
export class LeaderBackend {
  /** @type {Phase} */
  #phase = 'asking'
  #tab = Math.random().toString(36).slice(2)
  #name
  #f
  #sink
  /** @type {Record<string, string>} */
  #courses = {}
  /** @type {BroadcastChannel | null} */
  #bc = null
  /** @type {AbortController | null} */
  #lockAbort = null
  /** @type {(() => void) | null} */
  #release = null
  /** @type {Feed | null} */
  #feed = null
  /** @type {import('./feed.js').PlainStatus | null} the stream's last status, told to tabs that join */
  #status = null
  /** @type {StreamStats | null} the stream's last poll counts, told to tabs that join */
  #stats = null
  /** @type {Promise<Life | null> | null} this tab's life lock, held (or being taken) while it is joined */
  #life = null
  /** @type {Map<string, {name: string, stop: () => void}>} leading: the life lock of each following tab */
  #lives = new Map()
  #unwatch

  /** @param {string} name the group's key @param {FeedSettings} f @param {BackendSink} sink */
  constructor(name, f, sink) {
    this.#name = `coursestream:${name}`
    this.#f = f
    this.#sink = sink
    // Away (hidden into the back/forward cache, or frozen) the tab lets the
    // lock go and leaves; back, it joins again at its positions of now.
    this.#unwatch = watchPause(() => this.#suspend(), () => {
      if (this.#phase !== 'suspended') return
      this.#courses = this.#sink.positions()
      this.#resume()
    })
    this.#resume()
  }

  /** @param {Record<string, string>} courses */
  set(courses) {
    this.#courses = courses
    if (this.#phase === 'leading') this.#feed?.set(this.#tab, courses)
    else if (this.#phase === 'asking') this.#postSet()
  }

  close() {
    if (this.#phase === 'closed') return
    this.#suspend()
    this.#phase = 'closed'
    this.#unwatch()
  }

  /** Joins: opens the channel, says where this tab is, queues on the lock. */
  #resume() {
    if (this.#phase !== 'asking' && this.#phase !== 'suspended') return
    this.#phase = 'asking'
    const bc = new BroadcastChannel(this.#name)
    bc.onmessage = (e) => this.#receive(/** @type {Message} */ (e.data))
    this.#bc = bc
    this.#life = holdLife()
    this.#postSet()
    const ac = new AbortController()
    this.#lockAbort = ac
    navigator.locks.request(this.#name, { signal: ac.signal }, () => new Promise((resolve) => {
      if (ac.signal.aborted || this.#phase !== 'asking') { resolve(undefined); return }
      this.#release = () => resolve(undefined)
      this.#lead()
    })).catch((err) => {
      if (ac.signal.aborted) return // given up on purpose (pagehide, close)
      // A browser or mode that refuses locks: this page runs its own stream.
      this.close()
      void err
      this.#sink.unavailable()
    })
  }

  /** Leaves: releases the lock (so that the back/forward cache may keep the page), closes the channel. */
  #suspend() {
    if (this.#phase === 'closed' || this.#phase === 'suspended') return
    this.#feed?.stop()
    this.#feed = null
    this.#post({ op: 'leave', tab: this.#tab })
    this.#lockAbort?.abort()
    this.#lockAbort = null
    this.#release?.()
    this.#release = null
    this.#bc?.close()
    this.#bc = null
    const life = this.#life
    this.#life = null
    life?.then((l) => l?.release())
    for (const w of this.#lives.values()) w.stop()
    this.#lives.clear()
    this.#phase = 'suspended'
  }

  /**
   * Tells the leader this tab's courses, with the name of its life lock,
   * once that is held (so that the leader's request for it waits behind
   * this tab). Sets are posted in order, each with the courses of then.
   */
  #postSet() {
    const life = this.#life
    life?.then((l) => {
      if (life === this.#life) this.#post({ op: 'set', tab: this.#tab, courses: this.#courses, life: l?.name ?? null })
    })
  }

  /**
   * Leading: watches a following tab's life lock; when the tab lets it go
   * (it left, or died) its courses are dropped.
   * @param {string} tab @param {string | null | undefined} life
   */
  #watch(tab, life) {
    const had = this.#lives.get(tab)
    if (had?.name === life) return
    had?.stop()
    this.#lives.delete(tab)
    if (typeof life !== 'string') return
    const stop = watchLife(life, () => {
      if (this.#lives.get(tab)?.name !== life) return
      this.#lives.delete(tab)
      this.#feed?.remove(tab)
    })
    this.#lives.set(tab, { name: life, stop })
  }

  #lead() {
    this.#phase = 'leading'
    // The leader's own token: every tab of the group has the same credentials (the key says so).
    const tokens = new TokenCache(() => this.#sink.token())
    this.#feed = new Feed(this.#f, () => tokens.get(), {
      events: (json) => { this.#sink.events(json); this.#post({ op: 'events', json }) },
      reset: (courseId, lastEventId) => { this.#sink.reset(courseId, lastEventId); this.#post({ op: 'reset', courseId, lastEventId }) },
      status: (status) => { this.#status = status; this.#sink.status(status, 'this-tab'); this.#post({ op: 'status', status, tab: this.#tab }) },
      stats: (stats) => { this.#stats = stats; this.#sink.stats(stats); this.#post({ op: 'stats', stats }) },
      failed: (error) => { this.#sink.failed(error); this.#post({ op: 'failed', error }) },
    })
    this.#feed.set(this.#tab, this.#courses)
    this.#post({ op: 'who' })
  }

  /** @param {Message} m */
  #receive(m) {
    if (this.#phase === 'closed' || this.#phase === 'suspended' || !m || typeof m !== 'object') return
    const feed = this.#phase === 'leading' ? this.#feed : null
    switch (m.op) {
      case 'set':
        if (!feed) break
        feed.set(m.tab, m.courses)
        this.#watch(m.tab, m.life)
        // A tab that joins gets the stream's status now, not at its next change.
        if (this.#status) this.#post({ op: 'status', status: this.#status, tab: this.#tab })
        if (this.#stats) this.#post({ op: 'stats', stats: this.#stats })
        break
      case 'leave':
        if (!feed) break
        feed.remove(m.tab)
        this.#lives.get(m.tab)?.stop()
        this.#lives.delete(m.tab)
        break
      case 'who': this.#postSet(); break
      case 'events': if (!feed) this.#sink.events(m.json); break
      case 'reset': if (!feed) this.#sink.reset(m.courseId, m.lastEventId); break
      case 'status': if (!feed) this.#sink.status(m.status, 'other-tab'); break
      case 'stats': if (!feed) this.#sink.stats(m.stats); break
      case 'failed': if (!feed) this.#sink.failed(m.error); break
    }
  }

  /** @param {Message} m */
  #post(m) {
    try {
      this.#bc?.postMessage(m)
    } catch {
      // a closed channel: the tab is leaving
    }
  }
}
