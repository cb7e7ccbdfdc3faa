// @ts-check
/**
 * Tabs of one origin sharing a stream through a SharedWorker
 * (shared-worker.js beside this file): the worker runs the stream, its
 * timers are never throttled as a hidden tab's are, and no tab has to hand
 * it over when it closes. This is the page's side: it tells the worker its
 * courses, answers its token requests, and gets the events. It names the
 * tab's life lock (tab-life.js) to the worker, so that the worker notices
 * a tab that dies without saying goodbye and drops its courses. It leaves
 * while the page is away (pagehide, freeze) and joins again when it is
 * back, so that a frozen tab that is then discarded leaves no course on
 * the stream.
 * @module coursestream/share-worker
 */
import { watchPause } from './page.js'
import { tabLife, watchLife } from './tab-life.js'

/**
 * @import { FeedSettings } from './share-key.js'
 * @import { Backend, BackendSink } from './share-backend.js'
 * @import { StreamStats } from './stream-stats.js'
 * @typedef {{op: 'join', group: string, settings: FeedSettings, courses: Record<string, string>, token: string | null}
 *   | {op: 'life', group: string, life: string} | {op: 'leave', group: string} | {op: 'token-reply', id: number, token: string | null}} ToWorker
 * @typedef {{op: 'events', group: string, json: string} | {op: 'reset', group: string, courseId: string, lastEventId: string}
 *   | {op: 'status', group: string, status: import('./feed.js').PlainStatus} | {op: 'stats', group: string, stats: StreamStats}
 *   | {op: 'failed', group: string, error: import('./feed.js').PlainError} | {op: 'token', id: number}
 *   | {op: 'worker-life', life: string}} FromWorker
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
  /** @type {string | null} the name of the tab's life lock told to the worker since the last join */
  #told = null
  /** @type {string | null} the name of the worker's life lock */
  #workerLife = null
  /** @type {(() => void) | null} stops watching the worker's life lock */
  #unwatchWorker = null
  #unwatch

  /** @param {string} group the group's key @param {FeedSettings} f @param {BackendSink} sink */
  constructor(group, f, sink) {
    this.#group = group
    this.#f = f
    this.#sink = sink
    // Away (hidden into the back/forward cache, or frozen) the tab leaves;
    // back, it joins again at its connections' positions of now.
    this.#unwatch = watchPause(() => this.#leave(), () => {
      this.#courses = this.#sink.positions()
      this.#join()
    })
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
   * Tells the worker this tab's courses, then the name of the tab's life
   * lock once it is held (the worker watches members only, and its request
   * for the lock must wait behind this tab), so that the worker notices
   * the tab dying without a goodbye. The join never waits for the lock.
   */
  async #join() {
    const token = this.#f.tokenFunction ? null : await this.#sink.token() // a fixed token travels with the join
    this.#post({ op: 'join', group: this.#group, settings: this.#f, courses: this.#courses, token })
    this.#watchWorker()
    const life = await tabLife()
    if (!life || life.name === this.#told || this.#closed) return
    this.#told = life.name
    this.#post({ op: 'life', group: this.#group, life: life.name })
  }

  /**
   * Says goodbye: the worker drops this tab's courses and stops watching
   * its life lock; this tab stops watching the worker's (a pending lock
   * request, like a held one, could keep the page out of the back/forward
   * cache).
   */
  #leave() {
    this.#post({ op: 'leave', group: this.#group })
    this.#told = null
    this.#unwatchWorker?.()
    this.#unwatchWorker = null
  }

  /** Watches the worker's life lock while joined: once it is let go the worker died, and the page starts another. */
  #watchWorker() {
    if (this.#closed || this.#unwatchWorker || !this.#workerLife) return
    this.#unwatchWorker = watchLife(this.#workerLife, () => {
      if (this.#closed) return
      this.close()
      this.#sink.lost()
    })
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
    if (m.op === 'worker-life') {
      this.#workerLife = m.life
      this.#watchWorker()
      return
    }
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
