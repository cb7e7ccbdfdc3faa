// The TanStack adapter against the real @tanstack/query-core QueryClient:
// in Node (a scripted connection, and the real library polling the real
// binary) and in Chromium (the real library over SSE and polling).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { QueryClient, QueryObserver } from '@tanstack/query-core'
import { bindCourseQueries } from '../static/coursestream-tanstack.js'
import { connect } from '../static/coursestream.js'
import {
  launch, openPage, courseID, publish, publishMany, waitStatus, TEST_TIMEOUT, BASE, closePage,
} from './lib.mjs'

const TYPES = [
  'chapter-update-complete', 'chapter-create-complete', 'chapter-delete-complete', 'video-update-complete',
  'video-delete-complete', 'upload-complete',
]

/** A connection stand-in: subscribe, and emit to the subscribers. */
function scripted() {
  const listeners = new Set()
  return {
    subscribe(fn) { listeners.add(fn); return () => listeners.delete(fn) },
    emit(ev) { for (const fn of listeners) fn(ev) },
    get listeners() { return listeners.size },
  }
}

/**
 * A real QueryClient whose invalidateQueries and setQueryData calls are
 * recorded, with active queries for both lists that count their fetches.
 */
function spiedClient(course) {
  const qc = new QueryClient()
  qc.mount()
  const calls = { invalidate: [], set: [] }
  const invalidate = qc.invalidateQueries.bind(qc)
  const setData = qc.setQueryData.bind(qc)
  let onCall = () => {}
  qc.invalidateQueries = (filters) => { calls.invalidate.push(JSON.stringify(filters.queryKey)); onCall(); return invalidate(filters) }
  qc.setQueryData = (key, updater) => { calls.set.push(JSON.stringify(key)); onCall(); return setData(key, updater) }
  const fetches = { chapters: 0, videos: 0 }
  const observers = ['chapters', 'videos'].map((name) => {
    const o = new QueryObserver(qc, { queryKey: [name, 'list', course], queryFn: async () => ++fetches[name], staleTime: Infinity })
    return o.subscribe(() => {})
  })
  return {
    qc, calls, fetches,
    /** Resolves at the first recorded call (a batch's calls are made together). */
    nextCall: () => new Promise((resolve) => { onCall = () => { onCall = () => {}; setTimeout(resolve, 0) } }),
    close: () => { observers.forEach((u) => u()); qc.unmount(); qc.clear() },
  }
}

const count = (list) => list.reduce((m, k) => m.set(k, (m.get(k) ?? 0) + 1), new Map())

test('node: a burst of 100 events is one invalidation per key and one fetch per query', { timeout: TEST_TIMEOUT }, async () => {
  const course = 'course-burst'
  const s = spiedClient(course)
  await s.qc.refetchQueries() // the first fetch of both lists
  const initial = { ...s.fetches }
  const conn = scripted()
  const unbind = bindCourseQueries(s.qc, conn)
  const first = s.nextCall()
  for (let i = 1; i <= 100; i++) {
    const type = i % 10 === 0 ? 'upload-progress' : TYPES[i % TYPES.length]
    conn.emit({ id: String(i), courseId: course, type, data: { chapterId: 'ch-1', videoId: `v-${(i / 10) % 2}`, progress: i }, timestamp: i })
  }
  assert.deepEqual(s.calls, { invalidate: [], set: [] }, 'nothing before the batch ends')
  await first
  assert.deepEqual(count(s.calls.invalidate), new Map([
    [JSON.stringify(['chapters', 'list', course]), 1],
    [JSON.stringify(['videos', 'list', course]), 1],
  ]))
  // upload-progress: set, never refetched; the latest value per video.
  assert.deepEqual(s.calls.set.sort(), [JSON.stringify(['uploads', 'progress', course, 'v-0']), JSON.stringify(['uploads', 'progress', course, 'v-1'])].sort())
  assert.equal(s.qc.getQueryData(['uploads', 'progress', course, 'v-0']).progress, 100)
  assert.equal(s.qc.getQueryData(['uploads', 'progress', course, 'v-1']).progress, 90)
  await s.qc.getQueryCache().find({ queryKey: ['chapters', 'list', course] }).promise
  await s.qc.getQueryCache().find({ queryKey: ['videos', 'list', course] }).promise
  assert.deepEqual(s.fetches, { chapters: initial.chapters + 1, videos: initial.videos + 1 })

  // A reset invalidates both lists, once.
  s.calls.invalidate.length = 0
  const again = s.nextCall()
  conn.emit({ type: 'reset', courseId: course, lastEventId: '500' })
  conn.emit({ type: 'reset', courseId: course, lastEventId: '501' })
  await again
  assert.deepEqual(s.calls.invalidate.sort(), [JSON.stringify(['chapters', 'list', course]), JSON.stringify(['videos', 'list', course])].sort())

  // Unbound: no more work, and the listener is gone.
  unbind()
  assert.equal(conn.listeners, 0)
  s.calls.invalidate.length = 0
  conn.emit({ id: '600', courseId: course, type: 'chapter-update-complete', data: {}, timestamp: 1 })
  await new Promise((r) => setTimeout(r, 250)) // longer than a batch (100 ms); absence has no signal
  assert.deepEqual(s.calls.invalidate, [])
  s.close()
})

test('node: a steady stream, one event per task, is flushed at least every maxBatchMs', { timeout: TEST_TIMEOUT }, async () => {
  const conn = scripted()
  const flushes = []
  const t0 = Date.now()
  const unbind = bindCourseQueries({ invalidateQueries: () => flushes.push(Date.now() - t0), setQueryData() {} }, conn, { maxBatchMs: 300 })
  // Each event in its own task, queued ahead of the adapter's timer (as a
  // dense SSE stream's messages are): a debounce alone would never fire.
  await new Promise((resolve) => {
    const tick = () => {
      if (Date.now() - t0 >= 1_500) return resolve()
      setTimeout(tick, 0) // the next event's task, queued before the adapter's timer
      conn.emit({ id: '1', courseId: 'c', type: 'chapter-update-complete', data: {}, timestamp: 1 })
    }
    tick()
  })
  unbind()
  assert.ok(flushes.length >= 3, `1.5 s of events, maxBatchMs 300: flushed at ${JSON.stringify(flushes)}`)
})

test('node: keys and rules are configurable; only invalidateQueries and setQueryData are used', { timeout: TEST_TIMEOUT }, async () => {
  const used = []
  const client = new Proxy({
    invalidateQueries: (f) => { used.push(['invalidateQueries', f]) },
    setQueryData: (k, u) => { used.push(['setQueryData', k, u(undefined)]) },
  }, { get: (t, p) => { if (!(p in t)) used.push(['unexpected', String(p)]); return t[p] } })
  const conn = scripted()
  let flushed
  const done = new Promise((r) => { flushed = r })
  const unbind = bindCourseQueries(client, conn, {
    keys: { chaptersList: (c) => ['course', c, 'chapters'] },
    invalidate: {
      'quiz-updated': (ev) => [['quizzes', ev.courseId, ev.data.quizId]],
      'video-delete-complete': null,
    },
    progress: (ev) => ({ queryKey: ['videos', 'list', ev.courseId], updater: () => ({ progressOf: ev.data.videoId }) }),
    batchMs: 5,
  })
  conn.emit({ id: '1', courseId: 'c1', type: 'chapter-create-complete', data: {}, timestamp: 1 })
  conn.emit({ id: '2', courseId: 'c1', type: 'quiz-updated', data: { quizId: 'q1' }, timestamp: 1 })
  conn.emit({ id: '3', courseId: 'c1', type: 'video-delete-complete', data: { videoId: 'v' }, timestamp: 1 })
  conn.emit({ id: '4', courseId: 'c1', type: 'upload-progress', data: { videoId: 'v9' }, timestamp: 1 })
  conn.emit({ id: '5', courseId: 'c1', type: 'something-else', data: {}, timestamp: 1 })
  setTimeout(flushed, 30)
  await done
  assert.deepEqual(used, [
    ['setQueryData', ['videos', 'list', 'c1'], { progressOf: 'v9' }],
    ['invalidateQueries', { queryKey: ['course', 'c1', 'chapters'] }],
    ['invalidateQueries', { queryKey: ['quizzes', 'c1', 'q1'] }],
  ])
  unbind()
})

test('node: the real library polling the real binary, 100 events in one answer: one invalidation per key', { timeout: TEST_TIMEOUT }, async () => {
  const course = courseID('tq-node')
  await publishMany(course, 100, (i) => ({ type: TYPES[i % TYPES.length], data: { chapterId: `ch-${i}`, videoId: `v-${i}` } }))
  const s = spiedClient(course)
  await s.qc.refetchQueries()
  const events = []
  // No EventSource in Node: auto polls.
  const conn = connect({ baseUrl: BASE, courseId: course, lastEventId: '0', onEvent: (e) => events.push(e.id), persist: false })
  const unbind = bindCourseQueries(s.qc, conn)
  await s.nextCall()
  assert.equal(conn.transport, 'poll')
  assert.equal(events.length, 100)
  assert.deepEqual(count(s.calls.invalidate), new Map([
    [JSON.stringify(['chapters', 'list', course]), 1],
    [JSON.stringify(['videos', 'list', course]), 1],
  ]))
  unbind()
  conn.close()
  s.close()
})

let browser
before(async () => { browser = await launch() })
after(async () => { await browser?.close() })

/**
 * In the page: a real QueryClient (query-core's ESM build) whose
 * invalidateQueries and setQueryData calls are recorded in window.tqCalls,
 * bound to window.C.a.conn with the adapter's defaults. With options, it
 * starts connection a with them first, in the same task as the binding.
 */
function bindRecorded() {
  return async (startOptions) => {
    // query-core's ESM build reads process.env.NODE_ENV, which a bundler
    // replaces; a page without one defines it.
    globalThis.process ??= { env: { NODE_ENV: 'production' } }
    const { QueryClient } = await import('/__vendor/query-core/index.js')
    const qc = new QueryClient()
    qc.mount()
    const calls = { invalidated: [], set: [] }
    const inv = qc.invalidateQueries.bind(qc)
    const sd = qc.setQueryData.bind(qc)
    qc.invalidateQueries = (f) => { calls.invalidated.push(JSON.stringify(f.queryKey)); return inv(f) }
    qc.setQueryData = (k, u) => { calls.set.push(JSON.stringify(k)); return sd(k, u) }
    window.tqCalls = calls
    window.tqClient = qc
    if (startOptions) window.start('a', startOptions)
    window.tqUnbind = window.tq.bindCourseQueries(qc, window.C.a.conn)
  }
}

test('browser, sse: a live burst of 30 events, one SSE message each, is one invalidation per key', { timeout: TEST_TIMEOUT }, async () => {
  const { page, problems, context } = await openPage(browser)
  const course = courseID('tq-live')
  await page.evaluate((c) => window.start('a', { courseId: c, transport: 'sse', lastEventId: '0' }), course)
  await waitStatus(page, 'a', 'open', 'sse')
  await page.evaluate(bindRecorded())
  // 30 publishes at once, as a backend's batch job does: each event
  // arrives as its own SSE message, dispatched in its own task. (Published
  // one by one from here, on a loaded machine, they can take longer than
  // the batch's 1 s bound: then two invalidations per key are right.)
  await Promise.all(Array.from({ length: 30 }, (_, i) => publish(course, TYPES[i % TYPES.length], { chapterId: `ch-${i}`, videoId: `v-${i}` })))
  await publish(course, 'upload-progress', { progress: 40 }) // no videoId: the course's progress key
  await page.waitForFunction(() => window.C.a.rec.events.length === 31, null, { timeout: 15_000 })
  // Then no more calls: a second batch would come within maxBatchMs.
  await page.waitForFunction(() => window.tqCalls.invalidated.length > 0, null, { timeout: 5_000 })
  await new Promise((r) => setTimeout(r, 1_500))
  const calls = await page.evaluate(() => { window.tqUnbind(); return window.tqCalls })
  // One invalidation per key per burst window (100 ms quiet, 1 s at most).
  // On a loaded machine the 30 deliveries can spread over more than one
  // window (a quiet gap of 100 ms between two of them): then two per key
  // are right, never one per event.
  const keys = count(calls.invalidated)
  assert.deepEqual([...keys.keys()].sort(), [JSON.stringify(['chapters', 'list', course]), JSON.stringify(['videos', 'list', course])].sort(), JSON.stringify(calls.invalidated))
  for (const [key, n] of keys) assert.ok(n >= 1 && n <= 2, `${key} invalidated ${n} times for a burst of 30: ${JSON.stringify(calls.invalidated)}`)
  assert.deepEqual(calls.set, [JSON.stringify(['uploads', 'progress', course])])
  assert.deepEqual(await page.evaluate((c) => window.tqClient.getQueryData(['uploads', 'progress', c]), course), { progress: 40 })
  await closePage(context, problems)
})

for (const transport of ['poll', 'sse']) {
  test(`browser, ${transport}: a replayed burst of 100 events is one invalidation per key`, { timeout: TEST_TIMEOUT }, async () => {
    const { page, problems, context } = await openPage(browser)
    const course = courseID(`tq-${transport}`)
    await publishMany(course, 100, (i) => ({
      type: i % 5 === 0 ? 'upload-progress' : TYPES[i % TYPES.length],
      data: { chapterId: `ch-${i}`, videoId: `v-${i % 3}`, progress: i },
    }))
    await page.evaluate(bindRecorded(), { courseId: course, transport, lastEventId: '0' })
    // Wait for all 100, then for longer than a batch may last.
    await page.waitForFunction(() => window.C.a.rec.events.length === 100, null, { timeout: 15_000 })
    await new Promise((r) => setTimeout(r, 1_500))
    const result = await page.evaluate((c) => {
      window.tqUnbind()
      return { ...window.tqCalls, progress: window.tqClient.getQueryData(['uploads', 'progress', c, 'v-1']), transport: window.C.a.conn.transport }
    }, course)
    assert.equal(result.transport, transport)
    assert.deepEqual(count(result.invalidated), new Map([
      [JSON.stringify(['chapters', 'list', course]), 1],
      [JSON.stringify(['videos', 'list', course]), 1],
    ]), JSON.stringify(result.invalidated))
    assert.deepEqual(count(result.set), new Map([0, 1, 2].map((v) => [JSON.stringify(['uploads', 'progress', course, `v-${v}`]), 1])))
    assert.equal(result.progress.progress, 85) // the last upload-progress of v-1: i = 85
    await closePage(context, problems)
  })
}
