// The demo page at /, served by the binary: it follows a course, its
// buttons switch the delivery, its form publishes, it shows who holds the
// shared stream, the last status changes and the poll counts, nothing logs
// an error.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { launch, openPage, publish, TEST_TIMEOUT, closePage, courseID, unexpectedProblems, BASE, LIMITED } from './lib.mjs'

let browser
before(async () => { browser = await launch() })
after(async () => { await browser?.close() })

const MODES = [
  ['sse', 'sse'], ['debounced', 'sse'], ['poll', 'poll'], ['longpoll', 'longpoll'], ['auto', 'sse'],
]

test('demo page: follow, switch delivery, publish, burst, change course', { timeout: TEST_TIMEOUT }, async () => {
  const course = 'course-123'
  const { page, problems, context, requests } = await openPage(browser, {
    path: `/?course=${course}`,
    // The stream then runs in this tab (the Web Locks leader), where the checks of its requests see it.
    init: () => { delete window.SharedWorker },
  })
  await page.setViewportSize({ width: 1280, height: 860 })
  assert.equal(await page.title(), 'coursestream demo')
  await page.waitForSelector('#status[data-state="open"][data-transport="sse"]')
  assert.equal(await page.getAttribute('#transports button[data-mode="auto"]', 'aria-pressed'), 'true')

  // An event from elsewhere (a backend) shows up with its id and type.
  const first = await publish(course, 'video-update-complete', { videoId: 'v-1', chapterId: 'ch-1' })
  await page.waitForSelector(`#log tbody tr[data-id="${first}"][data-type="video-update-complete"]`)

  for (const [mode, transport] of MODES) {
    await page.click(`#transports button[data-mode="${mode}"]`)
    assert.equal(await page.getAttribute(`#transports button[data-mode="${mode}"]`, 'aria-pressed'), 'true')
    assert.equal(await page.locator('#transports button[aria-pressed="true"]').count(), 1)
    await page.waitForSelector(`#status[data-state="open"][data-transport="${transport}"]`)
    assert.equal(await page.getAttribute('#transport', 'data-transport'), transport)
    const op = `op-demo-${mode}`
    await page.fill('#operation', op)
    await page.click('#publish')
    await page.waitForFunction((o) => document.querySelector('#publish-result').textContent.includes(`(${o}); arrived over`), op)
    const row = page.locator('#log tbody tr', { hasText: op })
    assert.equal(await row.count(), 1, `one row for ${op}`)
  }
  const modes = requests.filter((r) => r.path.startsWith('/v1/courses/') && r.method === 'GET')
  assert.ok(modes.some((r) => r.path.endsWith('/events') && r.query.includes('coalesce=500ms')), 'debounced SSE asked for coalesce')
  assert.ok(modes.some((r) => r.path.endsWith('/poll') && r.query.includes('wait=25s')), 'long-polling asked for wait')

  // Switching delivery lost and repeated nothing: ids descend by one (newest first).
  const ids = await page.$$eval('#log tbody tr[data-id]', (trs) => trs.map((tr) => Number(tr.dataset.id)))
  assert.deepEqual(ids, Array.from({ length: ids.length }, (_, i) => ids[0] - i))
  assert.equal(await page.textContent('#count'), String(ids.length))
  assert.equal(await page.textContent('#last-id'), String(ids[0]))

  // A few more kinds of event, for the eye (and the screenshot).
  await publish(course, 'upload-progress', { videoId: 'v-7', progress: 64, status: 'uploading' }, { operationId: 'op-upload-7' })
  await publish(course, 'upload-complete', { videoId: 'v-7' }, { operationId: 'op-upload-7' })
  const last = await publish(course, 'chapter-create-complete', { chapterId: 'ch-3', title: 'Wrapping up' })
  await page.waitForSelector(`#log tbody tr[data-id="${last}"]`)
  await page.waitForFunction(() => document.querySelector('#cache').textContent.includes('setQueryData ["uploads","progress","course-123","v-7"]'))
  if (process.env.CS_DEMO_PNG) {
    await page.evaluate(() => document.activeElement?.blur())
    await page.screenshot({ path: process.env.CS_DEMO_PNG, animations: 'disabled', fullPage: true })
  }

  // Burst: 25 chapter updates; the cache panel shows them batched.
  const chapterLines = () => page.$$eval('#cache li', (lis) => lis.filter((li) => li.textContent.startsWith('invalidate ["chapters","list"')).length)
  const linesBefore = await chapterLines()
  const rowsBefore = await page.locator('#log tbody tr[data-id]').count()
  await page.click('#burst')
  await page.waitForFunction((n) => document.querySelectorAll('#log tbody tr[data-id]').length >= n + 25, rowsBefore)
  await page.waitForFunction(() => /ids \d+–\d+/.test(document.querySelector('#publish-result').textContent))
  // The adapter's batch ends 100 ms after the last event (1 s after the
  // first at most): wait for its first invalidation, then past that bound.
  await page.waitForFunction(([n, p]) => [...document.querySelectorAll('#cache li')].filter((li) => li.textContent.startsWith(p)).length > n,
    [linesBefore, 'invalidate ["chapters","list"'])
  await page.waitForTimeout(1_200)
  const burstLines = (await chapterLines()) - linesBefore
  assert.ok(burstLines >= 1 && burstLines < 25, `25 events, ${burstLines} invalidations of the chapters list`)

  // Another course: the log follows it.
  await page.fill('#course', 'course-demo')
  await page.click('#course-form button[type="submit"]')
  await page.waitForSelector('#status[data-state="open"]')
  const other = await publish('course-demo', 'chapter-delete-complete', { chapterId: 'ch-9' })
  await page.waitForFunction((id) => document.querySelector('#log tbody tr[data-type="chapter-delete-complete"]')?.dataset.id === id, other)

  await closePage(context, problems)
})

/**
 * Opens the demo in a new page of context (on base) and collects its
 * console errors, warnings and page errors.
 */
async function demoTab(context, base, path) {
  const page = await context.newPage()
  page.setDefaultTimeout(15_000)
  const problems = []
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`) })
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`))
  await page.goto(base + path)
  return { page, problems }
}

/** The demo's status history, oldest first, as "state/transport/holder/reason". */
function history(page) {
  return page.$$eval('#history li:not(.note)', (lis) => lis.reverse().map((li) =>
    `${li.dataset.state}/${li.dataset.transport}/${li.dataset.sharing}/${li.dataset.reason ?? '-'}`))
}

/** The demo's poll counts: [polls, answered 304]. */
function counts(page) {
  return page.$eval('#polls', (el) => [Number(el.dataset.polls), Number(el.dataset.notModified)])
}

test('demo page: two tabs show who holds the stream (Web Locks, then the SharedWorker)', { timeout: TEST_TIMEOUT }, async () => {
  const course = courseID('demo-share')
  // Without SharedWorker: one tab holds the stream (the Web Lock) and relays it.
  const context = await browser.newContext()
  await context.addInitScript(() => { delete window.SharedWorker })
  try {
    const a = await demoTab(context, BASE, `/?course=${course}`)
    await a.page.waitForSelector('#status[data-state="open"]')
    await a.page.waitForSelector('#sharing[data-sharing="this-tab"]')
    const b = await demoTab(context, BASE, `/?course=${course}`)
    await b.page.waitForSelector('#status[data-state="open"]')
    await b.page.waitForSelector('#sharing[data-sharing="other-tab"]')
    assert.match(await b.page.textContent('#sharing'), /another tab/)
    assert.equal(await a.page.getAttribute('#sharing', 'data-sharing'), 'this-tab', 'the first tab still holds it')
    assert.ok((await history(b.page)).includes('open/sse/other-tab/-'), 'the history lists the shared stream')
    // The event reaches both tabs over the one stream.
    const id = await publish(course, 'chapter-update-complete', { chapterId: 'ch-1' })
    for (const t of [a, b]) await t.page.waitForSelector(`#log tbody tr[data-id="${id}"]`)
    // The holding tab closes: the other takes over, and its history shows the change.
    await a.page.close()
    await b.page.waitForSelector('#sharing[data-sharing="this-tab"]')
    const h = await history(b.page)
    assert.ok(h.lastIndexOf('open/sse/this-tab/-') > h.indexOf('open/sse/other-tab/-'), `history: ${h}`)
    const next = await publish(course, 'chapter-update-complete', { chapterId: 'ch-2' })
    await b.page.waitForSelector(`#log tbody tr[data-id="${next}"]`)
    assert.equal(await b.page.locator('#log tbody tr[data-id]').count(), 2, 'each event once')
    assert.deepEqual(unexpectedProblems([...a.problems, ...b.problems]), [])
  } finally {
    await context.close()
  }

  // With SharedWorker (the default): both tabs show that the worker holds it.
  const worker = await browser.newContext()
  try {
    const tabs = [await demoTab(worker, BASE, `/?course=${course}`), await demoTab(worker, BASE, `/?course=${course}`)]
    for (const t of tabs) await t.page.waitForSelector('#sharing[data-sharing="worker"]')
    for (const t of tabs) assert.match(await t.page.textContent('#sharing'), /SharedWorker/)
    for (const t of tabs) assert.deepEqual(unexpectedProblems(t.problems), [])
  } finally {
    await worker.close()
  }
})

test('demo page: a fallback to polling shows in the history, the poll and 304 counts rise, and SSE comes back', { timeout: TEST_TIMEOUT }, async () => {
  assert.ok(LIMITED, 'CS_LIMITED_URL is set')
  // Take the one SSE slot of the --max-connections 1 server: the stream is steered to polling.
  const holder = new AbortController()
  const held = await fetch(`${LIMITED}/v1/courses/slot-holder/events`, { signal: holder.signal })
  assert.equal(held.status, 200)
  const context = await browser.newContext()
  try {
    const course = courseID('demo-fallback')
    const { page, problems } = await demoTab(context, LIMITED, `/?course=${course}`)
    await page.waitForSelector('#status[data-state="open"][data-transport="poll"]')
    await page.waitForSelector('#history li[data-transport="poll"][data-reason="refused"]')
    const h = await history(page)
    const fellBack = h.findIndex((e) => e.includes('/poll/worker/refused'))
    assert.ok(fellBack > 0 && h.slice(0, fellBack).some((e) => e.includes('/sse/')), `SSE first, then the fallback: ${h}`)
    assert.match(await page.textContent('#history li.fallback'), /fallback: refused/)
    // Polls go out; with nothing new the server answers them 304.
    await page.waitForFunction(() => Number(document.querySelector('#polls').dataset.notModified) >= 1)
    const [polls, notModified] = await counts(page)
    assert.ok(polls > notModified, `${polls} polls, ${notModified} answered 304 (the first is a 200)`)
    await page.waitForFunction((n) => Number(document.querySelector('#polls').dataset.polls) > n, polls)
    assert.match(await page.textContent('#polls'), /^\d+ · \d+ answered 304$/)
    const id = await publish(course, 'chapter-update-complete', { chapterId: 'ch-1' }, { base: LIMITED })
    await page.waitForSelector(`#log tbody tr[data-id="${id}"]`)
    assert.equal(await page.textContent('#log tbody tr[data-id] td:nth-child(5)'), 'polling')

    // Free the slot: SSE is tried again (sseRetryMs, 5 s) and the history shows it back.
    holder.abort()
    await page.waitForSelector('#status[data-state="open"][data-transport="sse"]', { timeout: 20_000 })
    const back = await history(page)
    assert.equal(back.at(-1), 'open/sse/worker/-', `history: ${back}`)
    assert.ok(back.indexOf('open/poll/worker/refused') < back.length - 1)
    const next = await publish(course, 'chapter-update-complete', { chapterId: 'ch-2' }, { base: LIMITED })
    await page.waitForSelector(`#log tbody tr[data-id="${next}"]`)
    assert.equal(await page.locator('#log tbody tr[data-id]').count(), 2, 'each event once across the switches')
    assert.deepEqual(unexpectedProblems(problems, [/status of 503/]), [])
  } finally {
    holder.abort()
    await context.close()
  }
})
