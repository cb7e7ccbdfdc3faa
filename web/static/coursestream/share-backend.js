// @ts-check
/**
 * Where a page's shared stream runs (types, and the one that runs it in
 * the page). A backend gets the page's courses and gives back what the
 * stream brings, through a BackendSink; everything that crosses it is
 * plain data, safe to post to a worker or another tab.
 * @module coursestream/share-backend
 */
import { Feed } from './feed.js'

/**
 * @import { FeedSettings } from './share-key.js'
 * @import { PlainError, PlainStatus } from './feed.js'
 * @import { StreamStats } from './stream-stats.js'
 * @typedef {'worker' | 'this-tab' | 'other-tab' | 'page'} Holder
 *   who holds the stream: the SharedWorker, this tab (the leader), another tab, or this page alone
 * @typedef {{
 *   events: (json: string) => void, reset: (courseId: string, lastEventId: string) => void,
 *   status: (status: PlainStatus, holder: Holder) => void, stats: (stats: StreamStats) => void,
 *   failed: (error: PlainError) => void, token: () => Promise<string | null>, unavailable: () => void,
 *   positions: () => Record<string, string>, lost: () => void,
 * }} BackendSink what a backend gives the page (unavailable: it cannot run here, use another;
 *   lost: what ran the stream died, start another of the same kind;
 *   positions: the page's courses at their positions now, for a backend that joins again after a pause)
 * @typedef {{set: (courses: Record<string, string>) => void, close: () => void}} Backend
 */

/** The page's own stream: a Feed in the page, for this page's connections only. */
export class PageBackend {
  #feed

  /** @param {FeedSettings} f @param {BackendSink} sink */
  constructor(f, sink) {
    this.#feed = new Feed(f, () => sink.token(), {
      events: (json) => sink.events(json),
      reset: (c, id) => sink.reset(c, id),
      status: (st) => sink.status(st, 'page'),
      stats: (st) => sink.stats(st),
      failed: (err) => sink.failed(err),
    })
  }

  /** @param {Record<string, string>} courses */
  set(courses) { this.#feed.set('page', courses) }

  close() { this.#feed.stop() }
}
