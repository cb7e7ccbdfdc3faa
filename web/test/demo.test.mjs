// The demo page at /, served by the binary: it follows a course, its
// buttons switch the delivery, its form publishes, nothing logs an error.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { launch, openPage, publish, TEST_TIMEOUT, closePage } from './lib.mjs'

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
    await page.screenshot({ path: process.env.CS_DEMO_PNG, animations: 'disabled' })
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
