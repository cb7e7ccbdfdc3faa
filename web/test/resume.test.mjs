// Positions: a reload resumes where the tab was (sessionStorage), the
// page's own lastEventId wins, a reset moves the position, and polling
// pauses while the page is hidden.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import {
  launch, openPage, courseID, publish, publishMany, range, waitStatus, waitEvents, deliveredIDs, settle, TEST_TIMEOUT, closePage,
} from './lib.mjs'

let browser
before(async () => { browser = await launch() })
after(async () => { await browser?.close() })

const chapter = (i) => ({ type: 'chapter-update-complete', data: { chapterId: `ch-${i}` } })

for (const transport of ['sse', 'poll', 'auto']) {
  test(`${transport}: a reload loses and repeats nothing`, { timeout: TEST_TIMEOUT }, async () => {
    const { page, problems, context } = await openPage(browser)
    const course = courseID(`reload-${transport}`)
    await publishMany(course, 2, chapter) // history before the page came
    await page.evaluate(([c, t]) => window.start('a', { courseId: c, transport: t }), [course, transport])
    await waitStatus(page, 'a', 'open')
    await publishMany(course, 5, chapter)
    await waitEvents(page, 'a', 5)
    assert.deepEqual(await deliveredIDs(page, 'a'), range(3, 7), 'from connect on, not the history before it')

    await page.reload()
    await page.waitForFunction(() => window.harnessReady === true)
    // Published while no page listens.
    await publishMany(course, 3, chapter)
    assert.equal(await page.evaluate((c) => Object.entries(sessionStorage).find(([k]) => k.includes(c))?.[1], course), '7')
    await page.evaluate(([c, t]) => window.start('a', { courseId: c, transport: t }), [course, transport])
    await waitEvents(page, 'a', 3)
    await publishMany(course, 2, chapter)
    await waitEvents(page, 'a', 5)
    await settle(page, 'a', course)
    assert.deepEqual(await deliveredIDs(page, 'a'), range(8, 13))
    await closePage(context, problems)
  })
}

test('lastEventId: the page\'s own position wins over the saved one', { timeout: TEST_TIMEOUT }, async () => {
  const { page, problems, context } = await openPage(browser)
  const course = courseID('given')
  await publishMany(course, 4, chapter)
  await page.evaluate((c) => window.start('a', { courseId: c, transport: 'sse' }), course)
  await waitStatus(page, 'a', 'open', 'sse')
  await page.evaluate(() => window.C.a.conn.close())
  // The page loaded its data at id 2: events 3 and 4 come first.
  await page.evaluate((c) => window.start('b', { courseId: c, transport: 'sse', lastEventId: '2' }), course)
  await waitEvents(page, 'b', 2)
  await settle(page, 'b', course)
  assert.deepEqual(await deliveredIDs(page, 'b'), range(3, 5))
  await closePage(context, problems)
})

for (const transport of ['sse', 'poll']) {
  test(`${transport}: a reset calls onReset and subscribers, then carries on`, { timeout: TEST_TIMEOUT }, async () => {
    const { page, problems, context } = await openPage(browser)
    const course = courseID(`reset-${transport}`)
    await publishMany(course, 3, chapter)
    // A position the course never reached: the server answers with a reset.
    await page.evaluate(([c, t]) => {
      window.start('a', { courseId: c, transport: t, lastEventId: '999999' })
      window.subscribed = []
      window.C.a.conn.subscribe((e) => window.subscribed.push(e))
    }, [course, transport])
    await page.waitForFunction(() => window.C.a.rec.resets.length === 1)
    assert.deepEqual(await page.evaluate(() => window.C.a.rec.resets), [{ courseId: course, lastEventId: '3' }])
    assert.deepEqual(await page.evaluate(() => window.subscribed), [{ type: 'reset', courseId: course, lastEventId: '3' }])
    assert.equal(await page.evaluate(() => window.C.a.conn.lastEventId), '3')
    await publishMany(course, 2, chapter)
    await waitEvents(page, 'a', 2)
    assert.deepEqual(await deliveredIDs(page, 'a'), range(4, 5))
    assert.deepEqual(await page.evaluate(() => window.subscribed.map((e) => e.type === 'reset' ? 'reset' : e.id)), ['reset', '4', '5'])
    await closePage(context, problems)
  })
}

test('poll: paused while the page is hidden, polls at once when visible', { timeout: TEST_TIMEOUT }, async () => {
  const { page, problems, context, requests } = await openPage(browser)
  const course = courseID('hidden')
  await page.evaluate((c) => window.start('a', { courseId: c, transport: 'poll', pollIntervalMs: 100, maxPollIntervalMs: 200 }), course)
  await waitStatus(page, 'a', 'open', 'poll')
  const setVisibility = (state) => page.evaluate((s) => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => s })
    document.dispatchEvent(new Event('visibilitychange'))
  }, state)
  await setVisibility('hidden')
  await waitStatus(page, 'a', 'paused', 'poll')
  const polls = () => requests.filter((r) => r.path.endsWith('/poll')).length
  const before = polls()
  await publish(course, 'chapter-update-complete', { chapterId: 'ch-1' })
  // Absence has no signal to wait for: 1 s is five poll intervals.
  await page.waitForTimeout(1_000)
  assert.equal(polls(), before, 'no poll while hidden')
  assert.equal(await page.evaluate(() => window.C.a.rec.events.length), 0)
  await setVisibility('visible')
  await waitEvents(page, 'a', 1)
  assert.deepEqual(await deliveredIDs(page, 'a'), ['1'])
  await waitStatus(page, 'a', 'open', 'poll')
  await closePage(context, problems)
})
