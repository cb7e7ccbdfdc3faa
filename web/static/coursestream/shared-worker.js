// @ts-check
/**
 * The SharedWorker that holds the streams of every tab of an origin (one
 * Feed per group of connections that may share), loaded by
 * share-worker.js as a module worker. It relays each stream's events,
 * resets, status and poll counts to the tabs of its group, asks a tab
 * for a token when the stream needs one, and stops a stream when its last
 * tab leaves. A tab that dies without saying goodbye is noticed by its
 * life lock (tab-life.js): its courses are dropped as if it had left (the
 * stream re-opens from its cursor with the courses of the others). The
 * worker holds a life lock of its own for as long as it runs and names it
 * to each tab that connects: a tab notices the worker dying (a crash, the
 * browser ending it) and starts another from its connections' positions.
 * @module coursestream/shared-worker
 */
import { Feed } from './feed.js'
import { TokenCache } from './token-cache.js'
import { holdLife, watchLife } from './tab-life.js'

/**
 * @import { ToWorker, FromWorker } from './share-worker.js'
 * @typedef {{feed: Feed, ports: Map<string, MessagePort>, lives: Map<string, {name: string, stop: () => void}>,
 *   readonly last: any, readonly stats: any}} Group
 *   the stream of one group, its tabs (and the life lock each holds), its last status and poll counts
 */

/** How long the worker waits for a tab's token before it asks another tab. */
const TOKEN_WAIT_MS = 5_000

/** @type {Map<string, Group>} */
const groups = new Map()
let nextID = 0
/** @type {Map<number, (token: string | null) => void>} */
const waiting = new Map()

/** @param {MessagePort} port @param {FromWorker} m */
function post(port, m) {
  try { port.postMessage(m) } catch { /* a closed port: its tab left */ }
}

/** A token from one of the group's tabs, the first that answers in time. @param {string} name */
async function askToken(name) {
  for (const port of [...(groups.get(name)?.ports.values() ?? [])]) {
    const id = nextID++
    const token = await new Promise((resolve) => {
      const timer = setTimeout(() => { waiting.delete(id); resolve(undefined) }, TOKEN_WAIT_MS)
      waiting.set(id, (t) => { clearTimeout(timer); waiting.delete(id); resolve(t) })
      post(port, { op: 'token', id })
    })
    if (token !== undefined) return token
  }
  return null
}

/**
 * @param {string} member the tab's port
 * @param {MessagePort} port
 * @param {ToWorker} m
 */
function receive(member, port, m) {
  if (!m || typeof m !== 'object') return
  if (m.op === 'token-reply') { waiting.get(m.id)?.(m.token); return }
  let g = groups.get(m.group)
  if (m.op === 'leave') { drop(m.group, member); return }
  if (m.op === 'life') { if (g?.ports.has(member)) watch(m.group, g, member, m.life); return }
  if (!g) {
    const name = m.group
    const fixed = m.token
    const tokens = new TokenCache(() => askToken(name))
    const each = (/** @type {(p: MessagePort) => void} */ f) => { for (const p of groups.get(name)?.ports.values() ?? []) f(p) }
    /** @type {any} */
    let last = null
    /** @type {any} */
    let stats = null
    const feed = new Feed(m.settings, () => (m.settings.tokenFunction ? tokens.get() : Promise.resolve(fixed)), {
      events: (json) => each((p) => post(p, { op: 'events', group: name, json })),
      reset: (courseId, lastEventId) => each((p) => post(p, { op: 'reset', group: name, courseId, lastEventId })),
      status: (status) => { last = status; each((p) => post(p, { op: 'status', group: name, status })) },
      stats: (st) => { stats = st; each((p) => post(p, { op: 'stats', group: name, stats: st })) },
      failed: (error) => { each((p) => post(p, { op: 'failed', group: name, error })); forget(name) },
    })
    g = { feed, ports: new Map(), lives: new Map(), get last() { return last }, get stats() { return stats } }
    groups.set(name, g)
  }
  const isNew = !g.ports.has(member)
  g.ports.set(member, port)
  g.feed.set(member, m.courses)
  if (isNew && g.last) post(port, { op: 'status', group: m.group, status: g.last })
  if (isNew && g.stats) post(port, { op: 'stats', group: m.group, stats: g.stats })
}

/**
 * Watches the life lock a tab named once joined: when the tab lets it go
 * (it left, or died), it is dropped. A new name (the tab came back from
 * the back/forward cache) replaces the old.
 * @param {string} name the group @param {Group} g @param {string} member @param {string | null | undefined} life
 */
function watch(name, g, member, life) {
  const had = g.lives.get(member)
  if (had?.name === life) return
  had?.stop()
  g.lives.delete(member)
  if (typeof life !== 'string') return
  const stop = watchLife(life, () => { if (groups.get(name) === g && g.lives.get(member)?.name === life) drop(name, member) })
  g.lives.set(member, { name: life, stop })
}

/** A tab leaves a group (it said so, or its life lock says it is gone). @param {string} name @param {string} member */
function drop(name, member) {
  const g = groups.get(name)
  if (!g) return
  g.lives.get(member)?.stop()
  g.lives.delete(member)
  g.ports.delete(member)
  g.feed.remove(member)
  if (g.feed.empty) { g.feed.stop(); forget(name) }
}

/** A group is over: no tab is left, or its stream failed for good. @param {string} name */
function forget(name) {
  for (const l of groups.get(name)?.lives.values() ?? []) l.stop()
  groups.delete(name)
}

/** The worker's own life lock, held until it ends. */
const life = holdLife('worker')

/** @type {any} */
const scope = globalThis
scope.onconnect = (/** @type {MessageEvent} */ e) => {
  const port = e.ports[0]
  const member = `p${nextID++}`
  port.onmessage = (ev) => receive(member, port, ev.data)
  port.start()
  life.then((l) => { if (l) post(port, { op: 'worker-life', life: l.name }) })
}
