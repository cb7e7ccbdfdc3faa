// @ts-check
/**
 * Tabs of one origin sharing a stream through a SharedWorker
 * (shared-worker.js beside this file): the worker runs the stream, its
 * timers are never throttled as a hidden tab's are, and no tab has to hand
 * it over when it closes. This is the page's side: it tells the worker its
 * courses, answers its token requests, and gets the events. It holds a
 * life lock (tab-life.js) while it is joined, so that the worker notices
 * when the tab dies without saying goodbye and drops its courses.
 * @module coursestream/share-worker
 */
import { holdLife } from './tab-life.js'

/**
 * @import { FeedSettings } from './share-key.js'
 * @import { Backend, BackendSink } from './share-backend.js'
 * @import { Life } from './tab-life.js'
 * @import { StreamStats } from './stream-stats.js'
 * @typedef {{op: 'join', group: string, settings: FeedSettings, courses: Record<string, string>, token: string | null}
 *   | {op: 'life', group: string, life: string}
 *   | {op: 'leave', group: string} | {op: 'token-reply', id: number, token: string | null}} ToWorker
 * @typedef {{op: 'events', group: string, json: string} | {op: 'reset', group: string, courseId: string, lastEventId: string}
 *   | {op: 'status', group: string, status: import('./feed.js').PlainStatus} | {op: 'stats', group: string, stats: StreamStats}
 *   | {op: 'failed', group: string, error: import('./feed.js').PlainError} | {op: 'token', id: number}} FromWorker
 */

/** The worker script, served beside this module. */
const WORKER_URL = new URL('./shared-worker.js', import.meta.url)

/** Whether this browser has SharedWorker (and module workers in it). */
export function workerSupported() {
  return typeof (/** @type {any} */ (globalThis).SharedWorker) === 'function'
}

/** One page's side of a stream held by the SharedWorker. @implements {Backend} */
export class WorkerBackend {
  #group
  #f
  #sink
  /** @type {MessagePort | null} */
  #port = null
  /** @type {Record<string, string>} */
  #courses = {}
  #heard = false // the worker has answered: it runs
  #closed = false
  #shown = true // false between pagehide and pageshow (the back/forward cache): not joined
  /** @type {Promise<Life | null> | null} the life lock held (or being taken) while joined */
  #life = null
  /** @type {string | null} the held life lock's name, until the worker is told it */
  #lifeName = null
  #joined = false // a join was posted since the last leave
  #unwatch

  /** @param {string} group the group's key @param {FeedSettings} f @param {BackendSink} sink */
  constructor(group, f, sink) {
    this.#group = group
    this.#f = f
    this.#sink = sink
    const g = /** @type {any} */ (globalThis)
    const onHide = () => { this.#shown = false; this.#leave() }
    const onShow = (/** @type {PageTransitionEvent} */ e) => { if (e.persisted) { this.#shown = true; this.#join() } }
    g.addEventListener?.('pagehide', onHide)
    g.addEventListener?.('pageshow', onShow)
    this.#unwatch = () => { g.removeEventListener?.('pagehide', onHide); g.removeEventListener?.('pageshow', onShow) }
    let worker
    try {
      worker = new SharedWorker(WORKER_URL, { type: 'module', name: 'coursestream' })
    } catch {
      queueMicrotask(() => this.#unavailable()) // refused (a private mode, a sandboxed frame)
      return
    }
    worker.onerror = () => { if (!this.#heard) this.#unavailable() } // the script did not load or run
    this.#port = worker.port
    this.#port.onmessage = (e) => this.#receive(/** @type {FromWorker} */ (e.data))
    this.#port.start()
  }

  /** @param {Record<string, string>} courses */
  set(courses) {
    this.#courses = courses
    this.#join()
  }

  close() {
    if (this.#closed) return
    this.#leave()
    this.#closed = true
    this.#unwatch()
    this.#port?.close()
    this.#port = null
  }

  /**
   * Tells the worker this tab's courses at once, and takes the life lock
   * beside: its name follows in a 'life' message once it is held, so that
   * the worker's request for it waits behind this tab, and the join never
   * waits for a lock (a join held back while the page's connections came
   * and went left a stream that never opened).
   */
  async #join() {
    if (!this.#life) {
      const life = this.#life = holdLife()
      life.then((held) => {
        if (!held || life !== this.#life) return
        this.#lifeName = held.name
        this.#tellLife()
      })
    }
    const token = this.#f.tokenFunction ? null : await this.#sink.token() // a fixed token travels with the join
    if (this.#closed || !this.#shown) return // left meanwhile
    this.#post({ op: 'join', group: this.#group, settings: this.#f, courses: this.#courses, token })
    this.#joined = true
    this.#tellLife()
  }

  /** Names the life lock to the worker, once: after a join (the worker watches members only), once it is held. */
  #tellLife() {
    if (!this.#joined || !this.#lifeName || this.#closed || !this.#shown) return
    this.#post({ op: 'life', group: this.#group, life: this.#lifeName })
    this.#lifeName = null
  }

  /** Says goodbye, and lets the life lock go (a held lock would keep the page out of the back/forward cache). */
  #leave() {
    this.#post({ op: 'leave', group: this.#group })
    const life = this.#life
    this.#life = null
    this.#lifeName = null
    this.#joined = false
    life?.then((l) => l?.release())
  }

  #unavailable() {
    if (this.#closed) return
    this.close()
    this.#sink.unavailable()
  }

  /** @param {FromWorker} m */
  #receive(m) {
    if (this.#closed || !m || typeof m !== 'object') return
    this.#heard = true
    if (m.op === 'token') {
      this.#sink.token().then((token) => token, () => null).then((token) => this.#post({ op: 'token-reply', id: m.id, token }))
      return
    }
    if (m.group !== this.#group) return
    switch (m.op) {
      case 'events': this.#sink.events(m.json); break
      case 'reset': this.#sink.reset(m.courseId, m.lastEventId); break
      case 'status': this.#sink.status(m.status, 'worker'); break
      case 'stats': this.#sink.stats(m.stats); break
      case 'failed': this.#sink.failed(m.error); break
    }
  }

  /** @param {ToWorker} m */
  #post(m) {
    if (!this.#closed) this.#port?.postMessage(m)
  }
}
