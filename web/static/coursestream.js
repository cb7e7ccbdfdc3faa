// @ts-check
/**
 * coursestream browser library: course events over Server-Sent Events, with
 * ETag polling and long-polling as fallbacks. ES modules with no build step
 * and no dependencies: this entry point and the modules in coursestream/
 * beside it (relative imports only, so that the same files serve a page
 * and a package); the types are in coursestream.d.ts.
 *
 *   import { connect } from '/coursestream.js'
 *   const conn = connect({ courseId: 'course-123', onEvent: (ev) => render(ev) })
 *   const unsubscribe = conn.subscribe((ev) => { ... })   // observer: returns its unsubscribe
 *   const ev = await conn.awaitOperation('op-9', 10_000)  // the event carrying operationId op-9
 *   conn.close()
 *
 * Guarantees: every listener sees each event once, in id order (ids at or
 * below the current position are dropped); a reset moves the position to
 * where the server says; the position survives a reload (sessionStorage),
 * so a reload neither loses nor repeats events. A listener that throws
 * never stops another: its error goes to `onError`, or, without one, to
 * `reportError` (the browser reports it like an uncaught exception).
 *
 * The modules, along the seam between a connection and its drivers
 * (coursestream/port.js):
 *   connection.js       Connection, connect: position, status, delivery; drives one driver
 *   driver-sse.js       SSE over EventSource: reconnections, drain frames, refusals, liveness audit
 *   driver-poll.js      ETag polling and long-polling
 *   auto-fallback.js    transport 'auto': when to poll instead of SSE, when to try SSE again
 *   fallback-memory.js  what the browser remembers of SSE failing (localStorage)
 *   saved-position.js   the position across reloads (sessionStorage)
 *   api.js              the HTTP endpoints: stream URL, poll, probe of a refusal, token
 *   options.js, status.js, listeners.js, operations.js, envelope.js, ids.js, backoff.js,
 *   errors.js, storage.js, page.js
 *
 * @module coursestream
 */
import { connect } from './coursestream/connection.js'

export { connect, Connection } from './coursestream/connection.js'
export { COURSE_EVENTS, isReset } from './coursestream/envelope.js'
export { DEFAULTS } from './coursestream/options.js'
export { backoffDelay } from './coursestream/backoff.js'
export { HTTPError } from './coursestream/errors.js'

export default connect
