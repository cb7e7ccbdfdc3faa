// awaitOperation and the observer: subscribe/unsubscribe, and a listener
// that throws never affects another.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import {
  launch, openPage, courseID, publish, publishMany, range, waitStatus, waitEvents, deliveredIDs, settle, unexpectedProblems, TEST_TIMEOUT, closePage,
} from './lib.mjs'

let browser
before(async () => { browser = await launch() })
after(async () => { await browser?.close() })

for (const transport of ['sse', 'poll']) {
  test(`${transport}: awaitOperation resolves with the event carrying the operation id`, { timeout: TEST_TIMEOUT }, async () => {
    const { page, problems, context } = await openPage(browser)
    const course = courseID(`op-${transport}`)
    await page.evaluate(([c, t]) => window.start('a', { courseId: c, transport: t }), [course, transport])
    await waitStatus(page, 'a', 'open', transport)
    // Wait first, publish after (the usual mutation order).
    await page.evaluate(() => { window.op = window.C.a.conn.awaitOperation('op-save-1', 10_000) })
    await publish(course, 'chapter-update-complete', { chapterId: 'ch-1' }, { operationId: 'op-other' })
    await publish(course, 'chapter-update-complete', { chapterId: 'ch-9' }, { operationId: 'op-save-1' })
    const ev = await page.evaluate(() => window.op)
    assert.equal(ev.id, '2')
    assert.equal(ev.operationId, 'op-save-1')
    assert.deepEqual(ev.data, { chapterId: 'ch-9' })
    // An operation whose event came before the call (a slow mutation answer).
    const early = await page.evaluate(() => window.C.a.conn.awaitOperation('op-other', 1_000).then((e) => e.id))
    assert.equal(early, '1')
    // Two waiters for one operation both resolve.
    const both = page.evaluate(() => Promise.all([
      window.C.a.conn.awaitOperation('op-twice', 10_000), window.C.a.conn.awaitOperation('op-twice', 10_000),
    ]).then((evs) => evs.map((e) => e.id)))
    await publish(course, 'upload-complete', { videoId: 'v-1' }, { operationId: 'op-twice' })
    assert.deepEqual(await both, ['3', '3'])
    await closePage(context, problems)
  })
}

test('awaitOperation rejects with TimeoutError, and with AbortError on close', { timeout: TEST_TIMEOUT }, async () => {
  const { page, problems, context } = await openPage(browser)
  const course = courseID('op-timeout')
  await page.evaluate((c) => window.start('a', { courseId: c, transport: 'sse' }), course)
  const t0 = Date.now()
  const timedOut = await page.evaluate(() => window.C.a.conn.awaitOperation('never', 300).then(() => 'resolved', (e) => e.name))
  assert.equal(timedOut, 'TimeoutError')
  assert.ok(Date.now() - t0 >= 300)
  const closed = await page.evaluate(() => {
    const p = window.C.a.conn.awaitOperation('never-either', 60_000).then(() => 'resolved', (e) => e.name)
    window.C.a.conn.close()
    return p
  })
  assert.equal(closed, 'AbortError')
  await closePage(context, problems)
})

test('a listener that throws never affects another; unsubscribe stops one listener', { timeout: TEST_TIMEOUT }, async () => {
  const { page, problems, context } = await openPage(browser)
  const course = courseID('isolation')
  await page.evaluate((c) => {
    window.start('a', { courseId: c, transport: 'sse' })
    const conn = window.C.a.conn
    window.seen = { first: [], second: [], third: [] }
    conn.subscribe((e) => { window.seen.first.push(e.id); throw new Error(`listener failed on ${e.id}`) })
    window.unsubscribeSecond = conn.subscribe((e) => { window.seen.second.push(e.id) })
    conn.subscribe(function (e) { 'use strict'; window.seen.third.push(e.id); e.data.mutated = true }) // frozen: throws too
  }, course)
  await waitStatus(page, 'a', 'open', 'sse')
  await publishMany(course, 3, (i) => ({ type: 'video-update-complete', data: { videoId: `v-${i}` } }))
  await waitEvents(page, 'a', 3)
  const seen = await page.evaluate(() => window.seen)
  assert.deepEqual(seen, { first: range(1, 3), second: range(1, 3), third: range(1, 3) })
  const errors = await page.evaluate(() => window.C.a.rec.errors)
  assert.equal(errors.length, 6, errors.join('\n'))
  assert.ok(errors.includes('listener failed on 2'))
  assert.ok(errors.some((e) => /read.only|not extensible|Cannot add property/i.test(e)), errors.join('\n'))
  assert.deepEqual(await page.evaluate(() => window.C.a.rec.events.map((e) => e.data.mutated ?? false)), [false, false, false])

  await page.evaluate(() => { window.unsubscribeSecond(); window.unsubscribeSecond() })
  await settle(page, 'a', course)
  assert.deepEqual(await page.evaluate(() => window.seen.second), range(1, 3))
  assert.deepEqual(await page.evaluate(() => window.seen.first), range(1, 4))
  assert.deepEqual(await deliveredIDs(page, 'a'), range(1, 4))
  await closePage(context, problems)
})

test('without onError, what a listener throws goes to reportError (window error event)', { timeout: TEST_TIMEOUT }, async () => {
  const { page, problems, context } = await openPage(browser)
  const course = courseID('report')
  await page.evaluate((c) => {
    window.reported = []
    window.addEventListener('error', (e) => { window.reported.push(e.error && e.error.message); e.preventDefault() })
    window.start('a', { courseId: c, transport: 'sse', reportErrors: true })
    window.after = []
    window.C.a.conn.subscribe(() => { throw new Error('boom') })
    window.C.a.conn.subscribe((e) => window.after.push(e.id))
  }, course)
  await waitStatus(page, 'a', 'open', 'sse')
  await publish(course, 'chapter-delete-complete', { chapterId: 'ch-1' })
  await page.waitForFunction(() => window.reported.length === 1)
  assert.deepEqual(await page.evaluate(() => window.reported), ['boom'])
  assert.deepEqual(await page.evaluate(() => window.after), ['1'])
  await context.close()
  // preventDefault keeps it off the console: no console error either.
  assert.deepEqual(unexpectedProblems(problems), [])
})
