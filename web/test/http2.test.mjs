// Over HTTPS, Chromium speaks HTTP/2 to the server (ALPN): one page holds
// ten EventSources, each on its own course, multiplexed on one connection,
// and every one delivers; a fetch from the same page is answered at once
// while they are open. Over HTTP/1.1 the browser's six connections per
// host would leave four of the streams, and the fetch, waiting.
// CS_TLS_URL is a server with --tls-cert/--tls-key and a self-signed
// certificate for 127.0.0.1 (web/tls_test.go): the context accepts it.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { launch, courseID, TEST_TIMEOUT } from './lib.mjs'

const TLS = process.env.CS_TLS_URL ?? ''
const STREAMS = 10

let browser
before(async () => { browser = await launch() })
after(async () => { await browser?.close() })

test('HTTP/2: ten EventSources on one connection all deliver; a fetch answers at once', { timeout: TEST_TIMEOUT }, async () => {
  assert.match(TLS, /^https:\/\/127\.0\.0\.1:\d+$/, 'CS_TLS_URL: run these tests with go test ./web')
  const context = await browser.newContext({ ignoreHTTPSErrors: true })
  const page = await context.newPage()
  page.setDefaultTimeout(15_000)
  const problems = []
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`) })
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`))

  // What the network stack reports for each stream: protocol, connection.
  const cdp = await context.newCDPSession(page)
  await cdp.send('Network.enable')
  const responses = new Map()
  cdp.on('Network.responseReceived', ({ type, response }) => {
    if (type === 'EventSource') responses.set(response.url, { protocol: response.protocol, connectionId: response.connectionId, status: response.status })
  })

  // A blank page on the server's origin (served by Playwright, not the
  // binary): the streams and the fetch are same-origin.
  await page.route(`${TLS}/__h2.html`, (r) => r.fulfill({ contentType: 'text/html', body: '<!doctype html><meta charset="utf-8"><title>h2</title>' }))
  await page.goto(`${TLS}/__h2.html`)

  const courses = Array.from({ length: STREAMS }, (_, i) => courseID(`h2-${i}`))
  await page.evaluate((cs) => {
    window.got = {}
    window.sources = cs.map((c) => {
      const es = new EventSource(`/v1/courses/${encodeURIComponent(c)}/events`)
      window.got[c] = []
      es.addEventListener('chapter-update-complete', (e) => window.got[c].push(JSON.parse(e.data)))
      return es
    })
  }, courses)
  // Every stream opens: with six connections per host, four could not.
  await page.waitForFunction((n) => window.sources.filter((s) => s.readyState === EventSource.OPEN).length === n, STREAMS)

  // A fetch while the ten are open: answered at once, over h2.
  const fetched = await page.evaluate(async () => {
    const t0 = performance.now()
    const res = await fetch('/healthz', { cache: 'no-store' })
    const body = await res.json()
    const ms = performance.now() - t0
    const entry = performance.getEntriesByType('resource').findLast((e) => e.name.endsWith('/healthz'))
    return { status: res.status, body, ms, protocol: entry?.nextHopProtocol }
  })
  assert.equal(fetched.status, 200)
  assert.deepEqual(fetched.body, { status: 'ok' })
  assert.equal(fetched.protocol, 'h2')
  assert.ok(fetched.ms < 500, `the fetch took ${fetched.ms.toFixed(0)} ms with ${STREAMS} streams open`)

  // One event per course, published from the page (same origin): each
  // stream delivers its own course's event, and only that.
  await page.evaluate(async (cs) => {
    for (const [i, c] of cs.entries()) {
      const res = await fetch(`/v1/courses/${encodeURIComponent(c)}/events`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ type: 'chapter-update-complete', data: { n: i } }),
      })
      if (res.status !== 201) throw new Error(`publish ${c}: ${res.status}`)
    }
  }, courses)
  await page.waitForFunction((cs) => cs.every((c) => window.got[c].length === 1), courses)
  const got = await page.evaluate((cs) => cs.map((c) => window.got[c].map((e) => [e.id, e.courseId, e.data.n])), courses)
  assert.deepEqual(got, courses.map((c, i) => [['1', c, i]]))

  // All ten streams were HTTP/2 responses, on one connection.
  const streams = courses.map((c) => responses.get(`${TLS}/v1/courses/${encodeURIComponent(c)}/events`))
  assert.ok(streams.every((r) => r && r.protocol === 'h2' && r.status === 200), JSON.stringify(streams))
  assert.equal(new Set(streams.map((r) => r.connectionId)).size, 1, JSON.stringify(streams))

  await page.evaluate(() => window.sources.forEach((s) => s.close()))
  await context.close()
  assert.deepEqual(problems, [])
})
