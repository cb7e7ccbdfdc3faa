// Helpers of the browser tests. They run under node:test, started by
// web/browser_test.go (go test ./web), which builds the real binary, starts
// it on free loopback ports and passes:
//   CS_BASE_URL     a server with --heartbeat 1s --retry 500ms
//   CS_LIMITED_URL  the same with --max-connections 1 (the 503 fallback)
//   CS_AGED_URL     --heartbeat 1s --retry 200ms --max-stream-age 1500ms
//                   --drain-jitter 300ms (streams end on purpose, often)
//   CS_REACT_URL    like CS_BASE_URL, for react.test.mjs alone (its /metrics)
//   CHROMIUM        Debian's Chromium (default /usr/bin/chromium)
//   CS_DEMO_PNG     optional: where the demo test saves its screenshot
import { chromium } from 'playwright-core'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import path from 'node:path'
import http from 'node:http'

export const BASE = process.env.CS_BASE_URL ?? ''
export const LIMITED = process.env.CS_LIMITED_URL ?? ''
export const AGED = process.env.CS_AGED_URL ?? ''
if (!BASE.startsWith('http://127.0.0.1:')) {
  throw new Error('CS_BASE_URL must be a loopback server: run these tests with go test ./web')
}

/** One test's time limit (ms); every wait below has its own, shorter one. */
export const TEST_TIMEOUT = 60_000
const WAIT = 15_000

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--no-first-run', '--disable-sync',
    ],
    timeout: 30_000,
  })
}

let seq = 0
/** A course id no other test uses. */
export function courseID(name) {
  return `${name}-${process.pid}-${Date.now().toString(36)}-${seq++}`
}

/**
 * Publishes one event over HTTP and returns its id.
 * @param {string} course
 * @param {string} type
 * @param {unknown} data
 * @param {{operationId?: string, base?: string}} [opts]
 */
export async function publish(course, type, data, opts = {}) {
  const res = await fetch(`${opts.base ?? BASE}/v1/courses/${encodeURIComponent(course)}/events`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ type, data, ...(opts.operationId ? { operationId: opts.operationId } : {}) }),
    signal: AbortSignal.timeout(WAIT),
  })
  const body = await res.json()
  if (res.status !== 201) throw new Error(`publish: ${res.status} ${JSON.stringify(body)}`)
  return body.id
}

/** Publishes n events one after the other (so ids follow n) and returns their ids. */
export async function publishMany(course, n, make, opts = {}) {
  const ids = []
  for (let i = 0; i < n; i++) {
    const { type, data, operationId } = make(i)
    ids.push(await publish(course, type, data, { ...opts, operationId }))
  }
  return ids
}

/** ids from..to as strings. */
export function range(from, to) {
  return Array.from({ length: to - from + 1 }, (_, i) => String(from + i))
}

// The page the library tests run in: served by Playwright on the server's
// own origin (so the library and the API are same-origin, as in a real
// page), never by the binary. start(name, options) connects and records.
const HARNESS = `<!doctype html>
<meta charset="utf-8"><title>coursestream test harness</title>
<script type="module">
import * as cs from '/coursestream.js'
import * as tq from '/coursestream-tanstack.js'
const C = {}
function start(name, opts = {}) {
  const rec = { events: [], statuses: [], resets: [], errors: [], subscribed: [] }
  const { reportErrors, ...rest } = opts
  // share: false unless a test asks: the single-connection tests keep their own stream.
  const conn = cs.connect({
    heartbeatMs: 1000, pollIntervalMs: 150, maxPollIntervalMs: 600, backoffBaseMs: 200, backoffMaxMs: 2000, share: false,
    ...rest,
    onEvent: (e) => rec.events.push(e),
    onReset: (r) => rec.resets.push(r),
    onStatus: (s) => rec.statuses.push({
      state: s.state, transport: s.transport, reason: s.reason ?? null, retryInMs: s.retryInMs ?? null,
      planned: s.planned ?? false, errorStatus: s.error?.status ?? null, errorURL: s.error?.url ?? null,
      at: performance.now(),
    }),
    ...(reportErrors ? {} : { onError: (e) => rec.errors.push(String(e && e.message || e)) }),
  })
  C[name] = { conn, rec }
  return name
}
Object.assign(window, { cs, tq, C, start })
window.harnessReady = true
</script>`

/** The files of @tanstack/query-core's ESM build, served to pages under /__vendor/query-core/. */
const QUERY_CORE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'node_modules/@tanstack/query-core/build/modern')

/**
 * Opens the harness page on base in a fresh context. problems collects
 * console errors and warnings, and uncaught page errors; assertNoProblems
 * fails on any that are not expected.
 * @param {import('playwright-core').Browser} browser
 * @param {{base?: string, init?: () => void, path?: string}} [opts]
 */
export async function openPage(browser, opts = {}) {
  const base = opts.base ?? BASE
  const context = await browser.newContext()
  const page = await context.newPage()
  page.setDefaultTimeout(WAIT)
  const problems = []
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`)
  })
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`))
  /** Every request the page made: method, path, query, headers, type ('eventsource', 'fetch', ...). */
  const requests = []
  page.on('request', (r) => {
    const u = new URL(r.url())
    requests.push({ method: r.method(), path: u.pathname, query: u.search, headers: r.headers(), type: r.resourceType() })
  })
  await page.route(`${base}/__harness.html`, (r) => r.fulfill({ contentType: 'text/html', body: HARNESS }))
  await page.route(`${base}/__vendor/query-core/**`, async (r) => {
    const name = path.basename(new URL(r.request().url()).pathname)
    try {
      r.fulfill({ contentType: 'text/javascript', body: await readFile(path.join(QUERY_CORE, name)) })
    } catch {
      r.fulfill({ status: 404, body: '' })
    }
  })
  if (opts.init) await page.addInitScript(opts.init)
  await page.goto(base + (opts.path ?? '/__harness.html'))
  if (!opts.path) await page.waitForFunction(() => window.harnessReady === true)
  return { page, context, problems, requests }
}

/**
 * Fails when problems holds anything but what allowed matches.
 * @param {string[]} problems
 * @param {RegExp[]} [allowed]
 */
export function unexpectedProblems(problems, allowed = []) {
  return problems.filter((p) => !allowed.some((re) => re.test(p)))
}

/**
 * Ends a test's page: closes its context, then fails on problems that
 * allowed does not match (see unexpectedProblems).
 * @param {import('playwright-core').BrowserContext} context
 * @param {string[]} problems
 * @param {RegExp[]} [allowed]
 */
export async function closePage(context, problems, allowed = []) {
  await context.close()
  assert.deepEqual(unexpectedProblems(problems, allowed), [])
}

/** Waits until the named connection's status is state (and transport, when given). */
export async function waitStatus(page, name, state, transport) {
  await page.waitForFunction(([n, s, t]) => {
    const c = window.C[n]
    return c && c.conn.status.state === s && (!t || c.conn.status.transport === t)
  }, [name, state, transport ?? null])
}

/** Waits until the named connection has delivered at least n events. */
export async function waitEvents(page, name, n) {
  await page.waitForFunction(([nm, k]) => window.C[nm].rec.events.length >= k, [name, n])
}

/** The ids the named connection delivered, in order. */
export function deliveredIDs(page, name) {
  return page.evaluate((n) => window.C[n].rec.events.map((e) => e.id), name)
}

/**
 * Checks that nothing more is delivered: publishes a sentinel event and
 * waits for it; everything before it has then arrived too.
 */
export async function settle(page, name, course, opts = {}) {
  const id = await publish(course, 'chapter-update-complete', { sentinel: true }, opts)
  await page.waitForFunction(([n, want]) => window.C[n].rec.events.some((e) => e.id === want), [name, id])
  return id
}

/**
 * A front on 127.0.0.1 that forwards every request to the server at BASE,
 * as a load balancer or a proxy does. intercept(req, res) may answer a
 * request itself (it returns true then); relay(req, res, answer) passes the
 * server's answer on, after its status and headers (default: headers sent
 * at once, body piped).
 */
export async function front({ intercept = () => false, relay = (req, res, answer) => { res.flushHeaders(); answer.pipe(res) } } = {}) {
  const upstream = new URL(BASE)
  const server = http.createServer((req, res) => {
    if (intercept(req, res)) return
    const up = http.request({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode, answer.headers)
      relay(req, res, answer)
    })
    up.on('error', () => res.destroy())
    res.on('close', () => up.destroy())
    req.pipe(up)
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve) }),
  }
}
