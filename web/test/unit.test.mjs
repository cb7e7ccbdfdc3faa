// The library's pure parts, in Node, each from its own module: option
// checks, ids, the backoff and server delays, isReset, storage that is
// missing. The entry points' exports are checked at the end.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import connectDefault, * as entry from '../static/coursestream.js'
import bindDefault, { bindCourseQueries } from '../static/coursestream-tanstack.js'
import { connect, Connection } from '../static/coursestream/connection.js'
import { DEFAULTS, parseOptions } from '../static/coursestream/options.js'
import { backoffDelay, retryAfterMs, serverDelay, MAX_SERVER_DELAY_MS } from '../static/coursestream/backoff.js'
import { isReset, COURSE_EVENTS } from '../static/coursestream/envelope.js'
import { cmpID } from '../static/coursestream/ids.js'
import { HTTPError } from '../static/coursestream/errors.js'
import { FallbackMemory, NONE } from '../static/coursestream/fallback-memory.js'
import { SavedPosition } from '../static/coursestream/saved-position.js'
import { PollCounter } from '../static/coursestream/stream-stats.js'

test('connect refuses bad options with a TypeError, before any request', () => {
  const base = { baseUrl: 'http://127.0.0.1:9', courseId: 'course-1' }
  for (const bad of [
    { courseId: '' }, { courseId: 'a/b' }, { courseId: '-x' },
    { transport: 'websocket' }, { fallback: 'sse' },
    { types: ['Bad'] }, { types: ['reset'] },
    { coalesce: '11s' }, { coalesce: 'soon' }, { coalesce: 20_000 },
    { lastEventId: 'abc' }, { lastEventId: '-1' }, { lastEventId: '01' },
  ]) {
    assert.throws(() => connect({ ...base, ...bad }), TypeError, JSON.stringify(bad))
  }
  assert.throws(() => connect({ courseId: 'c' }), /baseUrl is required/)
  const ok = connect({ ...base, coalesce: 500, lastEventId: 7, types: ['quiz-started'] })
  assert.equal(ok.lastEventId, '7')
  assert.equal(ok.courseId, 'course-1')
  ok.close()
  assert.equal(ok.status.state, 'closed')
})

test('backoff: full jitter in [0, min(max, base * 2^attempt))', () => {
  for (const attempt of [0, 1, 2, 5, 10, 100]) {
    const cap = Math.min(DEFAULTS.backoffMaxMs, DEFAULTS.backoffBaseMs * 2 ** attempt)
    let max = 0
    for (let i = 0; i < 2_000; i++) {
      const d = backoffDelay(attempt, DEFAULTS.backoffBaseMs, DEFAULTS.backoffMaxMs)
      assert.ok(d >= 0 && d < cap, `attempt ${attempt}: ${d}`)
      max = Math.max(max, d)
    }
    assert.ok(max > cap * 0.8, `attempt ${attempt}: spread up to the cap (${max} of ${cap})`)
  }
})

test('isReset tells resets from envelopes', () => {
  assert.equal(isReset({ type: 'reset', courseId: 'c', lastEventId: '3' }), true)
  assert.equal(isReset({ id: '3', type: 'chapter-update-complete', courseId: 'c', data: {}, timestamp: 1 }), false)
})

test("transport 'sse' without EventSource is a TypeError from connect", () => {
  assert.equal(typeof globalThis.EventSource, 'undefined') // Node
  assert.throws(() => connect({ baseUrl: 'http://127.0.0.1:9', courseId: 'c1', transport: 'sse' }), /EventSource/)
})

test('the position request leaves from within connect() (before what the caller does next)', () => {
  const real = globalThis.fetch
  const calls = []
  globalThis.fetch = (url, init) => {
    calls.push(String(url))
    return new Promise((_, reject) => init.signal.addEventListener('abort', () => reject(init.signal.reason)))
  }
  try {
    const c = connect({ baseUrl: 'http://127.0.0.1:9', courseId: 'c1', transport: 'poll', persist: false })
    assert.deepEqual(calls, ['http://127.0.0.1:9/v1/courses/c1/poll?after=9007199254740991'])
    c.close()
    // A token function is asked first: its request waits for the answer.
    const t = connect({ baseUrl: 'http://127.0.0.1:9', courseId: 'c1', transport: 'poll', persist: false, token: async () => 'x' })
    assert.equal(calls.length, 1)
    t.close()
  } finally {
    globalThis.fetch = real
  }
})

test('parseOptions normalizes: base URL with a trailing slash, coalesce in ms, defaults filled in', () => {
  const s = parseOptions({ baseUrl: 'http://127.0.0.1:9/prefix?x=1#h', courseId: 'c1', coalesce: '1.5s', types: ['a', 'a', 'b'], backoffMaxMs: undefined })
  assert.equal(s.base.href, 'http://127.0.0.1:9/prefix/')
  assert.equal(s.coalesce, '1.5s')
  assert.equal(s.coalesceMs, 1500)
  assert.deepEqual(s.types, ['a', 'b'])
  assert.equal(s.requested, 'auto')
  assert.equal(s.fallbackTo, 'poll')
  assert.equal(s.start, null)
  assert.equal(s.options.backoffMaxMs, DEFAULTS.backoffMaxMs)
  assert.equal(parseOptions({ baseUrl: 'http://h/', courseId: 'c', coalesce: 250 }).coalesceMs, 250)
})

test('cmpID compares decimal ids beyond 2^53', () => {
  assert.ok(cmpID('9', '10') < 0)
  assert.ok(cmpID('18446744073709551615', '18446744073709551614') > 0)
  assert.equal(cmpID('42', '42'), 0)
})

test('server delays: Retry-After in seconds or as a date, clamped', () => {
  assert.equal(retryAfterMs(null), 0)
  assert.equal(retryAfterMs('2'), 2000)
  assert.equal(retryAfterMs('nonsense'), 0)
  assert.equal(retryAfterMs('3600'), MAX_SERVER_DELAY_MS)
  const inTen = retryAfterMs(new Date(Date.now() + 10_000).toUTCString())
  assert.ok(inTen > 8_000 && inTen <= 10_000, String(inTen))
  assert.equal(serverDelay(-5), 0)
})

test('without Web Storage (Node) the memories hold nothing and writes are no-ops', () => {
  assert.equal(typeof globalThis.localStorage, 'undefined')
  const base = new URL('http://127.0.0.1:9/')
  const m = new FallbackMemory(base)
  m.remember('silent', 1, 5_000)
  assert.equal(m.read(), NONE)
  m.forget()
  const p = new SavedPosition(base, 'c1', [], true)
  p.save('7')
  assert.equal(p.load(), null)
})

test('the entry points export what they did, and connect and bindCourseQueries by default', () => {
  assert.equal(connectDefault, connect)
  assert.equal(bindDefault, bindCourseQueries)
  assert.deepEqual(Object.keys(entry).sort(),
    ['COURSE_EVENTS', 'Connection', 'DEFAULTS', 'HTTPError', 'backoffDelay', 'connect', 'default', 'isReset'])
  assert.equal(entry.Connection, Connection)
  assert.equal(entry.HTTPError, HTTPError)
  assert.equal(entry.COURSE_EVENTS, COURSE_EVENTS)
  assert.equal(entry.isReset, isReset)
  assert.equal(entry.backoffDelay, backoffDelay)
})

test('poll counter: every request counts, 304 answers apart; errors pass through', async () => {
  const seen = []
  const c = new PollCounter((st) => seen.push(st))
  assert.deepEqual(c.stats, { polls: 0, notModified: 0 })
  assert.equal((await c.count(Promise.resolve({ status: 200 }))).status, 200)
  await c.count(Promise.resolve({ status: 304 }))
  await assert.rejects(c.count(Promise.reject(new Error('offline'))), /offline/)
  assert.deepEqual(c.stats, { polls: 3, notModified: 1 })
  assert.deepEqual(seen, [{ polls: 1, notModified: 0 }, { polls: 2, notModified: 1 }, { polls: 3, notModified: 1 }])
  assert.ok(Object.isFrozen(c.stats))
})
