// The library's pure parts, in Node: option checks, the backoff, isReset.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import connectDefault, { connect, backoffDelay, isReset, DEFAULTS } from '../static/coursestream.js'
import bindDefault, { bindCourseQueries } from '../static/coursestream-tanstack.js'

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

test('the default exports are connect and bindCourseQueries', () => {
  assert.equal(connectDefault, connect)
  assert.equal(bindDefault, bindCourseQueries)
})
