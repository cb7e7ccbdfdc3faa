// @ts-check
/**
 * A token that a stream held away from the page (in the SharedWorker, or
 * in the tab that leads) asks for over a message: kept while it is good
 * (a JWT until shortly before its exp), so that polling does not ask for
 * one per request.
 * @module coursestream/token-cache
 */
import { renewDelay, tokenExpiry } from './share-key.js'

/** Answers token requests from a cached token, asking ask() when it is stale. */
export class TokenCache {
  /** @type {{token: string | null, until: number} | null} */
  #held = null
  #ask

  /** @param {() => Promise<string | null>} ask */
  constructor(ask) {
    this.#ask = ask
  }

  /** @returns {Promise<string | null>} */
  async get() {
    const now = Date.now()
    if (this.#held && now < this.#held.until) return this.#held.token
    const token = await this.#ask()
    const delay = renewDelay(tokenExpiry(token), Date.now())
    // A token without exp is asked again each time (the function may rotate it).
    this.#held = Number.isFinite(delay) ? { token, until: Date.now() + delay - 1_000 } : null
    return token
  }
}
