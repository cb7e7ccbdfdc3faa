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
