// @ts-check
/**
 * Noticing a tab that died without saying goodbye (a crash, a kill, a
 * pagehide that never ran). Each tab that rides a shared stream holds a
 * Web Lock of its own, with a fresh name each time it joins; the leading
 * tab (share-leader.js) asks for the same lock. On the SharedWorker path
 * the tab holds one life lock for all its connections (tabLife), and the
 * worker asks for it.
 * The browser grants it only once the tab has let it go: on pagehide (it
 * says goodbye then too) or when the tab is gone, crashed included. The
 * lock is let go on pagehide and taken anew on pageshow, so that it never
 * keeps a page out of the back/forward cache. Without Web Locks nothing is
 * noticed: a dead tab's courses stay on the stream until its group
 * empties, and delivery to the others is unaffected.
 * @module coursestream/tab-life
 */
import { watchPause } from './page.js'

/**
 * The names of the life locks, by whose life they are (apart from the
 * leader's locks, which are share keys): a tab's, or the SharedWorker's
 * (its tabs watch it, to notice the worker dying).
 */
const PREFIXES = Object.freeze({ tab: 'coursestream:tab:', worker: 'coursestream:worker:' })

/**
 * @typedef {{name: string, release: () => void}} Life
 *   a lock this tab holds: name, to tell the stream's holder; release lets it go
 */

/** The Web Locks of this context, or null. @returns {LockManager | null} */
function lockManager() {
  const locks = /** @type {any} */ (globalThis).navigator?.locks
  return typeof locks?.request === 'function' ? locks : null
}

/**
 * Takes a new life lock. Resolves once it is held, with null where Web
 * Locks are missing or refused (an opaque origin, a private mode).
 * @param {keyof typeof PREFIXES} [whose] a tab's (the default), or the SharedWorker's
 * @returns {Promise<Life | null>}
 */
export function holdLife(whose = 'tab') {
  const locks = lockManager()
  if (!locks) return Promise.resolve(null)
  const name = PREFIXES[whose] + Math.random().toString(36).slice(2) + Date.now().toString(36)
  return new Promise((resolve) => {
    /** @type {() => void} */
    let release = () => {}
    const held = new Promise((/** @type {(v?: unknown) => void} */ done) => { release = () => done() })
    locks.request(name, () => { resolve({ name, release }); return held }).catch(() => resolve(null))
  })
}

/**
 * Calls gone once the tab (or worker) that holds the life lock name has
 * let it go (left, or died). Returns the function that stops watching. A name that
 * is not a life lock's is not watched.
 * @param {unknown} name
 * @param {() => void} gone
 * @returns {() => void}
 */
export function watchLife(name, gone) {
  const locks = lockManager()
  if (!locks || typeof name !== 'string' || !Object.values(PREFIXES).some((p) => name.startsWith(p))) return () => {}
  const ac = new AbortController()
  // Granted means released by the tab: the callback returns at once, letting it go again.
  locks.request(name, { signal: ac.signal }, () => { if (!ac.signal.aborted) gone() }).catch(() => {})
  return () => ac.abort()
}

/** @type {Promise<Life | null> | null} the tab's own life lock, shared by its worker connections */
let tabs = null
let watching = false

/**
 * The life lock of this tab as a whole, one for all its connections to
 * the SharedWorker, however often they come and go (a React StrictMode
 * page mounts, unmounts and mounts again within milliseconds): taken at
 * the first call, let go when the page is away (pagehide, freeze) and
 * taken anew, with a new name, at the first call after it is back.
 * @returns {Promise<Life | null>}
 */
export function tabLife() {
  if (!watching) {
    watching = true
    watchPause(() => {
      const held = tabs
      tabs = null
      held?.then((l) => l?.release())
    }, () => {})
  }
  if (!tabs) tabs = holdLife()
  return tabs
}
