// Rolling restarts: a stream the server ends on purpose (its
// coursestream:drain frame, here from --max-stream-age) is a planned
// reconnection after the delay the server picked: auto does not poll or
// remember anything, and nothing is lost or repeated.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import {
  launch, openPage, courseID, publish, range, waitStatus, deliveredIDs, settle,
  unexpectedProblems, TEST_TIMEOUT, AGED,
} from './lib.mjs'

// The AGED server's --retry and --drain-jitter: a drain frame's retryMs is in [RETRY, RETRY + JITTER).
const RETRY = 200
const JITTER = 300

let browser
before(async () => { browser = await launch() })
after(async () => { await browser?.close() })

// The server ends a stream by cutting the connection right after the
// drain frame, without the last chunk of its chunked body (curl: "transfer
// closed with outstanding read data remaining"); Chromium logs this when
// the cut comes before the library has closed the EventSource on the frame.
const CUT_STREAM = /Failed to load resource: net::ERR_INCOMPLETE_CHUNKED_ENCODING/

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
  // No probe, no polling (the position poll at the start aside), nothing remembered.
  assert.ok(requests.filter((r) => r.path.endsWith('/events')).every((r) => r.type === 'eventsource'))
  assert.equal(requests.filter((r) => r.path.endsWith('/poll')).length, 1)
  assert.deepEqual(await remembered(page), [])
  await context.close()
  assert.deepEqual(unexpectedProblems(problems, [CUT_STREAM]), [])
})
