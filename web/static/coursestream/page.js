// @ts-check
/**
 * The page around a connection: whether it is hidden, and when it shows
 * again or comes back online.
 * @module coursestream/page
 */

/** Whether the page is hidden (false outside a page). */
export function pageHidden() {
  const d = /** @type {any} */ (globalThis).document
  return !!d && d.visibilityState === 'hidden'
}

/**
 * Calls onVisibility when the page is hidden or shows, and onOnline when
 * the network comes back (in a window). Returns the function that removes
 * both listeners.
 * @param {() => void} onVisibility
 * @param {() => void} onOnline
 * @returns {() => void}
 */
export function watchPage(onVisibility, onOnline) {
  const g = /** @type {any} */ (globalThis)
  /** @type {(() => void)[]} */
  const cleanup = []
  if (g.document?.addEventListener) {
    g.document.addEventListener('visibilitychange', onVisibility)
    cleanup.push(() => g.document.removeEventListener('visibilitychange', onVisibility))
  }
  if (g.window === g && typeof g.addEventListener === 'function') {
    g.addEventListener('online', onOnline)
    cleanup.push(() => g.removeEventListener('online', onOnline))
  }
  return () => { for (const f of cleanup.splice(0)) f() }
}

/**
 * Calls away when the page stops running without closing, and back when
 * it runs again: away on pagehide (it may go into the back/forward cache)
 * and on freeze (a hidden tab frozen, which the browser may then discard
 * without another event); back on a pageshow from the back/forward cache
 * and on resume. A page that rides a shared stream leaves it while away,
 * so that a frozen or discarded tab neither holds the stream's lock nor
 * keeps its courses on the stream. Returns the function that removes the
 * listeners.
 * @param {() => void} away
 * @param {() => void} back
 * @returns {() => void}
 */
export function watchPause(away, back) {
  const g = /** @type {any} */ (globalThis)
  const onShow = (/** @type {PageTransitionEvent} */ e) => { if (e.persisted) back() }
  g.addEventListener?.('pagehide', away)
  g.addEventListener?.('pageshow', onShow)
  g.document?.addEventListener?.('freeze', away)
  g.document?.addEventListener?.('resume', back)
  return () => {
    g.removeEventListener?.('pagehide', away)
    g.removeEventListener?.('pageshow', onShow)
    g.document?.removeEventListener?.('freeze', away)
    g.document?.removeEventListener?.('resume', back)
  }
}
