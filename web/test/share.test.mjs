// The shared stream: the connect()s of a page ride one multi-course stream
// (or one multi-course poll), and the tabs of one origin share one, held by
// the SharedWorker or, without it, by the tab that holds a Web Lock. Every
// test checks that each connection gets each event of its course once, in
// id order. The multi-course SSE endpoint is needed for the SSE cases; they
// are skipped on a server without it (the poll cases need the multi poll).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { BASE, TEST_TIMEOUT, launch, courseID, publish, range, front } from './lib.mjs'

const JWT = process.env.CS_JWT_URL ?? ''
const JWT_KEY = process.env.CS_JWT_KEY ?? ''

let browser
let multiSSE = false
let multiPoll = false
before(async () => {
  browser = await launch()
  multiSSE = await answers(`${BASE}/v1/events?courses=probe-a,probe-b&dispatch=message`)
  multiPoll = await answers(`${BASE}/v1/poll?courses=probe-a,probe-b`)
  // The binary under test has both: a server without them is a failure
  // here, never a skip.
  assert.ok(multiSSE && multiPoll, `the server answers the multi-course stream ${multiSSE}, poll ${multiPoll}`)
  assert.ok(JWT && JWT_KEY, 'CS_JWT_URL and CS_JWT_KEY: the server with --jwt-key (web/browser_test.go)')
})
after(() => browser?.close())

/** Whether the server answers url with a 200 (the endpoint exists). */
async function answers(url) {
  const ac = new AbortController()
  try {
    const res = await fetch(url, { signal: ac.signal })
    return res.status === 200
  } catch {
    return false
  } finally {
    ac.abort()
  }
}

/** The transport the shared cases use: SSE where the server has the multi stream, else polling. */
function transport() {
  return multiSSE ? 'sse' : 'poll'
}

// A page whose connections record what they get, by name (share on).
const PAGE = `<!doctype html><meta charset="utf-8"><title>share</title>
<script type="module">
import * as cs from '/coursestream.js'
const C = {}
function open(name, opts) {
  const rec = { events: [], sharing: [] }
  const conn = cs.connect({ heartbeatMs: 1000, pollIntervalMs: 150, maxPollIntervalMs: 600, backoffBaseMs: 200, backoffMaxMs: 2000,
    ...opts, onEvent: (e) => rec.events.push(e.id + ':' + e.type),
    onStatus: (s) => rec.sharing.push((s.sharing ?? '-') + '/' + s.state) })
  C[name] = { conn, rec }
}
Object.assign(window, { cs, C, open })
window.ready = true
</script>`

/** A page of context on the server's origin, serving PAGE. */
async function tab(context, base = BASE) {
  const page = await context.newPage()
  page.setDefaultTimeout(15_000)
  const problems = []
  page.on('pageerror', (e) => problems.push(e.message))
  await page.route(`${base}/__share.html`, (r) => r.fulfill({ contentType: 'text/html', body: PAGE }))
  await page.goto(`${base}/__share.html`)
  await page.waitForFunction(() => window.ready === true)
  return { page, problems }
}

/** Opens a connection per course on page. */
function openAll(page, courses, opts = {}) {
  return page.evaluate(([cs, o]) => { for (const c of cs) window.open(c, { courseId: c, ...o }) }, [courses, opts])
}

/** Waits until every connection of page is open. */
function allOpen(page, courses) {
  return page.waitForFunction((cs) => cs.every((c) => window.C[c]?.conn.status.state === 'open'), courses)
}

/** The ids each course's connection got, in order. */
function got(page, courses) {
  return page.evaluate((cs) => Object.fromEntries(cs.map((c) => [c, window.C[c].rec.events.map((e) => e.split(':')[0])])), courses)
}

/** Waits until course's connection on page has id. */
function waitID(page, course, id) {
  return page.waitForFunction(([c, want]) => window.C[c].rec.events.some((e) => e.split(':')[0] === want), [course, id])
}

/** The server's open SSE streams (/metrics): single- and multi-course. */
async function sseStreams(base = BASE) {
  const text = await (await fetch(`${base}/metrics`)).text()
  let n = 0
  for (const m of text.matchAll(/^coursestream_connections\{transport="sse(?:-multi)?"\} (\d+)/mg)) n += Number(m[1])
  return n
}

async function waitStreams(n, base = BASE) {
  const until = Date.now() + 10_000
  for (;;) {
    const now = await sseStreams(base)
    if (now === n) return
    if (Date.now() > until) assert.fail(`${now} SSE streams open, want ${n}`)
    await new Promise((r) => setTimeout(r, 100)) // polling /metrics: the server has no signal for it
  }
}

test('one page, 10 courses over HTTP/1.1: one stream, every event, and the page can still fetch', { timeout: TEST_TIMEOUT }, async (t) => {
  const context = await browser.newContext()
  try {
    const { page, problems } = await tab(context)
    const courses = Array.from({ length: 10 }, (_, i) => courseID(`ten${i}`))
    const before = await sseStreams()
    await openAll(page, courses, { transport: transport() })
    await allOpen(page, courses)
    await waitStreams(before + 1)
    for (let round = 0; round < 3; round++) for (const c of courses) await publish(c, 'chapter-update-complete', { round })
    for (const c of courses) await waitID(page, c, '3')
    assert.deepEqual(await got(page, courses), Object.fromEntries(courses.map((c) => [c, range(1, 3)])))
    const ms = await page.evaluate(async () => { const t0 = performance.now(); await fetch('/healthz'); return performance.now() - t0 })
    assert.ok(ms < 1000, `a fetch took ${ms} ms while 10 courses were open`)
    assert.deepEqual(problems, [])
  } finally {
    await context.close()
  }
})

for (const path of ['SharedWorker', 'Web Locks']) {
  test(`three tabs share one stream (${path}); closing or reloading a tab loses and repeats nothing`, { timeout: TEST_TIMEOUT }, async (t) => {
    const context = await browser.newContext()
    if (path === 'Web Locks') await context.addInitScript(() => { delete window.SharedWorker })
    try {
      const [a, b, c] = [courseID('ta'), courseID('tb'), courseID('tc')]
      const plan = [[a, b], [b, c], [a, c]]
      const tabs = []
      const before = await sseStreams()
      for (const courses of plan) {
        const tb = await tab(context)
        await openAll(tb.page, courses)
        await allOpen(tb.page, courses)
        tabs.push(tb)
      }
      await waitStreams(before + 1)
      const holder = await Promise.all(tabs.map((x) => x.page.evaluate((cs) => window.C[cs[0]].conn.status.sharing, plan[tabs.indexOf(x)])))
      const want = path === 'SharedWorker' ? ['worker', 'worker', 'worker'] : null
      if (want) assert.deepEqual(holder, want)
      else assert.deepEqual(holder.filter((h) => h === 'this-tab').length, 1, `holders: ${holder}`)
      // Close the holding tab (or the first, with the worker) while publishing.
      const gone = want ? 0 : holder.indexOf('this-tab')
      const publishing = (async () => { for (let i = 0; i < 6; i++) for (const x of [a, b, c]) await publish(x, 'chapter-update-complete', { i }) })()
      await new Promise((r) => setTimeout(r, 150)) // the close lands among the publishes, wherever
      await tabs[gone].page.close()
      await publishing
      const left = tabs.map((x, i) => ({ ...x, courses: plan[i] })).filter((_, i) => i !== gone)
      for (const x of left) for (const cid of x.courses) await waitID(x.page, cid, '6')
      for (const x of left) assert.deepEqual(await got(x.page, x.courses), Object.fromEntries(x.courses.map((cid) => [cid, range(1, 6)])))
      // Reload one: it resumes from its saved position, repeats nothing, misses nothing.
      const r = left[0]
      await r.page.reload()
      await r.page.waitForFunction(() => window.ready === true)
      await openAll(r.page, r.courses)
      await allOpen(r.page, r.courses)
      for (const cid of r.courses) await publish(cid, 'video-update-complete', {})
      for (const cid of r.courses) await waitID(r.page, cid, '7')
      assert.deepEqual(await got(r.page, r.courses), Object.fromEntries(r.courses.map((cid) => [cid, ['7']])))
      await waitStreams(before + 1)
    } finally {
      await context.close()
    }
  })
}

test('a course added and one closed while events flow: no loss, no duplicate', { timeout: TEST_TIMEOUT }, async (t) => {
  const context = await browser.newContext()
  try {
    const { page, problems } = await tab(context)
    const [a, b, c] = [courseID('aa'), courseID('ab'), courseID('ac')]
    await openAll(page, [a, b], { transport: transport() })
    await allOpen(page, [a, b])
    const publishing = (async () => { for (let i = 0; i < 8; i++) for (const x of [a, b, c]) await publish(x, 'upload-progress', { i }) })()
    await waitID(page, a, '2')
    await openAll(page, [c], { transport: transport(), lastEventId: 0 })
    await waitID(page, a, '4')
    await page.evaluate((x) => window.C[x].conn.close(), b)
    await publishing
    await waitID(page, a, '8')
    await waitID(page, c, '8')
    const g = await got(page, [a, b, c])
    assert.deepEqual(g[a], range(1, 8))
    assert.deepEqual(g[c], range(1, 8))
    assert.deepEqual(g[b], range(1, g[b].length))
    assert.deepEqual(problems, [])
  } finally {
    await context.close()
  }
})

test('an event of a type outside the seven reaches onEvent and awaitOperation over SSE', { timeout: TEST_TIMEOUT }, async (t) => {
  const context = await browser.newContext()
  try {
    const { page } = await tab(context)
    const [a, b] = [courseID('ua'), courseID('ub')]
    await openAll(page, [a, b], { transport: 'sse' })
    await allOpen(page, [a, b])
    const waiting = page.evaluate((x) => window.C[x].conn.awaitOperation('op-quiz', 10_000).then((e) => e.type), a)
    await publish(a, 'quiz-started', { q: 1 }, { operationId: 'op-quiz' })
    assert.equal(await waiting, 'quiz-started')
    assert.deepEqual(await page.evaluate((x) => window.C[x].rec.events, a), ['1:quiz-started'])
  } finally {
    await context.close()
  }
})

/**
 * A front before the server that sees every multi-course stream open and
 * close: open holds those open now ({courses: sorted ids, cursor: the
 * lastEventId it resumes from, as a Map}); until(pred) waits for an open
 * or close after which pred holds.
 */
async function streamWatch() {
  const open = new Set()
  const waiters = []
  const changed = () => { for (const w of waiters.splice(0)) w() }
  const f = await front({
    intercept: (req, res) => {
      const u = new URL(req.url, 'http://front')
      if (u.pathname !== '/v1/events') return false
      const cursor = new Map((u.searchParams.get('lastEventId') ?? '').split(',').filter(Boolean)
        .map((e) => [e.slice(0, e.lastIndexOf(':')), e.slice(e.lastIndexOf(':') + 1)]))
      const s = { courses: (u.searchParams.get('courses') ?? '').split(',').sort(), cursor }
      open.add(s)
      changed()
      res.on('close', () => { open.delete(s); changed() })
      return false
    },
  })
  return {
    url: f.url,
    close: f.close,
    get open() { return [...open] },
    async until(pred, what) {
      const deadline = Date.now() + 15_000
      while (!pred([...open])) {
        const left = deadline - Date.now()
        if (left <= 0) assert.fail(`${what}; open streams: ${JSON.stringify([...open].map((x) => x.courses))}`)
        await new Promise((r) => { waiters.push(r); setTimeout(r, left).unref() })
      }
    },
  }
}

/**
 * Two tabs of context through watch, over SSE: the first (it starts the
 * worker, or leads) with courses a and b, the second with b and c; once
 * they ride one stream of the three.
 */
async function twoTabs(context, watch, [a, b, c]) {
  const first = await tab(context, watch.url)
  await openAll(first.page, [a, b], { transport: 'sse' })
  await allOpen(first.page, [a, b])
  const second = await tab(context, watch.url)
  await openAll(second.page, [b, c], { transport: 'sse' })
  await allOpen(second.page, [b, c])
  await watch.until((s) => oneStreamOf(s, [a, b, c]), 'one stream of the three courses')
  return [first, second]
}

/** Whether streams is one stream, of exactly courses. */
function oneStreamOf(streams, courses) {
  return streams.length === 1 && streams[0].courses.join(',') === [...courses].sort().join(',')
}

for (const path of ['SharedWorker', 'Web Locks']) {
  test(`a tab that crashes (${path}): its courses leave the stream, the other tab misses and repeats nothing`, { timeout: TEST_TIMEOUT }, async () => {
    const watch = await streamWatch()
    const context = await browser.newContext()
    if (path === 'Web Locks') await context.addInitScript(() => { delete window.SharedWorker })
    try {
      const [a, b, c] = [courseID('ka'), courseID('kb'), courseID('kc')] // c: the crashing tab's alone
      const [keep, doomed] = await twoTabs(context, watch, [a, b, c])
      const holders = [await keep.page.evaluate((x) => window.C[x].conn.status.sharing, a),
        await doomed.page.evaluate((x) => window.C[x].conn.status.sharing, c)]
      assert.deepEqual(holders, path === 'SharedWorker' ? ['worker', 'worker'] : ['this-tab', 'other-tab'])
      for (let i = 0; i < 2; i++) for (const x of [a, b, c]) await publish(x, 'chapter-update-complete', { i })
      await waitID(keep.page, a, '2')
      await waitID(keep.page, b, '2')
      await waitID(doomed.page, c, '2')

      // The tab dies without a pagehide: its renderer crashes.
      const crashed = new Promise((resolve) => doomed.page.once('crash', resolve))
      const cdp = await context.newCDPSession(doomed.page)
      cdp.send('Page.crash').catch(() => {}) // never answered: the target is gone
      await crashed
      await watch.until((s) => oneStreamOf(s, [a, b]), 'the stream re-opened without the crashed tab\'s course')
      const [reopened] = watch.open
      assert.deepEqual([...reopened.cursor], [[a, '2'], [b, '2']].sort((x, y) => (x[0] < y[0] ? -1 : 1)), 'from the cursor: nothing again, nothing skipped')

      for (let i = 2; i < 4; i++) for (const x of [a, b, c]) await publish(x, 'video-update-complete', { i })
      await waitID(keep.page, a, '4')
      await waitID(keep.page, b, '4')
      // A sentinel on each course: what came before it has arrived.
      for (const x of [a, b]) await publish(x, 'upload-complete', { sentinel: true })
      await waitID(keep.page, a, '5')
      await waitID(keep.page, b, '5')
      assert.deepEqual(await got(keep.page, [a, b]), { [a]: range(1, 5), [b]: range(1, 5) })
      assert.ok(oneStreamOf(watch.open, [a, b]), 'still one stream, of the survivor\'s courses')
      assert.deepEqual(keep.problems, [])
    } finally {
      await context.close()
      await watch.close()
    }
  })
}

// A tab frozen by the browser (the Page Lifecycle's freeze: a hidden tab
// it may later discard without another event) leaves the shared stream,
// and joins it again on resume from its connections' positions. With the
// SharedWorker, the frozen tab's courses leave the stream; with Web Locks,
// the frozen tab led: it lets the lock go and the other tab takes over.
// The freeze and resume events are dispatched by the test: headless
// Chromium's Page.setWebLifecycleState answers but freezes nothing (its
// timers kept running, no freeze event fired), so the page goes on running
// while the library treats it as frozen.
for (const path of ['SharedWorker', 'Web Locks']) {
  test(`a tab frozen and resumed (${path}): it leaves the stream and comes back; nothing lost, nothing twice`, { timeout: TEST_TIMEOUT }, async () => {
    const watch = await streamWatch()
    const context = await browser.newContext()
    if (path === 'Web Locks') await context.addInitScript(() => { delete window.SharedWorker })
    try {
      const [a, b, c] = [courseID('fa'), courseID('fb'), courseID('fc')]
      const [keep, other] = await twoTabs(context, watch, [a, b, c])
      for (let i = 0; i < 2; i++) for (const x of [a, b, c]) await publish(x, 'chapter-update-complete', { i })
      for (const [p, cs] of [[keep.page, [a, b]], [other.page, [b, c]]]) for (const x of cs) await waitID(p, x, '2')

      // SharedWorker: freeze the tab of c; Web Locks: freeze the leader.
      const [frozen, awake, awakeCourses] = path === 'SharedWorker' ? [other, keep, [a, b]] : [keep, other, [b, c]]
      const t0 = Date.now()
      await frozen.page.evaluate(() => document.dispatchEvent(new Event('freeze')))
      await watch.until((s) => oneStreamOf(s, awakeCourses), 'the stream re-opened without the frozen tab\'s courses')
      const tookMs = Date.now() - t0
      assert.ok(tookMs < 5000, `the stream left the frozen tab after ${tookMs} ms`)
      for (let i = 2; i < 4; i++) for (const x of [a, b, c]) await publish(x, 'video-update-complete', { i })
      for (const x of awakeCourses) await waitID(awake.page, x, '4')

      await frozen.page.evaluate(() => document.dispatchEvent(new Event('resume')))
      await watch.until((s) => oneStreamOf(s, [a, b, c]), 'the resumed tab\'s courses back on the stream')
      const frozenCourses = path === 'SharedWorker' ? [b, c] : [a, b]
      const [back] = watch.open
      for (const x of frozenCourses.filter((x) => !awakeCourses.includes(x))) {
        assert.equal(back.cursor.get(x), '2', `the resumed tab's ${x} from its position`)
      }
      for (const x of [a, b, c]) await publish(x, 'upload-complete', { sentinel: true })
      for (const [p, cs] of [[keep.page, [a, b]], [other.page, [b, c]]]) for (const x of cs) await waitID(p, x, '5')
      assert.deepEqual(await got(keep.page, [a, b]), { [a]: range(1, 5), [b]: range(1, 5) })
      assert.deepEqual(await got(other.page, [b, c]), { [b]: range(1, 5), [c]: range(1, 5) })
      assert.deepEqual([...keep.problems, ...other.problems], [])
    } finally {
      await context.close()
      await watch.close()
    }
  })
}

test('the SharedWorker dies: the tabs start another from their positions; nothing lost, nothing twice', { timeout: TEST_TIMEOUT }, async () => {
  const watch = await streamWatch()
  const context = await browser.newContext()
  const cdp = await browser.newBrowserCDPSession()
  try {
    const [a, b, c] = [courseID('wa'), courseID('wb'), courseID('wc')]
    const [one, two] = await twoTabs(context, watch, [a, b, c])
    for (let i = 0; i < 2; i++) for (const x of [a, b, c]) await publish(x, 'chapter-update-complete', { i })
    for (const [p, cs] of [[one.page, [a, b]], [two.page, [b, c]]]) for (const x of cs) await waitID(p, x, '2')
    const workers = async () => (await cdp.send('Target.getTargets')).targetInfos.filter((t) => t.type === 'shared_worker' && t.url.startsWith(watch.url))
    const [worker] = await workers()
    assert.ok(worker, 'a SharedWorker runs the stream')

    // The browser ends the worker (as it would a crashed one): its stream closes, its lock is let go.
    await cdp.send('Target.closeTarget', { targetId: worker.targetId })
    await watch.until((s) => s.length === 0, 'the dead worker\'s stream closed')
    await watch.until((s) => oneStreamOf(s, [a, b, c]), 'a stream of the three courses again, from a new worker')
    const [again] = await workers()
    assert.ok(again && again.targetId !== worker.targetId, 'a new SharedWorker holds it')
    assert.deepEqual([...watch.open[0].cursor], [[a, '2'], [b, '2'], [c, '2']].sort((x, y) => (x[0] < y[0] ? -1 : 1)), 'from the tabs\' positions')
    for (let i = 2; i < 4; i++) for (const x of [a, b, c]) await publish(x, 'video-update-complete', { i })
    for (const x of [a, b, c]) await publish(x, 'upload-complete', { sentinel: true })
    for (const [p, cs] of [[one.page, [a, b]], [two.page, [b, c]]]) for (const x of cs) await waitID(p, x, '5')
    assert.deepEqual(await got(one.page, [a, b]), { [a]: range(1, 5), [b]: range(1, 5) })
    assert.deepEqual(await got(two.page, [b, c]), { [b]: range(1, 5), [c]: range(1, 5) })
    assert.equal(await two.page.evaluate((x) => window.C[x].conn.status.sharing, c), 'worker')
    assert.deepEqual([...one.problems, ...two.problems], [])
  } finally {
    await cdp.detach().catch(() => {})
    await context.close()
    await watch.close()
  }
})

/** An HS256 token for every course, expiring in secs. */
function mint(secs) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url')
  const head = b64({ alg: 'HS256', typ: 'JWT' })
  const body = b64({ courses: '*', exp: Math.floor(Date.now() / 1000) + secs })
  const sig = createHmac('sha256', JWT_KEY).update(`${head}.${body}`).digest('base64url')
  return `${head}.${body}.${sig}`
}

test('a token that expires is renewed through the token function: nothing is lost', { timeout: TEST_TIMEOUT }, async (t) => {
  const context = await browser.newContext()
  try {
    const { page } = await tab(context, JWT)
    const expiredBefore = await closedExpired()
    await page.exposeFunction('mintToken', () => mint(4))
    const course = courseID('tok')
    await page.evaluate((c) => {
      window.asked = 0
      window.open(c, { courseId: c, transport: 'sse', share: false, token: () => { window.asked++; return window.mintToken() } })
    }, course)
    await allOpen(page, [course])
    const publishing = []
    for (let i = 0; i < 14; i++) {
      publishing.push(await publishWith(course, i))
      await new Promise((r) => setTimeout(r, 500)) // spread over the token's life and the next's
    }
    await waitID(page, course, '14')
    assert.deepEqual(await got(page, [course]), { [course]: range(1, 14) })
    assert.ok(await page.evaluate(() => window.asked) >= 2, 'the token function was asked again')
    // Renewed ahead of exp: the server never had to end a stream at its
    // token's expiry (its drain at exp would also lose nothing, but would
    // mean the renewal did not fire).
    assert.equal(await closedExpired(), expiredBefore, 'streams the server ended at their token\'s expiry')
  } finally {
    await context.close()
  }
})

/** The JWT server's streams ended by their token's expiry (/metrics). */
async function closedExpired() {
  const text = await (await fetch(`${JWT}/metrics`)).text()
  const m = text.match(/^coursestream_streams_closed_total\{reason="expired"\} (\d+)/m)
  return m ? Number(m[1]) : 0
}

async function publishWith(course, i) {
  const res = await fetch(`${JWT}/v1/courses/${encodeURIComponent(course)}/events`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${mintPublish()}` },
    body: JSON.stringify({ type: 'chapter-update-complete', data: { i } }),
  })
  const text = await res.text()
  assert.equal(res.status, 201, text)
  return JSON.parse(text).id
}

function mintPublish() {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url')
  const head = b64({ alg: 'HS256', typ: 'JWT' })
  const body = b64({ courses: '*', publish: '*', exp: Math.floor(Date.now() / 1000) + 60 })
  return `${head}.${body}.${createHmac('sha256', JWT_KEY).update(`${head}.${body}`).digest('base64url')}`
}
