// @ts-check
/**
 * The course events as the library hands them out: the envelope, resets,
 * the names EventSource listens for.
 * @module coursestream/events
 */

/**
 * @typedef {{id: string, courseId: string, type: string, data: unknown, operationId?: string, timestamp: number}} Envelope
 * @typedef {{courseId: string, lastEventId: string}} ResetInfo
 * @typedef {{type: 'reset', courseId: string, lastEventId: string}} ResetEvent
 */

/** The seven course events; EventSource only dispatches the names it listens for. */
export const COURSE_EVENTS = Object.freeze([
  'chapter-update-complete',
  'chapter-create-complete',
  'chapter-delete-complete',
  'video-update-complete',
  'video-delete-complete',
  'upload-progress',
  'upload-complete',
])

/** The pattern of an event type (the contract's). */
export const EVENT_TYPE = /^[a-z0-9][a-z0-9._-]{0,63}$/

/**
 * The final frame of a stream the server ends on purpose (a restart,
 * --max-stream-age): data {"retryMs": N}, when to reconnect.
 */
export const DRAIN_EVENT = 'coursestream:drain'

/**
 * Tells a reset ({type: 'reset', courseId, lastEventId}) from an event
 * envelope, for subscribers.
 * @param {Envelope | ResetEvent} event
 * @returns {event is ResetEvent}
 */
export function isReset(event) {
  return !!event && event.type === 'reset' && !('id' in event)
}

/**
 * A reset as subscribers see it, frozen.
 * @param {string} courseId
 * @param {string} lastEventId
 * @returns {ResetEvent}
 */
export function resetEvent(courseId, lastEventId) {
  return Object.freeze({ type: /** @type {'reset'} */ ('reset'), courseId, lastEventId })
}

/**
 * Freezes a value and everything in it (an envelope goes to many listeners).
 * @template T @param {T} v @returns {T}
 */
export function deepFreeze(v) {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v)
    for (const k of Object.keys(v)) deepFreeze(/** @type {any} */ (v)[k])
  }
  return v
}
