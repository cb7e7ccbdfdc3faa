// The TanStack adapter's rules (issue 14), in Node against a real
// @tanstack/query-core QueryClient: rules per event type (invalidate or
// setQueryData), over the defaults; unknown types do nothing; keys are
// told apart by TanStack's own hash, taken from the client.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { QueryClient, hashKey } from '@tanstack/query-core'
import { bindCourseQueries, DEFAULT_RULES } from '../static/coursestream-tanstack.js'

/** A connection stand-in: subscribe, and emit to the subscribers. */
function scripted() {
  const listeners = new Set()
  return {
    subscribe(fn) { listeners.add(fn); return () => listeners.delete(fn) },
    emit(ev) { for (const fn of listeners) fn(ev) },
  }
}

let seq = 0
const ev = (type, data, courseId = 'c1') => ({ id: String(++seq), courseId, type, data, timestamp: seq })

/** A real QueryClient whose invalidateQueries and setQueryData calls are recorded; flushed() resolves after the next batch. */
function recorded(config) {
  const qc = new QueryClient(config)
  const calls = []
  let onCall = () => {}
  const inv = qc.invalidateQueries.bind(qc)
  const set = qc.setQueryData.bind(qc)
  qc.invalidateQueries = (f) => { calls.push(['invalidate', f.queryKey]); onCall(); return inv(f) }
  qc.setQueryData = (k, u) => { calls.push(['set', k]); onCall(); return set(k, u) }
  return {
    qc, calls,
    flushed: () => new Promise((resolve) => { onCall = () => { onCall = () => {}; setTimeout(resolve, 0) } }),
  }
}

test('rules: a function invalidates, setQueryData updaters of one key compose in event order, null turns a default off', async () => {
  const r = recorded()
  const conn = scripted()
  r.qc.setQueryData(['chapter', 'ch-1'], { title: 'old', n: 0 })
  r.calls.length = 0
  const unbind = bindCourseQueries(r.qc, conn, {
    batchMs: 5,
    rules: {
      'quiz-published': (e) => [['quizzes', e.courseId, e.data.quizId]],
      'chapter-update-complete': {
        setQueryData: (e) => ({ queryKey: ['chapter', e.data.chapterId], updater: (old) => ({ ...old, ...e.data.updates, n: old.n + 1 }) }),
        invalidate: (e) => [['chapters', 'list', e.courseId]],
      },
      'video-delete-complete': null,
    },
  })
  const done = r.flushed()
  conn.emit(ev('chapter-update-complete', { chapterId: 'ch-1', updates: { title: 'a' } }))
  conn.emit(ev('quiz-published', { quizId: 'q1' }))
  conn.emit(ev('chapter-update-complete', { chapterId: 'ch-1', updates: { title: 'b' } }))
  conn.emit(ev('chapter-update-complete', { chapterId: 'ch-1', updates: { title: 'c' } }))
  conn.emit(ev('video-delete-complete', { videoId: 'v1' }))
  conn.emit(ev('quiz-published', { quizId: 'q1' }))
  await done
  assert.deepEqual(r.calls, [
    ['set', ['chapter', 'ch-1']],
    ['invalidate', ['chapters', 'list', 'c1']],
    ['invalidate', ['quizzes', 'c1', 'q1']],
  ])
  // Three updaters, one setQueryData: every event applied, in order.
  assert.deepEqual(r.qc.getQueryData(['chapter', 'ch-1']), { title: 'c', n: 3 })
  unbind()
})

test('rules: types no rule names do nothing, including names of Object.prototype members', async () => {
  const r = recorded()
  const conn = scripted()
  const errors = []
  const unbind = bindCourseQueries(r.qc, conn, { batchMs: 5, onError: (e) => errors.push(e) })
  for (const type of ['something-else', 'constructor', 'toString', '__proto__', 'hasOwnProperty', 'quiz-published']) {
    conn.emit(ev(type, {}))
  }
  // A known type after them: its batch is the only work.
  const done = r.flushed()
  conn.emit(ev('upload-complete', { videoId: 'v1' }))
  await done
  assert.deepEqual(r.calls, [['invalidate', ['videos', 'list', 'c1']], ['invalidate', ['chapters', 'list', 'c1']]])
  assert.deepEqual(errors, [])
  unbind()
})

test('rules: the defaults are the documented mapping', () => {
  const keys = { chaptersList: (c) => ['ch', c], videosList: (c) => ['vi', c], uploadProgress: (c, v) => ['up', c, v] }
  const table = Object.fromEntries(Object.entries(DEFAULT_RULES).map(([type, rule]) => [type, {
    invalidate: rule.invalidate?.(ev(type, { videoId: 'v' }), keys) ?? null,
    set: rule.setQueryData?.(ev(type, { videoId: 'v', progress: 5 }), keys)?.queryKey ?? null,
  }]))
  const chapters = { invalidate: [['ch', 'c1']], set: null }
  const videos = { invalidate: [['vi', 'c1'], ['ch', 'c1']], set: null }
  assert.deepEqual(table, {
    'chapter-update-complete': chapters, 'chapter-create-complete': chapters, 'chapter-delete-complete': chapters,
    'video-update-complete': videos, 'video-delete-complete': videos, 'upload-complete': videos,
    'upload-progress': { invalidate: null, set: ['up', 'c1', 'v'] },
  })
})

test('rules are read at each event: a getter can swap them while bound', async () => {
  const r = recorded()
  const conn = scripted()
  let current = { 'quiz-published': () => [['first']] }
  const unbind = bindCourseQueries(r.qc, conn, { batchMs: 5, get rules() { return current } })
  let done = r.flushed()
  conn.emit(ev('quiz-published', {}))
  await done
  current = { 'quiz-published': () => [['second']] }
  done = r.flushed()
  conn.emit(ev('quiz-published', {}))
  await done
  assert.deepEqual(r.calls, [['invalidate', ['first']], ['invalidate', ['second']]])
  unbind()
})

test("hash: keys are told apart by the client's own hash (its queryKeyHashFn), or by hashKey when given", async () => {
  // A client whose hash ignores case: ['Quiz'] and ['quiz'] are one query to it.
  const folded = (key) => hashKey(key).toLowerCase()
  const r = recorded({ defaultOptions: { queries: { queryKeyHashFn: folded } } })
  const conn = scripted()
  const rules = { 'quiz-published': (e) => [[e.data.name]] }
  let unbind = bindCourseQueries(r.qc, conn, { batchMs: 5, rules })
  let done = r.flushed()
  conn.emit(ev('quiz-published', { name: 'Quiz' }))
  conn.emit(ev('quiz-published', { name: 'quiz' }))
  await done
  assert.deepEqual(r.calls, [['invalidate', ['quiz']]], 'one invalidation (the latest key): the client hashes both alike')
  unbind()

  // hashKey wins over the client's: TanStack's plain hashKey tells them apart.
  r.calls.length = 0
  unbind = bindCourseQueries(r.qc, conn, { batchMs: 5, rules, hashKey })
  done = r.flushed()
  conn.emit(ev('quiz-published', { name: 'Quiz' }))
  conn.emit(ev('quiz-published', { name: 'quiz' }))
  await done
  assert.deepEqual(r.calls, [['invalidate', ['Quiz']], ['invalidate', ['quiz']]])
  unbind()
})
