// Compiled (not run) by types.test.mjs: the .d.ts files describe the
// library as a TypeScript page would use it.
import { connect, isReset, COURSE_EVENTS, DEFAULTS, HTTPError, backoffDelay, type CourseEvent, type Status, type StreamStats } from '../../static/coursestream.js'
import { bindCourseQueries, DEFAULT_KEYS, hashQueryKey, type QueryKey } from '../../static/coursestream-tanstack.js'
import { QueryClient } from '@tanstack/query-core'

const conn = connect({
  courseId: 'course-123',
  transport: 'auto',
  fallback: 'longpoll',
  token: async () => 'jwt',
  types: ['chapter-update-complete'],
  coalesce: '500ms',
  lastEventId: '42',
  onEvent: (ev: CourseEvent) => { const id: string = ev.id; const op: string | undefined = ev.operationId; void id; void op },
  onReset: ({ courseId, lastEventId }) => { void courseId; void lastEventId },
  onStatus: (s: Status) => {
    if (s.state === 'closed' && s.error instanceof HTTPError) void s.error.status
    if (s.state === 'reconnecting' && s.planned === true) { const inMs: number | undefined = s.retryInMs; void inMs }
  },
  onError: (err) => { void err },
})
const unsubscribe: () => void = conn.subscribe((ev) => {
  if (isReset(ev)) { const at: string = ev.lastEventId; void at } else { const id: string = ev.id; void id }
})
const done: Promise<CourseEvent> = conn.awaitOperation('op-1', 5_000, { signal: AbortSignal.timeout(1_000) })
const transport: 'sse' | 'poll' | 'longpoll' = conn.transport
const last: string | null = conn.lastEventId
const stats: StreamStats = conn.stats
const answered304: number = stats.notModified + stats.polls * 0
const types: readonly string[] = COURSE_EVENTS
const wait: number = backoffDelay(2, DEFAULTS.backoffBaseMs, DEFAULTS.backoffMaxMs)

// A real QueryClient fits the adapter.
const queryClient = new QueryClient()
const unbind: () => void = bindCourseQueries(queryClient, conn, {
  keys: { chaptersList: (courseId) => ['course', courseId, 'chapters'] },
  invalidate: { 'quiz-updated': (ev, keys) => [keys.chaptersList(ev.courseId)], 'video-delete-complete': null },
  batchMs: 50,
})
const key: QueryKey = DEFAULT_KEYS.videosList('c')
const hash: string = hashQueryKey(key)

// @ts-expect-error: transport is one of four names
connect({ courseId: 'c', transport: 'websocket' })
// @ts-expect-error: courseId is required
connect({})

void [unsubscribe, done, transport, last, answered304, types, wait, unbind, hash]
