// @ts-check
/**
 * Which connections may ride one stream: those with the same base URL,
 * credentials, server-side filters and transport choice. The key is the
 * same text in every tab (a token function gets its identity from the
 * claims of the token it gives), so that it can name a Web Lock, a
 * BroadcastChannel and a group in the SharedWorker.
 * @module coursestream/share-key
 */

/**
 * @import { Settings } from './options.js'
 * @typedef {{
 *   base: string, withCredentials: boolean, types: string[], coalesce: string, coalesceMs: number,
 *   requested: 'auto' | import('./status.js').Transport, fallbackTo: 'poll' | 'longpoll',
 *   tuning: Record<string, number | string>, tokenFunction: boolean,
 * }} FeedSettings what a shared stream is opened with: plain data, safe to post to a worker or tab
 */

/** The tuning options a shared stream runs with (those of its first member). */
const TUNING = ['heartbeatMs', 'pollIntervalMs', 'maxPollIntervalMs', 'longPollWait', 'backoffBaseMs',
  'backoffMaxMs', 'sseRetryMs', 'rememberFallbackMs']

/**
 * The plain settings of the stream a connection would share.
 * @param {Settings} s
 * @returns {FeedSettings}
 */
export function feedSettings(s) {
  /** @type {Record<string, number | string>} */
  const tuning = {}
  for (const k of TUNING) tuning[k] = /** @type {any} */ (s.options)[k]
  return {
    base: s.base.toString(), withCredentials: !!s.options.withCredentials, types: [...s.types].sort(),
    coalesce: s.coalesce, coalesceMs: s.coalesceMs, requested: s.requested, fallbackTo: s.fallbackTo,
    tuning, tokenFunction: typeof s.options.token === 'function',
  }
}

/**
 * The group key: connections with equal keys share a stream.
 * @param {FeedSettings} f
 * @param {string} credential what identifies the credentials (see credentialOf)
 */
export function shareKey(f, credential) {
  return hash(JSON.stringify([f.base, f.withCredentials, f.types, f.coalesce, f.requested, f.fallbackTo, credential]))
}

/**
 * What identifies a token across tabs: a JWT's claims without the times
 * (two tokens of one user and scope, minted at different times, share);
 * any other token as it is; '' for none.
 * @param {string | null} token
 */
export function credentialOf(token) {
  if (!token) return ''
  const claims = jwtClaims(token)
  if (!claims) return `t:${token}`
  const { exp, iat, nbf, jti, ...rest } = claims
  return `c:${JSON.stringify(Object.keys(rest).sort().map((k) => [k, rest[k]]))}`
}

/**
 * A JWT's payload, read without verifying it (the server verifies); null
 * when the token is not a JWT.
 * @param {string} token
 * @returns {Record<string, any> | null}
 */
export function jwtClaims(token) {
  const parts = String(token).split('.')
  if (parts.length !== 3) return null
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/')
    const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4))
    const text = new TextDecoder().decode(Uint8Array.from(bin, (ch) => ch.charCodeAt(0)))
    const v = JSON.parse(text)
    return v && typeof v === 'object' && !Array.isArray(v) ? v : null
  } catch {
    return null
  }
}

/** A JWT's exp in ms since the epoch; NaN when it has none. @param {string | null} token */
export function tokenExpiry(token) {
  const exp = token ? jwtClaims(token)?.exp : undefined
  return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : NaN
}

/**
 * When to renew a token that expires at exp: a minute ahead, or a quarter
 * of its remaining life when that is shorter (at least 500 ms ahead).
 * Returns the delay from now in ms; NaN when there is no expiry.
 * @param {number} exp ms since the epoch
 * @param {number} now
 */
export function renewDelay(exp, now) {
  if (!Number.isFinite(exp)) return NaN
  const left = exp - now
  const ahead = Math.max(500, Math.min(60_000, left / 4))
  return Math.max(0, left - ahead)
}

/** A 53-bit string hash in base 36 (cyrb53): short names, no credentials in them. @param {string} s */
export function hash(s) {
  let h1 = 0xdeadbeef
  let h2 = 0x41c6ce57
  for (let i = 0; i < s.length; i++) {
    const ch = s.charCodeAt(i)
    h1 = Math.imul(h1 ^ ch, 2654435761)
    h2 = Math.imul(h2 ^ ch, 1597334677)
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909)
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909)
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(36)
}
