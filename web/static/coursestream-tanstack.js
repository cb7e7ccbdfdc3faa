// @ts-check
/**
 * TanStack Query adapter for coursestream: course events become cache work,
 * in this layer only (the transport publishes; the cache layer subscribes).
 * This is the fix of the observer plan for its infinite re-render loops:
 * nothing here is a React effect, and a burst of events is one invalidation
 * per query key.
 *
 *   import { connect } from '/coursestream.js'
 *   import { bindCourseQueries } from '/coursestream-tanstack.js'
 *   const conn = connect({ courseId })
 *   const unbind = bindCourseQueries(queryClient, conn)
 *
 * Rules, per event type (DEFAULT_RULES; `rules` replaces a type's rule,
 * `null` turns it off, and a type no rule names does nothing):
 *   chapter-*-complete                       invalidate ['chapters','list',courseId]
 *   video-*-complete, upload-complete        invalidate ['videos','list',courseId] and the chapters list
 *   upload-progress                          setQueryData(['uploads','progress',courseId,videoId], data): no refetch
 *                                            (['uploads','progress',courseId] when data has no videoId)
 *   reset                                    invalidate both lists (resetKeys)
 * A rule is a function (the keys to invalidate, from the event) or
 * {invalidate, setQueryData}: setQueryData returns {queryKey, updater}
 * (or a list of them).
 *
 *   bindCourseQueries(queryClient, conn, { rules: {
 *     'quiz-published': (ev) => [['quizzes', ev.courseId]],
 *     'chapter-update-complete': { setQueryData: (ev) => ({ queryKey: ['chapter', ev.data.chapterId],
 *       updater: (old) => ({ ...old, ...ev.data.updates }) }) },
 *   } })
 *
 * Work is collected while events keep coming (until none came for
 * `batchMs`, default 100, and for at most `maxBatchMs`, default 1000, after
 * the first), then each distinct key is invalidated once and each updated
 * key set once (the batch's updaters of that key composed in event order):
 * a burst of events, however its events arrive (one poll answer, or one SSE
 * message each), is one invalidation per key. The adapter only calls
 * queryClient.invalidateQueries({queryKey}) and queryClient.setQueryData,
 * and, to tell keys apart with TanStack's own hash (the client's
 * queryKeyHashFn included), queryClient.defaultQueryOptions where the
 * client has it: so this file, served to pages with no build step,
 * imports nothing from @tanstack/query-core.
 *
 * @module coursestream-tanstack
 */
import { rethrowLater } from './coursestream/errors.js'

/**
 * @typedef {readonly unknown[]} QueryKey
 * @typedef {{id: string, courseId: string, type: string, data: any, operationId?: string, timestamp: number}} CourseEvent
 * @typedef {{
 *   chaptersList: (courseId: string) => QueryKey,
 *   videosList: (courseId: string) => QueryKey,
 *   uploadProgress: (courseId: string, videoId?: string) => QueryKey,
 * }} CourseKeys
 * @typedef {(event: CourseEvent, keys: CourseKeys) => QueryKey[] | null | undefined} InvalidationRule
 * @typedef {{queryKey: QueryKey, updater: (previous: unknown) => unknown}} QueryUpdate
 * @typedef {QueryUpdate} ProgressUpdate
 * @typedef {(event: CourseEvent, keys: CourseKeys) => QueryUpdate | QueryUpdate[] | null | undefined} UpdateRule
 * @typedef {InvalidationRule | {invalidate?: InvalidationRule | null, setQueryData?: UpdateRule | null}} QueryRule
 * @typedef {{
 *   rules?: Record<string, QueryRule | null>,
 *   keys?: Partial<CourseKeys>,
 *   invalidate?: Record<string, InvalidationRule | null>,
 *   progress?: UpdateRule | null,
 *   resetKeys?: (courseId: string, keys: CourseKeys) => QueryKey[],
 *   hashKey?: (queryKey: QueryKey) => string,
 *   batchMs?: number,
 *   maxBatchMs?: number,
 *   onError?: (error: unknown) => void,
 * }} BindOptions
 * @typedef {{
 *   invalidateQueries: (filters: {queryKey: QueryKey}) => unknown,
 *   setQueryData: (queryKey: QueryKey, updater: (previous: unknown) => unknown) => unknown,
 * }} QueryClientLike
 * @typedef {{subscribe: (listener: (event: any) => void) => () => void}} Subscribable
 */

/** @type {Readonly<CourseKeys>} */
export const DEFAULT_KEYS = Object.freeze({
  chaptersList: (courseId) => ['chapters', 'list', courseId],
  videosList: (courseId) => ['videos', 'list', courseId],
  uploadProgress: (courseId, videoId) => (videoId == null ? ['uploads', 'progress', courseId] : ['uploads', 'progress', courseId, videoId]),
})

/** @type {InvalidationRule} */
const chapters = (ev, k) => [k.chaptersList(ev.courseId)]
/** @type {InvalidationRule} */
const videos = (ev, k) => [k.videosList(ev.courseId), k.chaptersList(ev.courseId)]

/** The default invalidations per event type. */
export const DEFAULT_INVALIDATIONS = Object.freeze({
  'chapter-update-complete': chapters,
  'chapter-create-complete': chapters,
  'chapter-delete-complete': chapters,
  'video-update-complete': videos,
  'video-delete-complete': videos,
  'upload-complete': videos,
})

/**
 * The default upload-progress update: the progress key of data.videoId (of
 * the course when data names no video) is set to the event's data (no
 * refetch).
 * @param {CourseEvent} ev
 * @param {CourseKeys} keys
 * @returns {ProgressUpdate}
 */
export function defaultProgress(ev, keys) {
  const videoId = ev.data && typeof ev.data === 'object' ? ev.data.videoId : undefined
  return { queryKey: keys.uploadProgress(ev.courseId, videoId == null ? undefined : String(videoId)), updater: () => ev.data }
}


/**
 * The default rules, per event type: today's mapping (the seed's keys).
 * A type with no rule does nothing.
 * @type {Readonly<Record<string, QueryRule>>}
 */
export const DEFAULT_RULES = Object.freeze({
  ...Object.fromEntries(Object.entries(DEFAULT_INVALIDATIONS).map(([type, invalidate]) => [type, Object.freeze({ invalidate })])),
  'upload-progress': Object.freeze({ setQueryData: defaultProgress }),
})

/**
 * A stable hash of a query key, as TanStack's hashKey: object keys sorted.
 * The adapter uses it only for a client that has neither TanStack's own
 * hash (a QueryClient's defaultQueryOptions) nor a `hashKey` option.
 * @param {QueryKey} key
 */
export function hashQueryKey(key) {
  return JSON.stringify(key, (_, v) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.keys(v).sort().reduce((acc, k) => { acc[k] = v[k]; return acc }, /** @type {any} */ ({}))
      : v)
}

/**
 * The hash that tells two query keys apart: opts.hashKey; else the
 * client's own, as TanStack computes it for a query (its hashKey, or the
 * client's queryKeyHashFn), through QueryClient.defaultQueryOptions, so
 * that the served file needs no import of @tanstack/query-core; else
 * hashQueryKey.
 * @param {QueryClientLike} queryClient
 * @param {BindOptions} opts
 * @returns {(key: QueryKey) => string}
 */
function hasherOf(queryClient, opts) {
  if (typeof opts.hashKey === 'function') return opts.hashKey
  // `in` first: a client that lacks the method is never asked for it.
  const qc = /** @type {any} */ (queryClient)
  if ('defaultQueryOptions' in qc && typeof qc.defaultQueryOptions === 'function') {
    return (queryKey) => {
      const h = qc.defaultQueryOptions({ queryKey }).queryHash
      return typeof h === 'string' ? h : hashQueryKey(queryKey)
    }
  }
  return hashQueryKey
}

/**
 * The rules before opts.rules: the defaults, with the older options
 * (invalidate, progress) over them.
 * @param {BindOptions} opts
 * @returns {Record<string, QueryRule | null>}
 */
function baseRules(opts) {
  /** @type {Record<string, QueryRule | null>} */
  const table = { ...DEFAULT_RULES }
  for (const [type, rule] of Object.entries(opts.invalidate ?? {})) table[type] = rule ? { invalidate: rule } : null
  if (opts.progress !== undefined) table['upload-progress'] = opts.progress ? { setQueryData: opts.progress } : null
  return table
}

/**
 * The rule of an event type: own properties only, so that a type named
 * like an Object.prototype member ('constructor', 'toString') is unknown.
 * @param {Record<string, QueryRule | null> | undefined} table
 * @param {string} type
 * @returns {QueryRule | null | undefined} undefined: the table does not name the type
 */
function ruleIn(table, type) {
  return table && Object.hasOwn(table, type) ? table[type] : undefined
}

/**
 * Maps the connection's events to cache work on queryClient, by rules:
 * opts.rules (read at each event, so it may be a getter), over the older
 * options `invalidate` and `progress`, over DEFAULT_RULES. Returns the
 * unbind function: it unsubscribes and drops work not yet done.
 * @param {QueryClientLike} queryClient
 * @param {Subscribable} connection
 * @param {BindOptions} [opts]
 * @returns {() => void}
 */
export function bindCourseQueries(queryClient, connection, opts = {}) {
  if (!queryClient || typeof queryClient.invalidateQueries !== 'function' || typeof queryClient.setQueryData !== 'function') {
    throw new TypeError('bindCourseQueries: queryClient must have invalidateQueries and setQueryData')
  }
  if (!connection || typeof connection.subscribe !== 'function') {
    throw new TypeError('bindCourseQueries: connection must have subscribe (from connect())')
  }
  /** @type {CourseKeys} */
  const keys = { ...DEFAULT_KEYS, ...(opts.keys ?? {}) }
  const base = baseRules(opts)
  const resetKeys = opts.resetKeys ?? ((courseId, k) => [k.chaptersList(courseId), k.videosList(courseId)])
  const batchMs = Math.max(0, opts.batchMs ?? 100)
  const maxBatchMs = Math.max(batchMs, opts.maxBatchMs ?? 1000)
  const hash = hasherOf(queryClient, opts)

  /** @type {Map<string, QueryKey>} */
  let invalidations = new Map()
  /** @type {Map<string, QueryUpdate>} */
  let updates = new Map()
  let bound = true
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer
  let firstAt = 0 // when the batch being collected began

  /** @param {unknown} err */
  const report = (err) => {
    if (opts.onError) {
      try { opts.onError(err); return } catch (e) { err = e }
    }
    rethrowLater(err)
  }

  const flush = () => {
    clearTimeout(timer)
    timer = undefined
    const inv = invalidations
    const upd = updates
    invalidations = new Map()
    updates = new Map()
    if (!bound) return
    for (const u of upd.values()) {
      try {
        queryClient.setQueryData(u.queryKey, u.updater)
      } catch (err) {
        report(err)
      }
    }
    for (const queryKey of inv.values()) {
      try {
        const p = /** @type {any} */ (queryClient.invalidateQueries({ queryKey }))
        if (p && typeof p.catch === 'function') p.catch(report)
      } catch (err) {
        report(err)
      }
    }
  }

  // A debounce: each event pushes the flush batchMs further, up to
  // maxBatchMs after the batch's first event.
  const schedule = () => {
    const now = Date.now()
    if (timer === undefined) {
      firstAt = now
    } else if (now - firstAt >= maxBatchMs) {
      flush() // at the bound: now, not after a timer that a dense stream keeps ahead of
      return
    }
    clearTimeout(timer)
    timer = setTimeout(flush, Math.min(batchMs, firstAt + maxBatchMs - now))
  }

  /** @param {QueryKey[] | null | undefined} list */
  const invalidate = (list) => {
    for (const queryKey of list ?? []) invalidations.set(hash(queryKey), queryKey)
  }

  // One setQueryData per key per batch: the batch's updaters of a key run
  // in event order, composed, so that an updater that builds on the
  // previous value misses no event, and a value-setting one (progress)
  // leaves the latest.
  /** @param {QueryUpdate | QueryUpdate[] | null | undefined} list */
  const update = (list) => {
    for (const u of list == null ? [] : Array.isArray(list) ? list : [list]) {
      if (!u || typeof u.updater !== 'function') continue
      const h = hash(u.queryKey)
      const prev = updates.get(h)
      updates.delete(h) // keep event order among keys
      updates.set(h, prev ? { queryKey: u.queryKey, updater: (old) => u.updater(prev.updater(old)) } : u)
    }
  }

  const unsubscribe = connection.subscribe((ev) => {
    if (!bound || !ev || typeof ev.type !== 'string') return
    if (ev.type === 'reset') {
      invalidate(resetKeys(ev.courseId, keys))
    } else {
      const own = ruleIn(opts.rules, ev.type)
      const rule = own === undefined ? ruleIn(base, ev.type) : own
      if (!rule) return
      if (typeof rule === 'function') {
        invalidate(rule(ev, keys))
      } else {
        if (rule.setQueryData) update(rule.setQueryData(ev, keys))
        if (rule.invalidate) invalidate(rule.invalidate(ev, keys))
      }
    }
    if (invalidations.size > 0 || updates.size > 0) schedule()
  })

  return () => {
    if (!bound) return
    bound = false
    unsubscribe()
    clearTimeout(timer)
    timer = undefined
    invalidations.clear()
    updates.clear()
  }
}

export default bindCourseQueries
