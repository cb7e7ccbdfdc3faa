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
 * Default mapping (every key is configurable):
 *   chapter-*-complete                       invalidate ['chapters','list',courseId]
 *   video-*-complete, upload-complete        invalidate ['videos','list',courseId] and the chapters list
 *   upload-progress                          setQueryData(['uploads','progress',courseId,videoId], data): no refetch
 *                                            (['uploads','progress',courseId] when data has no videoId)
 *   reset                                    invalidate both lists
 *
 * Work is collected while events keep coming (until none came for
 * `batchMs`, default 100, and for at most `maxBatchMs`, default 1000, after
 * the first), then each distinct key is invalidated once and each progress
 * key set once, to its latest value: a burst of events, however its events
 * arrive (one poll answer, or one SSE message each), is one invalidation
 * per key. The adapter only calls queryClient.invalidateQueries({queryKey})
 * and queryClient.setQueryData.
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
 * @typedef {{queryKey: QueryKey, updater: (previous: unknown) => unknown}} ProgressUpdate
 * @typedef {{
 *   keys?: Partial<CourseKeys>,
 *   invalidate?: Record<string, InvalidationRule | null>,
 *   progress?: ((event: CourseEvent, keys: CourseKeys) => ProgressUpdate | null | undefined) | null,
 *   resetKeys?: (courseId: string, keys: CourseKeys) => QueryKey[],
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
 * A stable hash of a query key, as TanStack's hashKey: object keys sorted.
 * @param {QueryKey} key
 */
export function hashQueryKey(key) {
  return JSON.stringify(key, (_, v) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.keys(v).sort().reduce((acc, k) => { acc[k] = v[k]; return acc }, /** @type {any} */ ({}))
      : v)
}

/**
 * Maps the connection's events to cache work on queryClient. Returns the
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
  /** @type {Record<string, InvalidationRule | null>} */
  const rules = { ...DEFAULT_INVALIDATIONS, ...(opts.invalidate ?? {}) }
  const progress = opts.progress === undefined ? defaultProgress : opts.progress
  const resetKeys = opts.resetKeys ?? ((courseId, k) => [k.chaptersList(courseId), k.videosList(courseId)])
  const batchMs = Math.max(0, opts.batchMs ?? 100)
  const maxBatchMs = Math.max(batchMs, opts.maxBatchMs ?? 1000)

  /** @type {Map<string, QueryKey>} */
  let invalidations = new Map()
  /** @type {Map<string, ProgressUpdate>} */
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
    for (const queryKey of list ?? []) invalidations.set(hashQueryKey(queryKey), queryKey)
  }

  const unsubscribe = connection.subscribe((ev) => {
    if (!bound || !ev || typeof ev.type !== 'string') return
    if (ev.type === 'reset') {
      invalidate(resetKeys(ev.courseId, keys))
    } else if (ev.type === 'upload-progress') {
      const u = progress ? progress(ev, keys) : null
      if (!u) return
      const h = hashQueryKey(u.queryKey)
      updates.delete(h) // keep event order among keys; the latest value wins
      updates.set(h, u)
    } else {
      const rule = rules[ev.type]
      if (!rule) return
      invalidate(rule(ev, keys))
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
