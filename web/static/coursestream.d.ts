// Types of coursestream.js, the coursestream browser library.

/** The event envelope, the same over SSE and polling. */
export interface CourseEvent<D = unknown> {
  /** Decimal string of the course's sequence: 1, 2, 3, ... */
  readonly id: string
  readonly courseId: string
  readonly type: string
  /** Any JSON value; frozen, as is the whole envelope. */
  readonly data: D
  readonly operationId?: string
  /** Unix milliseconds set by the publishing path. */
  readonly timestamp: number
}

/** chapter-update-complete: a chapter changed. */
export interface ChapterUpdateEvent {
  chapterId: string
  updates: Record<string, unknown>
}

/** chapter-create-complete: a chapter was made. */
export interface ChapterCreateEvent {
  chapterId: string
}

/** chapter-delete-complete. */
export interface ChapterDeleteEvent {
  chapterId: string
}

/** video-update-complete: a video changed. */
export interface VideoUpdateEvent {
  videoId: string
  updates: Record<string, unknown>
}

/** video-delete-complete. */
export interface VideoDeleteEvent {
  videoId: string
}

/** upload-progress: how far an upload has come (0 to 100). */
export interface UploadProgressEvent {
  videoId: string
  progress: number
  status: 'uploading' | 'processing' | 'complete' | 'error'
}

/** upload-complete: the video is ready. */
export interface UploadCompleteEvent {
  videoId: string
}

/**
 * Event type name → the shape of its data. Apps add their own types by
 * declaration merging, and every listener, awaitOperation and adapter rule
 * is typed by it:
 *
 *   declare module 'coursestream' {
 *     interface CourseEventMap { 'quiz-published': { quizId: string } }
 *   }
 *
 * The server delivers events of every type; a type that is not declared
 * here still arrives (a listener that takes the untyped CourseEvent sees
 * it as such).
 */
export interface CourseEventMap {
  'chapter-update-complete': ChapterUpdateEvent
  'chapter-create-complete': ChapterCreateEvent
  'chapter-delete-complete': ChapterDeleteEvent
  'video-update-complete': VideoUpdateEvent
  'video-delete-complete': VideoDeleteEvent
  'upload-progress': UploadProgressEvent
  'upload-complete': UploadCompleteEvent
}

/** The type names of CourseEventMap. */
export type CourseEventName = Extract<keyof CourseEventMap, string>

/**
 * The event of one type of CourseEventMap, its type narrowed and its data
 * typed; of several types, the union of each (which `switch (ev.type)`
 * narrows).
 */
export type CourseEventOf<K extends CourseEventName> = K extends CourseEventName
  ? CourseEvent<CourseEventMap[K]> & { readonly type: K }
  : never

/** Any event of CourseEventMap: a union that `switch (ev.type)` narrows. */
export type TypedCourseEvent = CourseEventOf<CourseEventName>

/** What onReset gets: the events after the old position are gone; refetch, then carry on from lastEventId. */
export interface ResetInfo {
  readonly courseId: string
  readonly lastEventId: string
}

/** A reset as subscribers see it. */
export interface ResetEvent extends ResetInfo {
  readonly type: 'reset'
}

export type Transport = 'sse' | 'poll' | 'longpoll'

/** The seven course events the library listens for over EventSource. */
export type CourseEventType =
  | 'chapter-update-complete'
  | 'chapter-create-complete'
  | 'chapter-delete-complete'
  | 'video-update-complete'
  | 'video-delete-complete'
  | 'upload-progress'
  | 'upload-complete'

/**
 * Why auto uses polling: 'unsupported' (no EventSource), 'remembered' (SSE
 * failed in this browser not long ago), 'refused' (the 503 + fallback that
 * steers to polling, or a refusal not known to be passing: an error status
 * other than 503, 400, 401, 403 and 404, an answer that is not a stream),
 * 'silent' (no open within 2 heartbeats), 'stalled' (the stream did not
 * bring events that a poll saw), 'unreachable' (repeated failures). A 503
 * without fallback (a draining or overloaded instance) and a stream the
 * server ends on purpose never make auto poll.
 */
export type FallbackReason = 'unsupported' | 'remembered' | 'refused' | 'silent' | 'stalled' | 'unreachable'

export interface Status {
  readonly state: 'connecting' | 'open' | 'reconnecting' | 'paused' | 'closed'
  readonly transport: Transport
  /** Set while auto uses polling instead of SSE. */
  readonly reason?: FallbackReason | string
  /**
   * The failure behind 'reconnecting' (an HTTPError for an error status,
   * such as the 503 of a draining instance), or what closed the connection
   * (an HTTPError for 400/401/403/404).
   */
  readonly error?: unknown
  /** When 'reconnecting': the delay before the next attempt. */
  readonly retryInMs?: number
  /**
   * When 'reconnecting': true when the server ended the stream on purpose
   * (a restart or --max-stream-age: its coursestream:drain frame) and
   * asked to reconnect after retryInMs. Not a failure.
   */
  readonly planned?: boolean
  /**
   * Who holds the shared stream this connection rides: 'worker' (the
   * SharedWorker), 'this-tab' (this tab leads, by Web Lock), 'other-tab',
   * or 'page' (this page alone). Absent with share: false, and on a shared
   * connection's first status (before the holder is known) and its 'closed' one.
   */
  readonly sharing?: 'worker' | 'this-tab' | 'other-tab' | 'page'
}

/**
 * The polls of the stream a connection rides (Connection.stats): its own
 * stream, or the shared one as its holder (the SharedWorker, the leading
 * tab) last reported it. Counted from the stream's start; a new holder
 * (the leading tab closed) counts anew.
 */
export interface StreamStats {
  /**
   * Poll requests sent: polling, long-polling, and the conditional poll
   * that checks a silent SSE stream. The first request of a connection,
   * which asks where its course is, is not counted.
   */
  readonly polls: number
  /** Of those, the ones answered 304 Not Modified (nothing new). */
  readonly notModified: number
}

export interface ConnectOptions {
  courseId: string
  /** Where the service is; default: the page's origin. A path prefix is kept. */
  baseUrl?: string | URL
  /** Default 'auto': SSE, falling back to polling when SSE does not work. */
  transport?: 'auto' | Transport
  /** What auto falls back to; default 'poll'. */
  fallback?: 'poll' | 'longpoll'
  /**
   * A JWT: sent as ?token= to EventSource (it cannot set headers) and as
   * Authorization: Bearer to fetch. A function is called before every
   * request, so it can hand out a fresh token, and again ahead of a JWT's
   * exp: the stream moves to the new token from its position.
   */
  token?: string | null | (() => string | null | Promise<string | null>)
  /** Send cookies cross-origin (EventSource withCredentials, fetch credentials 'include'). */
  withCredentials?: boolean
  /** Only these types (?types=). Without it: every type (dispatch=message). */
  types?: string[]
  /** Debounced SSE: '500ms', '2s' or a number of ms (at most 10s). Polling ignores it. */
  coalesce?: string | number
  /** Where the page's own data was loaded; wins over the position saved before a reload. */
  lastEventId?: string | number | null
  /** Save the position in sessionStorage so that a reload resumes; default true. */
  persist?: boolean
  /** Stop polling while the page is hidden; default true. SSE stays open. */
  pauseWhenHidden?: boolean
  /**
   * Default true: ride the one stream that the connections of the page,
   * and the tabs of the origin, share when they have the same baseUrl,
   * credentials, types, coalesce and transport. false: a stream of its own.
   */
  share?: boolean
  /** Each event once, in id order; typed by CourseEventMap. */
  onEvent?: (event: TypedCourseEvent) => void
  onReset?: (reset: ResetInfo) => void
  onStatus?: (status: Status) => void
  /**
   * Gets what a callback (onEvent, onReset, onStatus, a subscriber) threw,
   * and malformed frames. Without it they go to reportError.
   */
  onError?: (error: unknown) => void
  /** The server's --heartbeat; default 15000. */
  heartbeatMs?: number
  /** First idle poll interval; default 2000. */
  pollIntervalMs?: number
  /** The idle interval grows x1.5 per empty poll up to this; default 10000. */
  maxPollIntervalMs?: number
  /** ?wait= of long-polls; default '25s'. */
  longPollWait?: string
  /** Full-jitter backoff base; default 1000. */
  backoffBaseMs?: number
  /** Full-jitter backoff cap; default 30000. */
  backoffMaxMs?: number
  /** auto, after a fallback: the first wait before SSE is tried again (doubled with each failed try); default 5000. */
  sseRetryMs?: number
  /** The longest such wait; this browser keeps to polling meanwhile (localStorage); default 300000 (5 min). */
  rememberFallbackMs?: number
}

export declare class Connection {
  private constructor(options: ConnectOptions)
  readonly courseId: string
  /** The transport in use now. */
  readonly transport: Transport
  /** The id of the last event seen or skipped past; null until known. */
  readonly lastEventId: string | null
  readonly status: Status
  /** The polls of the stream this connection rides: requests sent, answers 304. */
  readonly stats: StreamStats
  readonly closed: boolean
  /** Stops delivery; idempotent. Pending awaitOperation calls reject with an AbortError. */
  close(): void
  /**
   * Resolves with the event carrying operationId (also when it came before
   * the call); rejects with a DOMException named TimeoutError after ms
   * (default 30000; Infinity: never), or AbortError on close or abort.
   */
  awaitOperation(operationId: string, ms?: number, opts?: { signal?: AbortSignal }): Promise<TypedCourseEvent>
  /** Adds a listener for every event and reset; returns its unsubscribe function. */
  subscribe(listener: (event: TypedCourseEvent | ResetEvent) => void): () => void
}

/** Tells a reset from an event envelope: `if (isReset(e)) refetch(); else apply(e)`. */
export declare function isReset<E extends CourseEvent | ResetEvent>(event: E): event is Extract<E, ResetEvent>

/**
 * Opens a subscription to one course. Throws a TypeError on bad options, and
 * for transport 'sse' where EventSource is missing.
 */
export declare function connect(options: ConnectOptions): Connection

/** An error answer of the server. */
export declare class HTTPError extends Error {
  constructor(status: number, message: string, url: string)
  readonly name: 'HTTPError'
  readonly status: number
  readonly url: string
}

export declare const COURSE_EVENTS: readonly CourseEventType[]

export declare const DEFAULTS: Readonly<{
  heartbeatMs: number
  pollIntervalMs: number
  maxPollIntervalMs: number
  longPollWait: string
  backoffBaseMs: number
  backoffMaxMs: number
  sseRetryMs: number
  rememberFallbackMs: number
  operationTimeoutMs: number
}>

/** Full-jitter backoff: a random delay in [0, min(max, base * 2^attempt)). */
export declare function backoffDelay(attempt: number, base: number, max: number): number

/** The same function, as the default export. */
export default connect
