// @ts-check
/**
 * The errors the library gives out, and how it reports the ones it must
 * not throw.
 * @module coursestream/errors
 */

/** An error answer from the server: its status and the {"error"} reason. */
export class HTTPError extends Error {
  /** @param {number} status @param {string} message @param {string} url */
  constructor(status, message, url) {
    super(`${status}: ${message}`)
    this.name = 'HTTPError'
    this.status = status
    this.url = url
  }
}

/**
 * A DOMException (AbortError, TimeoutError) where the platform has it,
 * else an Error with that name.
 * @param {string} name
 * @param {string} message
 */
export function domError(name, message) {
  if (typeof DOMException === 'function') return new DOMException(message, name)
  const e = new Error(message)
  e.name = name
  return e
}

/**
 * Reports an error without throwing into the caller: reportError where the
 * platform has it (the browser reports it like an uncaught exception and
 * fires window's error event), else a rethrow from a fresh task.
 * @param {unknown} err
 */
export function rethrowLater(err) {
  const g = /** @type {any} */ (globalThis)
  if (typeof g.reportError === 'function') g.reportError(err)
  else setTimeout(() => { throw err })
}

/**
 * Reports err to onError when given, else with rethrowLater. When onError
 * throws, both its error and err are reported with rethrowLater.
 * @param {((error: unknown) => void) | undefined} onError
 * @param {unknown} err
 */
export function report(onError, err) {
  if (typeof onError === 'function') {
    try {
      onError(err)
      return
    } catch (err2) {
      rethrowLater(err2)
    }
  }
  rethrowLater(err)
}

/**
 * The message of a refused answer: its JSON `error`, else the start of its
 * body (a proxy's page), else the status text.
 * @param {Response} res
 * @returns {Promise<string>}
 */
export async function refusalText(res) {
  const text = await res.text().catch(() => '')
  try { return String(JSON.parse(text).error) } catch { return text.slice(0, 200) || res.statusText }
}

/**
 * Whether retrying cannot help a request refused with err: the request or
 * the credentials are wrong. A 401 can be helped when a token function may
 * give a fresh token (canRenew).
 * @param {unknown} err
 * @param {boolean} canRenew
 */
export function isFatalRefusal(err, canRenew) {
  if (!(err instanceof HTTPError)) return false
  if (err.status === 401) return !canRenew
  return err.status === 400 || err.status === 403 || err.status === 404
}
