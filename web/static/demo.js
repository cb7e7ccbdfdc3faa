// The demo page: follows one course with coursestream.js, switches the
// delivery per tab, publishes test events (open dev mode) and shows what the
// TanStack adapter would ask of a query client; who holds the shared stream,
// the stream's poll counts and the last status changes (fallbacks included).
import { connect } from '/coursestream.js'
import { bindCourseQueries } from '/coursestream-tanstack.js'

/** Delivery choices: the connect options of each button. */
const MODES = {
  auto: { transport: 'auto', label: 'Auto' },
  sse: { transport: 'sse', label: 'SSE' },
  debounced: { transport: 'sse', coalesce: '500ms', label: 'Debounced SSE (500ms)' },
  poll: { transport: 'poll', label: 'Polling' },
  longpoll: { transport: 'longpoll', label: 'Long-polling' },
}
const TRANSPORT_NAMES = { sse: 'SSE', poll: 'polling', longpoll: 'long-polling' }
/**
 * status.sharing: who holds the stream. The demo's connections share, so
 * absent means not known yet (the first status, and the last after close).
 */
const SHARING_NAMES = {
  worker: 'the SharedWorker',
  'this-tab': 'this tab (relays it)',
  'other-tab': 'another tab',
  page: 'this page alone',
}
const SHARING_SHORT = { worker: 'SharedWorker', 'this-tab': 'this tab', 'other-tab': 'another tab', page: 'this page' }
const MAX_HISTORY = 20
const SAMPLE_DATA = {
  'chapter-update-complete': { chapterId: 'ch-1', title: 'Getting started' },
  'chapter-create-complete': { chapterId: 'ch-2' },
  'chapter-delete-complete': { chapterId: 'ch-2' },
  'video-update-complete': { videoId: 'v-1', chapterId: 'ch-1' },
  'video-delete-complete': { videoId: 'v-1' },
  'upload-progress': { videoId: 'v-7', progress: 42, status: 'uploading' },
  'upload-complete': { videoId: 'v-7' },
}
const MAX_ROWS = 200

const $ = (sel) => /** @type {HTMLElement} */ (document.querySelector(sel))
const tab = sessionStorage

let conn = null
let unbind = null
let eventsSinceFlush = 0
let count = 0
let course = new URLSearchParams(location.search).get('course') || tab.getItem('demo:course') || 'course-123'
let mode = tab.getItem('demo:mode') in MODES ? tab.getItem('demo:mode') : 'auto'

function follow() {
  unbind?.()
  conn?.close()
  const m = MODES[mode]
  conn = connect({
    courseId: course,
    transport: m.transport,
    coalesce: m.coalesce,
    onEvent: addRow,
    onReset: (r) => addResetRow(r),
    onStatus: (s) => { record(s); showStatus(s) },
  })
  unbind = bindCourseQueries(recordingClient, conn)
  conn.subscribe(() => { eventsSinceFlush++ })
  for (const b of document.querySelectorAll('#transports button')) {
    b.setAttribute('aria-pressed', String(b.dataset.mode === mode))
  }
  for (const el of document.querySelectorAll('.course-name')) el.textContent = course
  $('#course').value = course
  note(`following ${course} · ${m.label}`)
  showStatus(conn.status)
}

function showStatus(s) {
  const el = $('#status')
  el.dataset.state = s.state
  el.dataset.transport = s.transport
  const via = TRANSPORT_NAMES[s.transport] ?? s.transport
  let text = `${s.state} · ${via}`
  if (s.reason) text += ` (fallback: ${s.reason})`
  if (s.planned) text += ' (the server ended the stream)'
  if (s.state === 'reconnecting' && s.retryInMs != null) text += ` · retry in ${(s.retryInMs / 1000).toFixed(1)}s`
  if (s.state === 'closed' && s.error) text += ` · ${s.error.message ?? s.error}`
  $('#status-text').textContent = text
  $('#transport').textContent = `${via}${mode === 'debounced' ? ' + coalesce 500ms' : ''}`
  $('#transport').dataset.transport = s.transport
  const holder = $('#sharing')
  holder.textContent = SHARING_NAMES[s.sharing] ?? '-'
  holder.dataset.sharing = s.sharing ?? 'none'
  showLast()
  showStats()
}

/** The stream's poll counts (the library counts them where the stream runs). */
function showStats() {
  const st = conn?.stats ?? { polls: 0, notModified: 0 }
  const el = $('#polls')
  if (el.dataset.polls === String(st.polls) && el.dataset.notModified === String(st.notModified)) return
  el.dataset.polls = String(st.polls)
  el.dataset.notModified = String(st.notModified)
  el.textContent = `${st.polls} · ${st.notModified} answered 304`
}

/** Adds a status change to the history, newest first. */
function record(s) {
  const li = document.createElement('li')
  li.dataset.state = s.state
  li.dataset.transport = s.transport
  li.dataset.sharing = s.sharing ?? 'none'
  if (s.reason) {
    li.dataset.reason = s.reason
    li.className = 'fallback'
  }
  let why = ''
  if (s.reason) why = `fallback: ${s.reason}`
  if (s.planned) why = 'the server ended the stream'
  if (s.state === 'reconnecting' && s.retryInMs != null) why += `${why ? ' · ' : ''}retry in ${(s.retryInMs / 1000).toFixed(1)}s`
  if (s.error) why += `${why ? ' · ' : ''}${s.error.message ?? s.error}`
  const cells = [['time', clock(Date.now())], ['span', s.state, 'state'], ['span', TRANSPORT_NAMES[s.transport] ?? s.transport, 'via'],
    ['span', SHARING_SHORT[s.sharing] ?? '-', 'holder'], ['span', why, 'why']]
  for (const [tag, text, cls] of cells) {
    const el = document.createElement(tag)
    el.textContent = text
    if (cls) el.className = cls
    el.title = text
    li.append(el)
  }
  addHistory(li)
}

/** A line of the history that is no status: what the page did. */
function note(text) {
  const li = document.createElement('li')
  li.className = 'note'
  li.textContent = `${clock(Date.now())} ${text}`
  addHistory(li)
}

function addHistory(li) {
  const list = $('#history')
  list.prepend(li)
  while (list.children.length > MAX_HISTORY) list.lastElementChild.remove()
}

function clock(ms) {
  const d = new Date(ms)
  return `${time(ms)}.${String(d.getMilliseconds()).padStart(3, '0')}`
}

function showLast() {
  $('#last-id').textContent = conn?.lastEventId ?? '-'
}

function row(cells, cls) {
  const tr = document.createElement('tr')
  tr.className = `fresh ${cls ?? ''}`
  for (const c of cells) {
    const td = document.createElement('td')
    if (c instanceof Node) td.append(c)
    else td.textContent = c
    tr.append(td)
  }
  const body = $('#log tbody')
  body.prepend(tr)
  while (body.children.length > MAX_ROWS) body.lastElementChild.remove()
  $('#empty').hidden = true
  return tr
}

function typeBadge(type) {
  const span = document.createElement('span')
  span.className = 'type'
  span.dataset.kind = type.split('-')[0]
  span.textContent = type
  return span
}

function addRow(ev) {
  count++
  $('#count').textContent = String(count)
  const tr = row([ev.id, typeBadge(ev.type), JSON.stringify(ev.data), ev.operationId ?? '', TRANSPORT_NAMES[conn.transport], time(ev.timestamp)])
  tr.dataset.id = ev.id
  tr.dataset.type = ev.type
  tr.children[2].className = 'data'
  tr.children[3].className = 'mono'
  tr.children[2].title = JSON.stringify(ev.data, null, 2)
  showLast()
}

function addResetRow(r) {
  const tr = row([r.lastEventId, typeBadge('reset'), 'events before this are gone: refetch', '', TRANSPORT_NAMES[conn.transport], time(Date.now())], 'reset')
  tr.dataset.type = 'reset'
  showLast()
}

function time(ms) {
  return new Date(ms).toLocaleTimeString([], { hour12: false })
}

// A stand-in for a TanStack QueryClient that shows the calls the adapter makes.
const recordingClient = {
  invalidateQueries({ queryKey }) { logCache(`invalidate ${JSON.stringify(queryKey)}`) },
  setQueryData(queryKey, updater) { logCache(`setQueryData ${JSON.stringify(queryKey)} = ${JSON.stringify(updater(undefined))}`) },
}
let resetQueued = false
function logCache(text) {
  const li = document.createElement('li')
  li.textContent = `${text}  (${eventsSinceFlush} event${eventsSinceFlush === 1 ? '' : 's'})`
  const list = $('#cache')
  list.prepend(li)
  while (list.children.length > 50) list.lastElementChild.remove()
  // The adapter makes all the calls of one batch in one go: count anew after it.
  if (!resetQueued) {
    resetQueued = true
    queueMicrotask(() => { eventsSinceFlush = 0; resetQueued = false })
  }
}

async function publish(type, data, operationId) {
  const res = await fetch(`/v1/courses/${encodeURIComponent(course)}/events`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ type, data, ...(operationId ? { operationId } : {}) }),
  })
  const body = await res.json().catch(() => ({}))
  if (!res.ok) throw new Error(body.error ?? `HTTP ${res.status}`)
  return body.id
}

function newOperationId() {
  return `op-${Math.random().toString(36).slice(2, 10)}`
}

function say(text, error = false) {
  const out = $('#publish-result')
  out.textContent = text
  out.classList.toggle('error', error)
}

// ---- wiring ----------------------------------------------------------------

$('#course-form').addEventListener('submit', (e) => {
  e.preventDefault()
  const v = $('#course').value.trim()
  if (!v) return
  course = v
  tab.setItem('demo:course', course)
  follow()
// The counts change with every poll, not with the status: shown twice a second.
setInterval(showStats, 500)
})

$('#transports').addEventListener('click', (e) => {
  const b = /** @type {HTMLElement} */ (e.target).closest('button[data-mode]')
  if (!b) return
  mode = b.dataset.mode
  tab.setItem('demo:mode', mode)
  follow()
// The counts change with every poll, not with the status: shown twice a second.
setInterval(showStats, 500)
})

$('#type').addEventListener('change', () => {
  $('#data').value = JSON.stringify(SAMPLE_DATA[$('#type').value] ?? {})
})

$('#publish-form').addEventListener('submit', async (e) => {
  e.preventDefault()
  let data
  try {
    data = JSON.parse($('#data').value || 'null')
  } catch {
    say('Data is not JSON', true)
    return
  }
  const operationId = $('#operation').value.trim() || newOperationId()
  const c = conn
  const started = performance.now()
  const seen = c.awaitOperation(operationId, 15_000)
  try {
    const id = await publish($('#type').value, data, operationId)
    say(`Published id ${id} (${operationId}); waiting for it…`)
    const ev = await seen
    say(`Published id ${ev.id} (${operationId}); arrived over ${TRANSPORT_NAMES[c.transport]} after ${Math.round(performance.now() - started)} ms`)
  } catch (err) {
    seen.catch(() => {})
    say(err.name === 'TimeoutError' ? `Published, but not seen within 15 s (${operationId})` : `Publish failed: ${err.message}`, true)
  }
  $('#operation').value = ''
})

$('#burst').addEventListener('click', async () => {
  try {
    const ids = await Promise.all(Array.from({ length: 25 }, (_, i) =>
      publish('chapter-update-complete', { chapterId: `ch-${i % 5}` })))
    say(`Published a burst: ids ${Math.min(...ids)}–${Math.max(...ids)}`)
  } catch (err) {
    say(`Publish failed: ${err.message}`, true)
  }
})

$('#clear').addEventListener('click', () => {
  $('#log tbody').replaceChildren()
  $('#cache').replaceChildren()
  $('#empty').hidden = false
  count = 0
  $('#count').textContent = '0'
})

follow()
// The counts change with every poll, not with the status: shown twice a second.
setInterval(showStats, 500)
