// auto: SSE first, polling when SSE does not work, remembered for a while,
// and SSE again later. Nothing is lost or repeated across the switches.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import {
  launch, openPage, courseID, publish, publishMany, range, waitStatus, waitEvents, deliveredIDs, settle, front, TEST_TIMEOUT, LIMITED, closePage,
} from './lib.mjs'

// What Chromium itself logs for an EventSource answered 503: expected in
// the 503 test, nowhere else.
const NETWORK_503 = /Failed to load resource: the server responded with a status of 503/

let browser
before(async () => { browser = await launch() })
after(async () => { await browser?.close() })

const chapter = (i) => ({ type: 'chapter-update-complete', data: { chapterId: `ch-${i}` } })

test('auto polls when the browser has no EventSource', { timeout: TEST_TIMEOUT }, async () => {
  const { page, problems, context, requests } = await openPage(browser, { init: () => { delete window.EventSource } })
  assert.equal(await page.evaluate(() => typeof window.EventSource), 'undefined')
  const course = courseID('no-es')
  await page.evaluate((c) => window.start('a', { courseId: c }), course)
  await waitStatus(page, 'a', 'open', 'poll')
  assert.equal(await page.evaluate(() => window.C.a.conn.status.reason), 'unsupported')
  await publishMany(course, 5, chapter)
  await waitEvents(page, 'a', 5)
  await settle(page, 'a', course)
  assert.deepEqual(await deliveredIDs(page, 'a'), range(1, 6))
  assert.equal(requests.filter((r) => r.path.endsWith('/events')).length, 0, 'no SSE request')
  // Nothing to remember: a missing EventSource is not a server problem.
  assert.equal(await page.evaluate(() => Object.keys(localStorage).length), 0)
  await closePage(context, problems)
})

test('auto: a 503 steering to polling falls back, is remembered, and SSE comes back later', { timeout: TEST_TIMEOUT }, async () => {
  assert.ok(LIMITED, 'CS_LIMITED_URL is set')
  // Take the one SSE slot of the --max-connections 1 server.
  const holder = new AbortController()
  const held = await fetch(`${LIMITED}/v1/courses/slot-holder/events`, { signal: holder.signal })
  assert.equal(held.status, 200)
  const refused = await fetch(`${LIMITED}/v1/courses/x/events`)
  assert.equal(refused.status, 503)
  assert.deepEqual(await refused.json(), { error: 'too many open streams: use polling', fallback: '/v1/courses/x/poll' })
  try {
    const { page, problems, context, requests } = await openPage(browser, { base: LIMITED })
    const course = courseID('steered')
    await page.evaluate((c) => window.start('a', { courseId: c, rememberFallbackMs: 4_000 }), course)
    await waitStatus(page, 'a', 'open', 'poll')
    assert.equal(await page.evaluate(() => window.C.a.conn.status.reason), 'refused')
    const sse = requests.filter((r) => r.path.endsWith('/events'))
    assert.deepEqual(sse.map((r) => r.type), ['eventsource', 'fetch'], 'one EventSource attempt, one probe of why, no retry loop')
    assert.equal(sse[1].headers.accept, 'text/event-stream')
    assert.equal(sse[1].query, sse[0].query, 'the probe asks what the EventSource asked')
    await publishMany(course, 5, chapter, { base: LIMITED })
    await waitEvents(page, 'a', 5)
    assert.deepEqual(await deliveredIDs(page, 'a'), range(1, 5))

    // Remembered for this browser: a new connection polls without trying SSE.
    const memory = await page.evaluate(() => Object.entries(localStorage).filter(([k]) => k.startsWith('coursestream:sse-fallback:')))
    assert.equal(memory.length, 1)
    assert.equal(JSON.parse(memory[0][1]).reason, 'refused')
    const before = requests.length
    await page.evaluate((c) => window.start('b', { courseId: c, rememberFallbackMs: 4_000 }), course)
    await waitStatus(page, 'b', 'open', 'poll')
    assert.equal(await page.evaluate(() => window.C.b.conn.status.reason), 'remembered')
    assert.equal(requests.slice(before).filter((r) => r.path.endsWith('/events')).length, 0)
    await page.evaluate(() => window.C.b.conn.close())

    // Free the slot: the probe (after rememberFallbackMs) gets SSE back.
    holder.abort()
    await waitStatus(page, 'a', 'open', 'sse')
    assert.equal(await page.evaluate(() => window.C.a.conn.status.reason ?? null), null)
    await publishMany(course, 3, chapter, { base: LIMITED })
    await waitEvents(page, 'a', 8)
    await settle(page, 'a', course, { base: LIMITED })
    assert.deepEqual(await deliveredIDs(page, 'a'), range(1, 9), 'nothing lost or repeated across poll -> sse')
    assert.equal(await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('coursestream:')).length), 0,
      'the memory is cleared once SSE works')
    await closePage(context, problems, [NETWORK_503])
    assert.ok(problems.some((p) => NETWORK_503.test(p)), 'the 503 did happen')
  } finally {
    holder.abort()
  }
})

/** The sse-fallback record of the page's origin (localStorage), parsed; null when there is none. */
const fallbackRecord = (page) => page.evaluate(() => {
  const m = Object.entries(localStorage).find(([k]) => k.startsWith('coursestream:sse-fallback:'))
  return m ? JSON.parse(m[1]) : null
})

test('auto: after a fallback SSE is tried again, after a wait that doubles while it fails, and comes back', { timeout: TEST_TIMEOUT }, async () => {
  const { page, problems, context } = await openPage(browser)
  // The network drops every stream request (EventSource and the fetch that
  // asks why); polls get through.
  const blocked = '**/v1/courses/*/events*'
  await page.route(blocked, (r) => r.abort())
  const course = courseID('comes-back')
  await page.evaluate((c) => window.start('a', { courseId: c, sseRetryMs: 1_000 }), course)
  await waitStatus(page, 'a', 'open', 'poll')
  let rec = await fallbackRecord(page)
  assert.equal(rec.tries, 1, 'the fallback is remembered, with its count of tries')
  assert.equal(rec.wait, 1_000, 'the first wait is sseRetryMs')
  // The try after 1 s fails at once (one failure is enough for a try):
  // back to polling, the next wait 2 s.
  await page.waitForFunction(() => window.C.a.rec.statuses.filter((s) => s.state === 'open' && s.transport === 'poll').length >= 2, null, { timeout: 15_000 })
  rec = await fallbackRecord(page)
  assert.deepEqual([rec.tries, rec.wait], [2, 2_000], 'the wait doubled')
  const sseTries = await page.evaluate(() => window.C.a.rec.statuses.filter((s) => s.state === 'connecting' && s.transport === 'sse').length)
  assert.equal(sseTries, 2, 'the first stream and one try, no retries within the try')
  await publishMany(course, 3, chapter)
  await waitEvents(page, 'a', 3)

  // The network lets streams through again: the next try gets SSE back;
  // the memory goes once an event has come through it.
  await page.unroute(blocked)
  await waitStatus(page, 'a', 'open', 'sse')
  assert.equal(await page.evaluate(() => window.C.a.conn.status.reason ?? null), null)
  await publishMany(course, 3, chapter)
  await waitEvents(page, 'a', 6)
  assert.equal(await fallbackRecord(page), null)
  await settle(page, 'a', course)
  assert.deepEqual(await deliveredIDs(page, 'a'), range(1, 7), 'nothing lost or repeated across sse -> poll -> sse')
  await closePage(context, problems, [/ERR_FAILED|net::/])
})

test('auto: a new connection after a remembered wait is over starts with a try of SSE, and the wait goes on doubling', { timeout: TEST_TIMEOUT }, async () => {
  const { page, problems, context } = await openPage(browser)
  const blocked = '**/v1/courses/*/events*'
  await page.route(blocked, (r) => r.abort())
  // What an earlier page left: 3 failed tries, the last wait over.
  await page.evaluate(() => localStorage.setItem(`coursestream:sse-fallback:${location.origin}/`,
    JSON.stringify({ until: Date.now() - 1_000, reason: 'unreachable', tries: 3, wait: 4_000 })))
  const course = courseID('lapsed')
  await page.evaluate((c) => window.start('a', { courseId: c, sseRetryMs: 1_000 }), course)
  await waitStatus(page, 'a', 'open', 'poll')
  const statuses = await page.evaluate(() => window.C.a.rec.statuses)
  assert.equal(statuses[0].transport, 'sse', 'it starts on SSE')
  assert.equal(statuses.filter((s) => s.state === 'reconnecting' && s.transport === 'sse').length, 0, 'one failure ends the try')
  const rec = await fallbackRecord(page)
  assert.deepEqual([rec.tries, rec.wait], [4, 8_000], 'the wait goes on from the remembered tries')
  await closePage(context, problems, [/ERR_FAILED|net::/])
})

test('auto falls back when the stream does not open within 2 heartbeats', { timeout: TEST_TIMEOUT }, async () => {
  const { page, problems, context } = await openPage(browser)
  // A proxy that holds the SSE response: the request never gets an answer.
  await page.route('**/v1/courses/*/events*', () => {})
  const course = courseID('silent')
  const started = Date.now()
  await page.evaluate((c) => window.start('a', { courseId: c, heartbeatMs: 500 }), course)
  await waitStatus(page, 'a', 'open', 'poll')
  assert.ok(Date.now() - started >= 1_000, 'not before 2 heartbeats')
  assert.equal(await page.evaluate(() => window.C.a.conn.status.reason), 'silent')
  await publishMany(course, 3, chapter)
  await waitEvents(page, 'a', 3)
  assert.deepEqual(await deliveredIDs(page, 'a'), range(1, 3))
  await page.evaluate(() => window.C.a.conn.close())
  await closePage(context, problems)
})

test('sse only: a refused stream is retried with backoff, never turned into polling', { timeout: TEST_TIMEOUT }, async () => {
  const { page, problems, context, requests } = await openPage(browser)
  const course = courseID('sse-retry')
  // The first four stream requests (two EventSource attempts, each with the
  // fetch that asks why) get a 502 from a "proxy"; then the server answers.
  let refusals = 0
  await page.route('**/v1/courses/*/events*', (r) => {
    if (refusals < 4) {
      refusals++
      return r.fulfill({ status: 502, contentType: 'application/json', body: '{"error":"bad gateway"}' })
    }
    return r.continue()
  })
  await page.evaluate((c) => window.start('a', { courseId: c, transport: 'sse' }), course)
  await waitStatus(page, 'a', 'open', 'sse')
  assert.equal(refusals, 4)
  const states = await page.evaluate(() => window.C.a.rec.statuses.map((s) => `${s.state}/${s.transport}/${s.errorStatus}`))
  assert.equal(states.filter((s) => s === 'reconnecting/sse/502').length, 2, states.join(' '))
  assert.ok(!states.some((s) => s.includes('/poll/')), states.join(' '))
  // The retries carried the position, known from the start.
  const sse = requests.filter((r) => r.path.endsWith('/events'))
  assert.deepEqual(sse.map((r) => r.type), ['eventsource', 'fetch', 'eventsource', 'fetch', 'eventsource'])
  assert.ok(sse.every((r) => r.query.includes('lastEventId=0')), JSON.stringify(sse.map((r) => r.query)))
  await publishMany(course, 3, chapter)
  await waitEvents(page, 'a', 3)
  assert.deepEqual(await deliveredIDs(page, 'a'), range(1, 3))
  await closePage(context, problems, [/status of 502/])
})

/**
 * A proxy on 127.0.0.1 in front of the server that buffers SSE bodies (as
 * nginx does with proxy_buffering on): the stream opens, no event gets
 * through. Everything else passes.
 */
function bufferingProxy() {
  return front({
    relay: (req, res, answer) => {
      res.flushHeaders()
      if (req.url.includes('/events') && answer.statusCode === 200) {
        answer.resume() // read and hold nothing back upstream, forward nothing
        answer.on('end', () => res.end())
      } else {
        answer.pipe(res)
      }
    },
  })
}

test('auto falls back when an open stream brings nothing that a poll sees (a buffering proxy)', { timeout: TEST_TIMEOUT }, async () => {
  const proxy = await bufferingProxy()
  try {
    const { page, problems, context } = await openPage(browser, { base: proxy.url })
    const course = courseID('buffered')
    await page.evaluate((c) => window.start('a', { courseId: c, heartbeatMs: 500, sseRetryMs: 1_000 }), course)
    await waitStatus(page, 'a', 'open', 'sse') // the headers got through
    await publishMany(course, 3, chapter)
    // The audit (after 2 silent heartbeats) sees events 1-3 that the
    // stream does not bring within its grace: polling takes over.
    await waitStatus(page, 'a', 'open', 'poll')
    assert.equal(await page.evaluate(() => window.C.a.conn.status.reason), 'stalled')
    await waitEvents(page, 'a', 3)
    // A stream that brought nothing costs 2 heartbeats to find out: the
    // first wait is 4 of them (heartbeatMs 500, over sseRetryMs 1 s).
    let rec = await fallbackRecord(page)
    assert.deepEqual([rec.tries, rec.wait], [1, 2_000])
    // The try opens (the headers get through) and brings nothing again:
    // it counts as failed, although it opened.
    await waitStatus(page, 'a', 'open', 'sse')
    await publish(course, 'chapter-update-complete', { chapterId: 'ch-4' })
    await page.waitForFunction(() => window.C.a.rec.statuses.filter((s) => s.state === 'open' && s.transport === 'poll').length >= 2, null, { timeout: 20_000 })
    rec = await fallbackRecord(page)
    assert.deepEqual([rec.tries, rec.wait], [2, 4_000])
    await settle(page, 'a', course)
    assert.deepEqual(await deliveredIDs(page, 'a'), range(1, 5))
    await closePage(context, problems)
  } finally {
    await proxy.close()
  }
})

test('sse: a quiet open stream is audited with 304s and kept', { timeout: TEST_TIMEOUT }, async () => {
  const { page, problems, context, requests } = await openPage(browser)
  const course = courseID('quiet')
  let audited = 0
  const twoAudits = new Promise((resolve) => {
    page.on('response', (r) => { if (r.url().includes('/poll?') && r.status() === 304 && ++audited === 2) resolve() })
  })
  await page.evaluate((c) => window.start('a', { courseId: c, transport: 'sse', heartbeatMs: 300 }), course)
  await waitStatus(page, 'a', 'open', 'sse')
  await twoAudits
  assert.equal(requests.filter((r) => r.path.endsWith('/events')).length, 1, 'the stream was kept')
  await publish(course, 'chapter-update-complete', { chapterId: 'ch-1' })
  await waitEvents(page, 'a', 1)
  assert.equal(await page.evaluate(() => window.C.a.conn.transport), 'sse')
  await closePage(context, problems)
})

/** The sse-fallback memory of the page's origin (localStorage). */
const memory = (page) => page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('coursestream:sse-fallback:')))

test('auto: an EventSource refused while its stream then answers 200 is retried at once, on SSE', { timeout: TEST_TIMEOUT }, async () => {
  const { page, problems, context, requests } = await openPage(browser)
  const course = courseID('refused-then-ok')
  // The first EventSource hits an instance that refuses it (a 503, no
  // fallback); the fetch that asks why reaches the server: 200.
  let refused = 0
  await page.route('**/v1/courses/*/events*', (r) => {
    if (r.request().resourceType() === 'eventsource' && refused++ === 0) {
      return r.fulfill({ status: 503, contentType: 'application/json', body: '{"error":"draining"}' })
    }
    return r.continue()
  })
  await page.evaluate((c) => window.start('a', { courseId: c, backoffBaseMs: 60_000, backoffMaxMs: 60_000 }), course)
  await waitStatus(page, 'a', 'open', 'sse')
  const sse = requests.filter((r) => r.path.endsWith('/events'))
  assert.deepEqual(sse.map((r) => r.type), ['eventsource', 'fetch', 'eventsource'])
  const statuses = await page.evaluate(() => window.C.a.rec.statuses)
  assert.ok(statuses.some((s) => s.state === 'reconnecting' && s.retryInMs === 0), JSON.stringify(statuses))
  assert.ok(statuses.every((s) => s.transport === 'sse' && s.reason === null), JSON.stringify(statuses))
  assert.deepEqual(await memory(page), [])
  await publishMany(course, 3, chapter)
  await waitEvents(page, 'a', 3)
  assert.deepEqual(await deliveredIDs(page, 'a'), range(1, 3))
  await closePage(context, problems, [NETWORK_503])
})

test('auto: a 403 on the stream closes the connection; a 401 with a token function retries SSE with a fresh token', { timeout: TEST_TIMEOUT }, async () => {
  const { page, problems, context, requests } = await openPage(browser)
  const course = courseID('refused-auth')
  // A "gateway" that checks tokens on streams only: polls pass, so falling
  // back to polling would work, and would be wrong.
  await page.route('**/v1/courses/*/events*', (r) => {
    const token = new URL(r.request().url()).searchParams.get('token')
    if (token === 'forbidden') return r.fulfill({ status: 403, contentType: 'application/json', body: '{"error":"course not allowed"}' })
    if (token !== 'fresh') return r.fulfill({ status: 401, contentType: 'application/json', body: '{"error":"token expired"}' })
    return r.continue()
  })
  await page.evaluate((c) => {
    window.start('forbidden', { courseId: c, token: 'forbidden' })
    let calls = 0
    // The position poll and the first EventSource get the stale token.
    window.start('refresh', { courseId: c, token: () => (++calls <= 2 ? 'stale' : 'fresh') })
  }, course)
  await waitStatus(page, 'forbidden', 'closed')
  await waitStatus(page, 'refresh', 'open', 'sse')

  const closed = await page.evaluate(() => window.C.forbidden.rec.statuses.at(-1))
  assert.equal(closed.errorStatus, 403)
  assert.equal(closed.transport, 'sse')
  assert.ok(!closed.errorURL.includes('token='), `no token in the error: ${closed.errorURL}`)
  const refreshed = await page.evaluate(() => window.C.refresh.rec.statuses)
  assert.ok(refreshed.some((s) => s.state === 'reconnecting' && s.errorStatus === 401), JSON.stringify(refreshed))
  assert.ok(refreshed.every((s) => s.transport === 'sse'), JSON.stringify(refreshed))
  const streams = requests.filter((r) => r.path.endsWith('/events') && r.type === 'eventsource')
  assert.deepEqual(streams.map((r) => new URL(`http://x${r.query}`).searchParams.get('token')).sort(), ['forbidden', 'fresh', 'stale'])
  assert.deepEqual(await memory(page), [])
  await publishMany(course, 2, chapter)
  await waitEvents(page, 'refresh', 2)
  assert.deepEqual(await deliveredIDs(page, 'refresh'), range(1, 2))
  await closePage(context, problems, [/status of 40[13]/])
})
