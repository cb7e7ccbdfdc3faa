// @ts-check
/**
 * Web Storage that may be missing, disabled or full: reads give null and
 * writes give up, so that the features built on it degrade and delivery
 * does not.
 * @module coursestream/storage
 */

/** @typedef {'sessionStorage' | 'localStorage'} StorageKind */

/** @param {StorageKind} kind @param {string} key @returns {string | null} */
export function storageGet(kind, key) {
  try {
    const s = /** @type {any} */ (globalThis)[kind]
    return s ? s.getItem(key) : null
  } catch {
    return null // storage disabled (privacy mode, sandboxed frame)
  }
}

/** @param {StorageKind} kind @param {string} key @param {string | null} value null removes the key */
export function storageSet(kind, key, value) {
  try {
    const s = /** @type {any} */ (globalThis)[kind]
    if (!s) return
    if (value === null) s.removeItem(key)
    else s.setItem(key, value)
  } catch {
    // full or disabled: the feature degrades, delivery does not
  }
}
