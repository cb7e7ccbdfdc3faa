// @ts-check
/**
 * What a stream's polls did: how many requests it sent, and how many the
 * server answered 304 Not Modified (its ETag matched: nothing new). Kept
 * where the stream runs (the connection, or the shared stream in the page,
 * the leading tab or the SharedWorker) and passed to the connections that
 * ride it as plain data.
 * @module coursestream/stream-stats
 */

/**
 * @typedef {{polls: number, notModified: number}} StreamStats
 *   polls: poll requests sent (the liveness check of a silent SSE stream included; the
 *   first request of a connection, that asks where its course is, not); notModified: of
 *   those, the answers 304
 */

/** No polls yet. @type {Readonly<StreamStats>} */
export const NO_STATS = Object.freeze({ polls: 0, notModified: 0 })

/** The counts of one stream; onChange is called after each poll is answered (or fails). */
export class PollCounter {
  #polls = 0
  #notModified = 0
  #onChange

  /** @param {(stats: Readonly<StreamStats>) => void} [onChange] */
  constructor(onChange) {
    this.#onChange = onChange
  }

  /** The counts now, frozen. @returns {Readonly<StreamStats>} */
  get stats() {
    return Object.freeze({ polls: this.#polls, notModified: this.#notModified })
  }

  /**
   * Counts one poll request that is leaving, and its answer when that is
   * a 304; returns the answer as it is.
   * @template {{status: number}} T
   * @param {Promise<T>} answer
   * @returns {Promise<T>}
   */
  count(answer) {
    this.#polls++
    return answer.then((res) => {
      if (res.status === 304) this.#notModified++
      this.#onChange?.(this.stats)
      return res
    }, (err) => {
      this.#onChange?.(this.stats)
      throw err
    })
  }
}
