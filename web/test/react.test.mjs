// The npm package and its React hooks (issue 14): `npm pack` in web/, the
// tarball installed into a temporary app beside the pinned React, TanStack
// and esbuild of react-app/ (npm ci by .ci/deps), the package's types
// checked with tsc --strict over a typed app, then the app bundled with
// esbuild (React 19, and React 18 through aliases) and run in StrictMode in
// real Chromium against the real binary (CS_REACT_URL: a server of these
// tests alone, so that its /metrics counts their streams only).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { cp, mkdtemp, mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { launch, courseID, publish, TEST_TIMEOUT } from './lib.mjs'

const run = promisify(execFile)
const HERE = path.dirname(fileURLToPath(import.meta.url))
const WEB = path.join(HERE, '..')
const APP = path.join(HERE, 'react-app')
const REACT = process.env.CS_REACT_URL ?? ''
const esbuild = createRequire(path.join(APP, 'package.json'))('esbuild')

let tmp, appDir, files, browser
/** The bundles of src/app.jsx, per React major. */
const bundles = {}

before(async () => {
  assert.match(REACT, /^http:\/\/127\.0\.0\.1:\d+$/, 'CS_REACT_URL: run these tests with go test ./web')
  tmp = await mkdtemp(path.join(tmpdir(), 'coursestream-npm-'))
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: WEB, timeout: 60_000 })
  const [packed] = JSON.parse(stdout)
  files = packed.files.map((f) => f.path).sort()

  // The app: its own node_modules holding the unpacked tarball, beside
  // links to react-app's installed packages.
  appDir = path.join(tmp, 'app')
  const modules = path.join(appDir, 'node_modules')
  await mkdir(path.join(modules, 'coursestream'), { recursive: true })
  await run('tar', ['-xzf', path.join(tmp, packed.filename), '-C', path.join(modules, 'coursestream'), '--strip-components=1'])
  for (const name of await readdir(path.join(APP, 'node_modules'))) {
    if (name.startsWith('.')) continue
    await symlink(path.join(APP, 'node_modules', name), path.join(modules, name))
  }
  await cp(path.join(APP, 'src'), path.join(appDir, 'src'), { recursive: true })

  for (const [major, alias] of [['19', {}], ['18', { react: 'react18', 'react-dom': 'react-dom18' }]]) {
    const out = await esbuild.build({
      entryPoints: [path.join(appDir, 'src', 'app.jsx')],
      absWorkingDir: appDir, // where the aliases resolve
      bundle: true, format: 'esm', platform: 'browser', jsx: 'automatic', write: false, logLevel: 'silent',
      define: { 'process.env.NODE_ENV': '"development"' }, // StrictMode's double renders and effects
      alias,
    })
    bundles[major] = out.outputFiles[0].text
  }
  browser = await launch()
})

after(async () => {
  await browser?.close()
  if (tmp) await rm(tmp, { recursive: true, force: true })
})

test('npm pack: the library, the adapter and the hooks with their types; not the demo', () => {
  assert.ok(files.includes('react/index.js') && files.includes('react/index.d.ts'), files.join(' '))
  for (const f of ['static/coursestream.js', 'static/coursestream.d.ts', 'static/coursestream-tanstack.js',
    'static/coursestream-tanstack.d.ts', 'static/coursestream/connection.js', 'package.json']) {
    assert.ok(files.includes(f), `${f} is in the tarball`)
  }
  assert.deepEqual(files.filter((f) => /demo|index\.html|\.go$|\.png$|^test\//.test(f)), [])
})

test('the package types: tsc --strict over a typed app with its own event type, and checkJs of the React entry', { timeout: 90_000 }, async () => {
  await writeFile(path.join(appDir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      strict: true, noEmit: true, target: 'es2022', module: 'es2022', moduleResolution: 'bundler',
      lib: ['es2022', 'dom'], jsx: 'react-jsx', types: [], allowJs: true, checkJs: true,
      // React's and TanStack's .d.ts are not ours to check (and cost 10-50 s):
      // typed-app's @ts-expect-error cases show that ours do not decay to any.
      skipLibCheck: true,
    },
    files: ['src/typed-app.tsx', 'node_modules/coursestream/react/index.js'],
  }))
  try {
    await run(process.execPath, [path.join(HERE, 'node_modules/typescript/lib/tsc.js'), '-p', appDir], { timeout: 80_000 })
  } catch (err) {
    assert.fail(`tsc:\n${err.stdout}${err.stderr}`)
  }
})

test('README: the React quick start is the code the app runs', async () => {
  const readme = await readFile(path.join(WEB, '..', 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('### React quick start'))
  const block = section.match(/```jsx\n([\s\S]*?)```/)
  assert.ok(block, 'README has a ```jsx block under "### React quick start"')
  assert.equal(block[1], await readFile(path.join(APP, 'src', 'quickstart.jsx'), 'utf8'))
})

/** The server's open SSE streams, from /metrics. */
async function streams() {
  const text = await (await fetch(`${REACT}/metrics`)).text()
  const m = text.match(/^coursestream_connections\{transport="sse"\} (\d+)$/m)
  assert.ok(m, 'coursestream_connections{transport="sse"} in /metrics')
  return Number(m[1])
}

/**
 * Polls until /metrics shows n streams (the server sees a close a little
 * later). diagnose, if given, says what the page saw, for the failure.
 */
async function waitStreams(n, ms = 10_000, diagnose) {
  const until = Date.now() + ms
  let got
  while ((got = await streams()) !== n) {
    if (Date.now() > until) assert.fail(`the server has ${got} SSE streams, want ${n}${diagnose ? `; ${await diagnose()}` : ''}`)
    await new Promise((r) => setTimeout(r, 50)) // polling /metrics: the server has no push of it
  }
}

/**
 * A page on the React server's origin running the bundle of React major;
 * closed when the test ends, passed or failed.
 */
async function openApp(t, major) {
  await waitStreams(0) // nothing left over from an earlier test
  const context = await browser.newContext()
  t.after(() => context.close())
  const page = await context.newPage()
  page.setDefaultTimeout(15_000)
  const problems = []
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`) })
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`))
  const eventSources = []
  page.on('request', (r) => { if (r.resourceType() === 'eventsource') eventSources.push(new URL(r.url()).search) })
  await page.route(`${REACT}/__react.html`, (r) => r.fulfill({ contentType: 'text/html', body: '<!doctype html><meta charset="utf-8"><script type="module" src="/__react/app.js"></script>' }))
  await page.route(`${REACT}/__react/app.js`, (r) => r.fulfill({ contentType: 'text/javascript', body: bundles[major] }))
  await page.goto(`${REACT}/__react.html`)
  await page.waitForFunction(() => window.appReady === true)
  assert.equal((await page.evaluate(() => window.T.react)).split('.')[0], major)
  return { page, context, problems, eventSources }
}

for (const major of ['19', '18']) {
  test(`react ${major}: StrictMode and fast remounts share one stream per course, closed when the last component leaves`, { timeout: TEST_TIMEOUT }, async (t) => {
    const { page, context, problems, eventSources } = await openApp(t, major)
    const course = courseID('react-share')
    // Five components on one course, in StrictMode (effects run twice
    // each), mounted twice over in one task (new keys), then twice more
    // once the stream is open, 300 ms apart.
    await page.evaluate(([b, c]) => window.T.mount(b, [
      ['events', c, 'e1'], ['events', c, 'e2'], ['lists', c], ['save', c, { publishIt: true }], ['events', c, 'e3'],
    ], { remounts: 1 }), [REACT, course])
    const diagnose = async () => `EventSources ${JSON.stringify(eventSources)}; statuses ${JSON.stringify(await page.evaluate(() => window.R.statuses))}; problems ${JSON.stringify(problems)}`
    await waitStreams(1, 10_000, diagnose)
    for (let i = 0; i < 2; i++) {
      await new Promise((r) => setTimeout(r, 300)) // the scenario: a remount some time later
      await page.evaluate(() => window.T.remount())
    }
    await page.waitForFunction(() => document.querySelectorAll('p.e1, p.e2, p.e3').length === 3 &&
      [...document.querySelectorAll('p.e1, p.e2, p.e3')].every((p) => p.textContent.startsWith('open')))
    await waitStreams(1, 10_000, diagnose)
    // Every component sees the events, once each.
    const id = await publish(course, 'chapter-create-complete', { chapterId: 'ch-9' }, { base: REACT })
    await page.waitForFunction((want) => ['e1', 'e2', 'e3', 'lists'].every((n) => window.R.events.some((e) => e.name === n && e.id === want)), id)
    assert.deepEqual(await page.evaluate(() => window.R.events.map((e) => `${e.name}:${e.id}`).sort()), ['e1:1', 'e2:1', 'e3:1', 'lists:1'])
    assert.equal(await streams(), 1)
    assert.equal(eventSources.length, 1, `one EventSource over the page's life: ${eventSources.join(' ')}`)
    // The last one leaves: the stream closes (after the provider's linger).
    await page.evaluate(() => window.T.unmount())
    await waitStreams(0)
    assert.equal(eventSources.length, 1)
    await context.close()
    assert.deepEqual(problems, [])
  })
}

test('react 19: useCourseEvents calls the latest onEvent, useCourseStatus follows the status, no resubscription', { timeout: TEST_TIMEOUT }, async (t) => {
  const { page, context, problems, eventSources } = await openApp(t, '19')
  const course = courseID('react-events')
  await page.evaluate(([b, c]) => window.T.mount(b, [['events', c, 'e1']]), [REACT, course])
  await page.waitForFunction(() => document.querySelector('p.e1')?.textContent === 'open 0')
  // Two heartbeats (--heartbeat 1s) reach the connection and change no
  // status: no render.
  const rendersOpen = await page.evaluate(() => window.R.renders.e1)
  await new Promise((r) => setTimeout(r, 2_200)) // heartbeats come by the clock; a render would have no signal
  assert.equal(await page.evaluate(() => window.R.renders.e1), rendersOpen, 'no render without a status change')
  for (let k = 0; k < 5; k++) {
    await publish(course, 'chapter-update-complete', { chapterId: 'ch-1', updates: { k } }, { base: REACT })
    // The next event only after the render that the last one caused.
    await page.waitForFunction((want) => document.querySelector('p.e1')?.textContent === `open ${want}`, k + 1)
  }
  // Each event reached the onEvent of the latest render: it saw the count so far.
  assert.deepEqual(await page.evaluate(() => window.R.events.map((e) => [e.id, e.seenBy])), [['1', 0], ['2', 1], ['3', 2], ['4', 3], ['5', 4]])
  // Statuses: connecting then open, each recorded once (StrictMode's second effect run aside).
  const states = await page.evaluate(() => [...new Set(window.R.statuses.map((s) => `${s.state}/${s.transport}`))])
  assert.deepEqual(states, ['connecting/sse', 'open/sse'])
  assert.equal(eventSources.length, 1, 'new onEvent functions never resubscribe or reconnect')
  await page.evaluate(() => window.T.unmount())
  await context.close()
  assert.deepEqual(problems, [])
})

test('react 19: useOperationMutation settles on the event carrying its operationId, and times out without one', { timeout: TEST_TIMEOUT }, async (t) => {
  const { page, context, problems } = await openApp(t, '19')
  const course = courseID('react-op')
  await page.evaluate(([b, c]) => window.T.mount(b, [['save', c, { publishIt: true, timeoutMs: 10_000 }], ['events', c, 'e1']]), [REACT, course])
  await page.waitForFunction(() => document.querySelector('p.e1')?.textContent.startsWith('open') && window.T.save)
  await page.evaluate(() => window.T.save('first'))
  await page.waitForFunction(() => window.R.mutations.length === 1)
  const [ok] = await page.evaluate(() => window.R.mutations)
  assert.equal(ok.ok, true, JSON.stringify(ok))
  assert.match(ok.sentOp, /^[0-9a-f-]{36}$/)
  assert.equal(ok.eventOp, ok.sentOp)
  assert.equal(ok.type, 'chapter-update-complete')
  assert.equal(await page.evaluate(() => document.querySelector('p.save').textContent), 'success')
  await page.evaluate(() => window.T.unmount())

  // The same request without the operationId in its event: a TimeoutError.
  await page.evaluate(([b, c]) => { window.R.mutations.length = 0; window.T.mount(b, [['save', c, { publishIt: false, timeoutMs: 600 }]]) }, [REACT, course])
  await page.waitForFunction(() => window.T.save && document.querySelector('p.save'))
  const t0 = Date.now()
  await page.evaluate(() => window.T.save('second'))
  await page.waitForFunction(() => window.R.mutations.length === 1)
  assert.deepEqual(await page.evaluate(() => window.R.mutations), [{ ok: false, name: 'TimeoutError' }])
  assert.ok(Date.now() - t0 >= 500, 'it waited for timeoutMs')

  // Unmounting aborts a pending one.
  await page.evaluate(() => { window.R.mutations.length = 0; window.T.save('third') })
  await page.evaluate(() => window.T.unmount())
  await page.waitForFunction(() => window.R.mutations.length === 1)
  assert.deepEqual(await page.evaluate(() => window.R.mutations), [{ ok: false, name: 'AbortError' }])
  await context.close()
  assert.deepEqual(problems, [])
})

test("react 19: the seed's loop, as a test: a burst of 200 events, bounded refetches and renders, nothing after", { timeout: TEST_TIMEOUT }, async (t) => {
  const { page, context, problems } = await openApp(t, '19')
  const course = courseID('react-burst')
  await page.evaluate(([b, c]) => window.T.mount(b, [['lists', c], ['events', c, 'e1']]), [REACT, course])
  await page.waitForFunction(() => document.querySelector('p.e1')?.textContent.startsWith('open') &&
    document.querySelector('p.chapters')?.textContent === '1' && document.querySelector('p.videos')?.textContent === '1')
  const before = await page.evaluate(() => ({ ...window.R.renders }))
  const types = ['chapter-update-complete', 'video-update-complete', 'upload-progress', 'chapter-create-complete', 'upload-complete']
  // 200 events at once, as a backend's batch job publishes them.
  await Promise.all(Array.from({ length: 200 }, (_, i) => publish(course, types[i % types.length],
    { chapterId: `ch-${i}`, videoId: `v-${i % 4}`, progress: i, status: 'uploading', updates: {} }, { base: REACT })))
  await page.waitForFunction(() => window.R.events.filter((e) => e.name === 'lists').length === 200)
  const at = await page.evaluate(() => window.R.events.filter((e) => e.name === 'lists').map((e) => e.at))
  // The burst's windows, as the adapter batches: a new batch after a gap
  // of batchMs (100 ms; counted from 90 ms, to be safe), and at least
  // every maxBatchMs (1 s) within a batch. On an idle machine the 200
  // events come in one window; a loaded one spreads them.
  let windows = 0
  for (let i = 0, start = 0; i < at.length; i++) {
    if (i === 0 || at[i] - at[i - 1] > 90) { windows += 1; start = at[i] } else if (at[i] - start >= 1_000) { windows += 1; start = at[i] }
  }
  const windowMs = at[at.length - 1] - at[0]
  // The last batch closes 100 ms after the last event: then the lists settle.
  await new Promise((r) => setTimeout(r, 1_500))
  const settled = await page.evaluate(() => ({ fetches: { ...window.R.fetches }, renders: { ...window.R.renders } }))
  for (const list of ['chapters', 'videos']) {
    const refetches = settled.fetches[list] - 1
    assert.ok(refetches >= 1 && refetches <= windows, `${list}: ${refetches} refetches for a burst over ${windowMs.toFixed(0)} ms in ${windows} windows`)
    // A refetch is a fetching and a fetched render, each twice in StrictMode.
    const renders = settled.renders[list] - before[list]
    assert.ok(renders <= 4 * refetches + 4, `${list}: ${renders} renders for ${refetches} refetches`)
  }
  t.diagnostic(`burst: ${windows} window(s) over ${windowMs.toFixed(0)} ms; fetches ${JSON.stringify(settled.fetches)}; list renders ${settled.renders.chapters - before.chapters}, ${settled.renders.videos - before.videos}`)
  // The component that binds the adapter never re-renders for events.
  assert.equal(settled.renders.lists, before.lists)
  // And nothing loops after the burst: no fetch, no render for 1.5 s more.
  await new Promise((r) => setTimeout(r, 1_500)) // the absence of work has no signal
  assert.deepEqual(await page.evaluate(() => ({ fetches: { ...window.R.fetches }, renders: { ...window.R.renders } })), settled)
  await page.evaluate(() => window.T.unmount())
  await context.close()
  assert.deepEqual(problems, [])
})

test('react 19: the README quick start works as written', { timeout: TEST_TIMEOUT }, async (t) => {
  const { page, context, problems } = await openApp(t, '19')
  const course = courseID('react-quick')
  let chapters = ['Intro', 'Setup']
  await page.route(`${REACT}/api/courses/*/chapters`, (r) => r.fulfill({ contentType: 'application/json', body: JSON.stringify(chapters) }))
  await page.evaluate(([b, c]) => window.T.quickstart(b, c), [REACT, course])
  await page.waitForFunction(() => document.querySelector('#quickstart p')?.textContent === 'open: 2 chapters')
  chapters = [...chapters, 'Deploy']
  await publish(course, 'chapter-create-complete', { chapterId: 'ch-3' }, { base: REACT })
  await page.waitForFunction(() => document.querySelector('#quickstart p')?.textContent === 'open: 3 chapters')
  await page.evaluate(() => window.T.unmount())
  await waitStreams(0)
  await context.close()
  assert.deepEqual(problems, [])
})
