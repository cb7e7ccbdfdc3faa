// @ts-check
/**
 * A connection's status, as onStatus gets it: a state, the transport in
 * use and the details of the state.
 * @module coursestream/status
 */

/**
 * @typedef {'sse' | 'poll' | 'longpoll'} Transport
 * @typedef {'connecting' | 'open' | 'reconnecting' | 'paused' | 'closed'} State
 * @typedef {{state: State, transport: Transport,
 *   reason?: string, error?: unknown, retryInMs?: number, planned?: boolean,
 *   sharing?: 'worker' | 'this-tab' | 'other-tab' | 'page'}} Status
 *   sharing: who holds the shared stream this connection rides (absent: its own, share: false; also before the holder is known and once closed)
 */

/**
 * A frozen status.
 * @param {State} state
 * @param {Transport} transport
 * @param {string | null} reason why auto polls (null: it does not)
 * @param {Partial<Status>} [detail]
 * @returns {Readonly<Status>}
 */
export function makeStatus(state, transport, reason, detail = {}) {
  return Object.freeze({ state, transport, ...(reason ? { reason } : {}), ...detail })
}

/**
 * Whether next tells onStatus something that prev did not: a status with
 * an error always does.
 * @param {Status} prev
 * @param {Status} next
 */
export function isNews(prev, next) {
  return !(prev.state === next.state && prev.transport === next.transport && prev.reason === next.reason &&
    !next.error && !prev.error && next.retryInMs === prev.retryInMs && next.planned === prev.planned &&
    next.sharing === prev.sharing)
}
