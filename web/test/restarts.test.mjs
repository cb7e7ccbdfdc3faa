// Rolling restarts: a stream the server ends on purpose (its
// coursestream:drain frame, here from --max-stream-age) is a planned
// reconnection after the delay the server picked; a 503 without fallback
// (an instance that is draining) is retried on SSE after Retry-After. In
// neither case does auto poll or remember anything, and nothing is lost
// or repeated.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import {
  launch, openPage, courseID, publish, publishMany, range, waitStatus, waitEvents, deliveredIDs, settle, front, TEST_TIMEOUT, AGED, closePage,
} from './lib.mjs'

// The AGED server's --retry and --drain-jitter: a drain frame's retryMs is in [RETRY, RETRY + JITTER).
const RETRY = 200
const JITTER = 300

let browser
before(async () => { browser = await launch() })
after(async () => { await browser?.close() })

const chapter = (i) => ({ type: 'chapter-update-complete', data: { chapterId: `ch-${i}` } })

/** What the page keeps in localStorage (the library: only its memory of a fallback). */
const remembered = (page) => page.evaluate(() => Object.keys(localStorage))

/** Records every EventSource the page creates: its URL and when (performance.now()). */
function recordEventSources() {
  const Native = window.EventSource
  window.opened = []
  window.EventSource = class extends Native {
    constructor(url, init) {
      super(url, init)
      window.opened.push({ url: String(url), at: performance.now() })
    }
  }
}

test('auto: streams ended by the server are reconnected after its retryMs, on SSE, losing and repeating nothing', { timeout: TEST_TIMEOUT }, async () => {
  assert.ok(AGED, 'CS_AGED_URL is set')
  const { page, problems, context, requests } = await openPage(browser, { base: AGED, init: recordEventSources })
  const course = courseID('drained')
  await page.evaluate((c) => window.start('a', { courseId: c }), course)
  await waitStatus(page, 'a', 'open', 'sse')

  // Publish all along while the server ends 3 streams (each lives
  // 1.2-1.5 s): some events come while the page is disconnected.
  const cycles = 3
  const deadline = Date.now() + 30_000
  const stored = [] // when each publish was answered (Date.now()): the event was in the history then
  while ((await page.evaluate(() => window.opened.length)) < cycles + 1) {
    assert.ok(Date.now() < deadline, `no ${cycles} reconnections within 30s`)
    await publish(course, 'chapter-update-complete', { chapterId: `ch-${stored.length}` }, { base: AGED })
    stored.push(Date.now())
    await new Promise((resolve) => setTimeout(resolve, 25)) // pace the publishing, not a synchronisation
  }
  const last = await settle(page, 'a', course, { base: AGED })
  assert.ok(Number(last) > 20, `published during the cycles (${last})`)
  assert.deepEqual(await deliveredIDs(page, 'a'), range(1, Number(last)), 'each event once, in order')

  const { statuses, opened, origin } = await page.evaluate(() => ({
    statuses: window.C.a.rec.statuses, opened: window.opened, origin: performance.timeOrigin,
  }))
  assert.ok(statuses.every((s) => s.transport === 'sse' && s.reason === null && s.errorStatus === null), JSON.stringify(statuses))
  const planned = statuses.filter((s) => s.state === 'reconnecting' && s.retryInMs !== null)
  assert.ok(planned.length >= cycles, JSON.stringify(statuses))
  let whileAway = 0 // events stored between a drain frame and the next EventSource: resumed, not streamed
  for (const s of planned) {
    assert.equal(s.planned, true, JSON.stringify(s))
    assert.ok(s.retryInMs >= RETRY && s.retryInMs <= RETRY + JITTER, `retryMs from the drain frame: ${s.retryInMs}`)
    // The next EventSource comes after that delay (not the browser's
    // own retry, not the library's backoff), give or take the timers.
    const next = opened.find((o) => o.at > s.at)
    assert.ok(next, 'reconnected')
    const gap = next.at - s.at
    assert.ok(gap >= s.retryInMs - 5 && gap <= s.retryInMs + 2_000, `reconnected after ${gap.toFixed(0)}ms, asked ${s.retryInMs}ms`)
    whileAway += stored.filter((t) => t > origin + s.at && t < origin + next.at).length
  }
  assert.ok(whileAway >= cycles, `events published while disconnected: ${whileAway}`)
  // Each reconnection resumed from the position the page had.
  const resumed = opened.slice(1).map((o) => Number(new URL(o.url).searchParams.get('lastEventId')))
  assert.ok(resumed.every((id, i) => id > 0 && (i === 0 || id >= resumed[i - 1])), JSON.stringify(resumed))
  // No probe of a refusal, never polling (the statuses above), nothing remembered.
  assert.ok(requests.filter((r) => r.path.endsWith('/events')).every((r) => r.type === 'eventsource'))
  assert.deepEqual(await remembered(page), [])
  await closePage(context, problems)
})

/**
 * A front on 127.0.0.1 like a load balancer during a rolling restart: the
 * first `refusals` requests for a stream land on an instance that is
 * draining (503 without fallback, Retry-After: 1, as the server answers);
 * everything else reaches the server. arrivals holds when each stream
 * request came (Date.now()) and what it got.
 */
async function drainingFront(refusals) {
  const arrivals = []
  const f = await front({
    intercept: (req, res) => {
      if (!req.url.includes('/events')) return false
      const refused = arrivals.filter((a) => a.status === 503).length < refusals
      arrivals.push({ at: Date.now(), status: refused ? 503 : 200, accept: req.headers.accept })
      if (!refused) return false
      res.writeHead(503, { 'Content-Type': 'application/json', 'Retry-After': '1' })
      res.end('{"error":"the server is shutting down: reconnect"}\n')
      return true
    },
  })
  return { ...f, arrivals }
}

test('auto: a 503 without fallback (a draining instance) is retried on SSE after Retry-After, never polled or remembered', { timeout: TEST_TIMEOUT }, async () => {
  // Two refused EventSources, each followed by the fetch that asks why.
  const draining = await drainingFront(4)
  try {
    const { page, problems, context, requests } = await openPage(browser, { base: draining.url })
    const course = courseID('draining-503')
    await page.evaluate((c) => window.start('a', { courseId: c }), course)
    await waitStatus(page, 'a', 'open', 'sse')
    assert.deepEqual(draining.arrivals.map((a) => a.status), [503, 503, 503, 503, 200])
    const types = requests.filter((r) => r.path.endsWith('/events')).map((r) => r.type)
    assert.deepEqual(types, ['eventsource', 'fetch', 'eventsource', 'fetch', 'eventsource'])
    // Retry-After: 1 was honoured: the next EventSource came at least 1 s
    // after the answer that gave it.
    for (const i of [1, 3]) {
      const gap = draining.arrivals[i + 1].at - draining.arrivals[i].at
      assert.ok(gap >= 950, `EventSource ${i + 1} came ${gap}ms after the 503 with Retry-After: 1`)
    }
    const statuses = await page.evaluate(() => window.C.a.rec.statuses)
    assert.ok(statuses.every((s) => s.transport === 'sse' && s.reason === null && !s.planned), JSON.stringify(statuses))
    const waits = statuses.filter((s) => s.state === 'reconnecting' && s.errorStatus === 503)
    assert.equal(waits.length, 2, JSON.stringify(statuses))
    assert.ok(waits.every((s) => s.retryInMs >= 1_000), JSON.stringify(waits))
    assert.deepEqual(await remembered(page), [], 'nothing remembered')

    await publishMany(course, 4, chapter)
    await waitEvents(page, 'a', 4)
    await settle(page, 'a', course)
    assert.deepEqual(await deliveredIDs(page, 'a'), range(1, 5))
    assert.ok(await page.evaluate(() => window.C.a.rec.statuses.every((s) => s.transport === 'sse')), 'still never polled')
    assert.deepEqual(await remembered(page), [])
    await closePage(context, problems, [/status of 503/])
  } finally {
    await draining.close()
  }
})
