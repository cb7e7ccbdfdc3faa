// Every transport delivers every event once, in id order, against the real
// binary in real Chromium.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import {
  launch, openPage, courseID, publish, publishMany, range, waitStatus, waitEvents, deliveredIDs, settle, TEST_TIMEOUT, closePage,
} from './lib.mjs'

const TYPES = [
  'chapter-update-complete', 'chapter-create-complete', 'chapter-delete-complete', 'video-update-complete',
  'video-delete-complete', 'upload-progress', 'upload-complete',
]

let browser
before(async () => { browser = await launch() })
after(async () => { await browser?.close() })

for (const [transport, expected] of [['sse', 'sse'], ['poll', 'poll'], ['longpoll', 'longpoll'], ['auto', 'sse']]) {
  test(`${transport}: every event once, in order`, { timeout: TEST_TIMEOUT }, async () => {
    const { page, problems, context } = await openPage(browser)
    const course = courseID(transport)
    await page.evaluate(([c, t]) => window.start('a', { courseId: c, transport: t }), [course, transport])
    await waitStatus(page, 'a', 'open', expected)

    // 21 events, three of each course type, with data to check.
    const ids = await publishMany(course, 21, (i) => ({ type: TYPES[i % 7], data: { n: i, chapterId: `ch-${i}` } }))
    assert.deepEqual(ids, range(1, 21))
    await waitEvents(page, 'a', 21)
    await settle(page, 'a', course)

    const got = await page.evaluate(() => window.C.a.rec.events.map((e) => [e.id, e.type, e.data.n ?? null]))
    const want = Array.from({ length: 21 }, (_, i) => [String(i + 1), TYPES[i % 7], i])
    assert.deepEqual(got, [...want, ['22', 'chapter-update-complete', null]])
    assert.equal(await page.evaluate(() => window.C.a.conn.transport), expected)
    assert.equal(await page.evaluate(() => window.C.a.conn.lastEventId), '22')
    assert.deepEqual(await page.evaluate(() => window.C.a.rec.errors), [])
    await page.evaluate(() => window.C.a.conn.close())
    assert.equal(await page.evaluate(() => window.C.a.conn.status.state), 'closed')
    await closePage(context, problems)
  })
}

test('poll: If-None-Match of the last ETag, 304 while nothing changes, no-store', { timeout: TEST_TIMEOUT }, async () => {
  const { page, problems, context, requests } = await openPage(browser)
  const course = courseID('etag')
  await publish(course, 'chapter-create-complete', { chapterId: 'ch-1' })
  let answered304 = 0
  const two304 = new Promise((resolve) => {
    page.on('response', (r) => { if (r.url().includes('/poll?') && r.status() === 304 && ++answered304 === 2) resolve() })
  })
  await page.evaluate((c) => window.start('a', { courseId: c, transport: 'poll' }), course)
  await waitStatus(page, 'a', 'open', 'poll')
  // Polls go on every 150-600 ms: two of them are answered 304.
  await Promise.race([two304, new Promise((_, reject) => setTimeout(() => reject(new Error('no two 304s in 10s')), 10_000))])
  const conditional = requests.filter((r) => r.path.endsWith('/poll') && r.headers['if-none-match'])
  assert.ok(conditional.length >= 2)
  assert.ok(conditional.every((r) => r.headers['if-none-match'] === `W/"${course}:1"`), JSON.stringify(conditional[0].headers))
  assert.ok(conditional.every((r) => r.query.includes('after=1')))

  // A new event: the next poll gets it (200) and moves the ETag along.
  await publish(course, 'chapter-update-complete', { chapterId: 'ch-1' })
  await waitEvents(page, 'a', 1)
  assert.deepEqual(await deliveredIDs(page, 'a'), ['2'])
  // conn.stats counts them: the 304s seen, the 200 that brought event 2,
  // and not the first request (where the course is).
  const st = await page.evaluate(() => window.C.a.conn.stats)
  const polls = requests.filter((r) => r.path.endsWith('/poll')).length
  assert.ok(st.notModified >= 2 && st.notModified <= answered304, `stats ${JSON.stringify(st)}, ${answered304} 304s seen`)
  assert.ok(st.polls >= st.notModified + 1 && st.polls <= polls - 1, `stats ${JSON.stringify(st)}, ${polls} poll requests`)
  await closePage(context, problems)
})

test('sse with coalesce: the latest event per subject, in id order', { timeout: TEST_TIMEOUT }, async () => {
  const { page, problems, context, requests } = await openPage(browser)
  const course = courseID('coalesce')
  await page.evaluate((c) => window.start('a', { courseId: c, transport: 'sse', coalesce: '400ms' }), course)
  await waitStatus(page, 'a', 'open', 'sse')
  assert.ok(requests.some((r) => r.path.endsWith('/events') && r.query.includes('coalesce=400ms')))
  // Ten updates of ch-1 and one of ch-2 in one window.
  await Promise.all([
    ...Array.from({ length: 10 }, (_, i) => publish(course, 'chapter-update-complete', { chapterId: 'ch-1', n: i })),
    publish(course, 'chapter-update-complete', { chapterId: 'ch-2' }),
  ])
  const sentinel = await settle(page, 'a', course)
  const got = await page.evaluate(() => window.C.a.rec.events.map((e) => ({ id: Number(e.id), ch: e.data.chapterId })))
  const ids = got.map((e) => e.id)
  assert.deepEqual(ids, [...ids].sort((a, b) => a - b), 'in id order')
  assert.ok(got.filter((e) => e.ch === 'ch-1').length < 10, `coalesced: ${JSON.stringify(got)}`)
  assert.equal(got.at(-1).id, Number(sentinel))
  // The latest ch-1 update (the highest ch-1 id published) is among them.
  const res = await fetch(`${process.env.CS_BASE_URL}/v1/courses/${course}/poll?after=0`)
  const all = (await res.json()).events
  const lastCh1 = all.filter((e) => e.data.chapterId === 'ch-1').at(-1).id
  assert.ok(got.some((e) => e.id === Number(lastCh1)), `the latest ch-1 (${lastCh1}) delivered: ${JSON.stringify(got)}`)
  await closePage(context, problems)
})

test('types: only those types, custom ones included, over SSE and polling', { timeout: TEST_TIMEOUT }, async () => {
  const { page, problems, context } = await openPage(browser)
  const course = courseID('types')
  for (const [name, transport] of [['s', 'sse'], ['p', 'poll']]) {
    await page.evaluate(([c, n, t]) => window.start(n, { courseId: c, transport: t, types: ['quiz-started', 'upload-complete'] }), [course, name, transport])
    await waitStatus(page, name, 'open', transport)
  }
  await publish(course, 'chapter-update-complete', { chapterId: 'ch-1' })
  await publish(course, 'quiz-started', { quizId: 'q-1' })
  await publish(course, 'video-update-complete', { videoId: 'v-1' })
  await publish(course, 'upload-complete', { videoId: 'v-1' })
  for (const name of ['s', 'p']) {
    await waitEvents(page, name, 2)
    assert.deepEqual(await page.evaluate((n) => window.C[n].rec.events.map((e) => [e.id, e.type]), name),
      [['2', 'quiz-started'], ['4', 'upload-complete']], name)
  }
  await closePage(context, problems)
})

test('ids at or below the position are dropped, whatever the server or a proxy sends', { timeout: TEST_TIMEOUT }, async () => {
  const { page, problems, context } = await openPage(browser)
  const course = courseID('dupes')
  const env = (id) => ({ id: String(id), courseId: course, type: 'chapter-update-complete', data: { n: id }, timestamp: 1 })
  let polls = 0
  // A misbehaving answer: repeats, and an old id after newer ones.
  await page.route('**/v1/courses/*/poll?*', (r) => {
    if (polls++ > 0) return r.continue()
    return r.fulfill({
      contentType: 'application/json',
      body: JSON.stringify({ courseId: course, lastEventId: '3', events: [1, 2, 2, 1, 3, 3].map(env), more: false, reset: false }),
    })
  })
  await page.evaluate((c) => window.start('a', { courseId: c, transport: 'poll', lastEventId: '0' }), course)
  await waitEvents(page, 'a', 3)
  await publishMany(course, 4, (i) => ({ type: 'chapter-create-complete', data: { n: i } })) // ids 1-4 on the real server
  await waitEvents(page, 'a', 4)
  await settle(page, 'a', course)
  assert.deepEqual(await deliveredIDs(page, 'a'), range(1, 5), 'ids 1-3 once, then the real 4 and 5 (the real 1-3 are old)')
  await closePage(context, problems)
})

test('token: ?token= for EventSource, Authorization: Bearer for fetch; a function is asked each time', { timeout: TEST_TIMEOUT }, async () => {
  const { page, problems, context, requests } = await openPage(browser)
  const course = courseID('token')
  // The server runs in open dev mode and ignores tokens; this checks what the library sends.
  await page.evaluate((c) => {
    let n = 0
    window.start('s', { courseId: c, transport: 'sse', token: 'tok-sse' })
    window.start('p', { courseId: c, transport: 'poll', token: () => Promise.resolve(`tok-${++n}`) })
  }, course)
  await waitStatus(page, 's', 'open', 'sse')
  await waitStatus(page, 'p', 'open', 'poll')
  await publish(course, 'chapter-update-complete', { chapterId: 'ch-1' })
  await waitEvents(page, 's', 1)
  await waitEvents(page, 'p', 1)
  const sse = requests.filter((r) => r.path.endsWith('/events'))
  assert.equal(sse.length, 1)
  assert.equal(new URLSearchParams(sse[0].query).get('token'), 'tok-sse')
  assert.equal(sse[0].headers.authorization, undefined)
  const polls = requests.filter((r) => r.path.endsWith('/poll'))
  const bearer = polls.map((r) => r.headers.authorization)
  // The SSE connection's position probe carries its fixed token too.
  assert.ok(bearer.includes('Bearer tok-sse'), bearer.join(', '))
  const fresh = bearer.filter((b) => b !== 'Bearer tok-sse')
  assert.ok(fresh.length >= 2 && new Set(fresh).size === fresh.length, `a fresh token per request: ${fresh.join(', ')}`)
  assert.ok(polls.every((r) => !new URLSearchParams(r.query).has('token')), 'no token in poll URLs')
  await closePage(context, problems)
})
