// Types of coursestream-tanstack.js, the TanStack Query adapter.
import type { CourseEvent, ResetEvent } from './coursestream.js'

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
export type InvalidationRule = (event: CourseEvent<any>, keys: CourseKeys) => QueryKey[] | null | undefined

/** A setQueryData to do: queryKey gets updater's value. */
export interface ProgressUpdate {
  queryKey: QueryKey
  updater: (previous: unknown) => unknown
}

export interface BindOptions {
  /** Replace some of the default keys. */
  keys?: Partial<CourseKeys>
  /** Per event type: the keys it invalidates (merged over the defaults; null turns one off). */
  invalidate?: Record<string, InvalidationRule | null>
  /** upload-progress: what to set; default: the progress key of data.videoId (of the course without one) gets data. null: ignore progress. */
  progress?: ((event: CourseEvent<any>, keys: CourseKeys) => ProgressUpdate | null | undefined) | null
  /** reset: the keys to invalidate; default both lists. */
  resetKeys?: (courseId: string, keys: CourseKeys) => QueryKey[]
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
  subscribe(listener: (event: CourseEvent | ResetEvent) => void): () => void
}

/**
 * Maps the connection's events to invalidations and progress updates,
 * batched while events keep coming (batchMs, maxBatchMs): one invalidation
 * per key for a burst. Returns the unbind function.
 */
export declare function bindCourseQueries(queryClient: QueryClientLike, connection: Subscribable, opts?: BindOptions): () => void

export declare const DEFAULT_KEYS: Readonly<CourseKeys>
export declare const DEFAULT_INVALIDATIONS: Readonly<Record<string, InvalidationRule>>
export declare function defaultProgress(event: CourseEvent<any>, keys: CourseKeys): ProgressUpdate
/** A stable hash of a query key (object keys sorted), as TanStack's hashKey. */
export declare function hashQueryKey(key: QueryKey): string

/** The same function, as the default export. */
export default bindCourseQueries
