// Types of coursestream-tanstack.js, the TanStack Query adapter.
import type { CourseEvent, CourseEventMap, CourseEventName, CourseEventOf, ResetEvent, TypedCourseEvent } from './coursestream.js'

export type QueryKey = readonly unknown[]

export interface CourseKeys {
  /** Default ['chapters', 'list', courseId]. */
  chaptersList(courseId: string): QueryKey
  /** Default ['videos', 'list', courseId]. */
  videosList(courseId: string): QueryKey
  /** Default ['uploads', 'progress', courseId, videoId]. */
  /** videoId is undefined for an upload-progress event whose data names no video. */
  uploadProgress(courseId: string, videoId?: string): QueryKey
}

/** The keys an event invalidates. */
export type InvalidationRule<E = CourseEvent<any>> = (event: E, keys: CourseKeys) => QueryKey[] | null | undefined

/** A setQueryData to do: queryKey gets updater's value. */
export interface QueryUpdate {
  queryKey: QueryKey
  updater: (previous: unknown) => unknown
}

/** The older name of QueryUpdate. */
export type ProgressUpdate = QueryUpdate

/** The setQueryData calls an event makes: one, several or none. */
export type UpdateRule<E = CourseEvent<any>> = (event: E, keys: CourseKeys) => QueryUpdate | QueryUpdate[] | null | undefined

/**
 * What an event type does to the cache: a function (the keys to
 * invalidate), or setQueryData and/or invalidate. null: nothing (turns a
 * default off).
 */
export type QueryRule<E = CourseEvent<any>> =
  | InvalidationRule<E>
  | { invalidate?: InvalidationRule<E> | null; setQueryData?: UpdateRule<E> | null }

/** Rules per event type: typed by CourseEventMap; any other type name is allowed too. */
export type QueryRules = { [K in CourseEventName]?: QueryRule<CourseEventOf<K>> | null } & {
  [type: string]: QueryRule<any> | null | undefined
}

export interface BindOptions {
  /** Per event type, over DEFAULT_RULES (null turns one off). Read at each event. */
  rules?: QueryRules
  /** Replace some of the default keys. */
  keys?: Partial<CourseKeys>
  /** The older form of rules: per event type, the keys it invalidates. */
  invalidate?: Record<string, InvalidationRule | null>
  /** The older form of rules['upload-progress'].setQueryData. null: ignore progress. */
  progress?: UpdateRule<CourseEventOf<'upload-progress'>> | null
  /** reset: the keys to invalidate; default both lists. */
  resetKeys?: (courseId: string, keys: CourseKeys) => QueryKey[]
  /**
   * Tells keys apart; default: the client's own hash (QueryClient
   * defaultQueryOptions: TanStack's hashKey or the client's
   * queryKeyHashFn), else hashQueryKey.
   */
  hashKey?: (queryKey: QueryKey) => string
  /** Collect work until no event came for this many ms; default 100. */
  batchMs?: number
  /** ...and for at most this many ms after a batch's first event; default 1000. */
  maxBatchMs?: number
  /** Gets what queryClient threw; default reportError. */
  onError?: (error: unknown) => void
}

/** The two QueryClient methods the adapter calls (a @tanstack/query-core QueryClient has them). */
export interface QueryClientLike {
  invalidateQueries(filters: { queryKey: QueryKey }): unknown
  setQueryData(queryKey: QueryKey, updater: (previous: unknown) => unknown): unknown
}

export interface Subscribable {
  subscribe(listener: (event: TypedCourseEvent | ResetEvent) => void): () => void
}

/**
 * Maps the connection's events to invalidations and updates by rules,
 * batched while events keep coming (batchMs, maxBatchMs): one invalidation
 * per key for a burst. Returns the unbind function.
 */
export declare function bindCourseQueries(queryClient: QueryClientLike, connection: Subscribable, opts?: BindOptions): () => void

export declare const DEFAULT_KEYS: Readonly<CourseKeys>
/** The default rules: today's mapping. */
export declare const DEFAULT_RULES: Readonly<{ [K in keyof CourseEventMap]?: QueryRule<CourseEventOf<K & CourseEventName>> }>
export declare const DEFAULT_INVALIDATIONS: Readonly<Record<string, InvalidationRule>>
export declare function defaultProgress(event: CourseEvent<any>, keys: CourseKeys): QueryUpdate
/** A stable hash of a query key (object keys sorted), as TanStack's hashKey; used only for a client without its own. */
export declare function hashQueryKey(key: QueryKey): string

/** The same function, as the default export. */
export default bindCourseQueries
