// Compiled (not run) by react.test.mjs with tsc --strict, against the
// installed tarball: the package's types as an app uses them, with its
// own event type declared by declaration merging.
import { QueryClient, useQuery } from '@tanstack/react-query'
import { connect, isReset, type CourseEvent, type TypedCourseEvent } from 'coursestream'
import { bindCourseQueries, type QueryRules } from 'coursestream/tanstack'
import { CourseStreamProvider, useCourseEvents, useCourseQueries, useCourseStatus, useOperationMutation } from 'coursestream/react'

declare module 'coursestream' {
  interface CourseEventMap {
    'quiz-published': { quizId: string; title: string }
  }
}

const queryClient = new QueryClient()

const rules: QueryRules = {
  'quiz-published': (ev) => [['quizzes', ev.courseId, ev.data.quizId]],
  'upload-progress': {
    setQueryData: (ev) => ({ queryKey: ['uploads', ev.data.videoId], updater: () => ev.data.progress }),
  },
  'chapter-update-complete': {
    setQueryData: (ev) => ({ queryKey: ['chapter', ev.data.chapterId], updater: (old) => ({ ...(old as object), ...ev.data.updates }) }),
    invalidate: null,
  },
  'some-untyped-type': () => [['x']],
  'video-delete-complete': null,
}

function describe(ev: TypedCourseEvent): string {
  switch (ev.type) {
    case 'quiz-published': return ev.data.title
    case 'upload-progress': return `${ev.data.videoId}: ${ev.data.progress}% ${ev.data.status}`
    case 'chapter-update-complete': return ev.data.chapterId
    default: return ev.type
  }
}

export function Course({ courseId }: { courseId: string }) {
  useCourseQueries(courseId, queryClient, { rules, batchMs: 50 })
  const status = useCourseStatus(courseId)
  const state: 'connecting' | 'open' | 'reconnecting' | 'paused' | 'closed' = status.state
  // @ts-expect-error: a state is a string
  const notState: number = status.state
  void notState
  useCourseEvents(courseId, (ev) => { const text: string = describe(ev); void text })
  useCourseEvents(courseId, (ev) => {
    const progress: number = ev.data.progress // narrowed by types
    void progress
  }, { types: ['upload-progress'], onReset: (r) => { const at: string = r.lastEventId; void at } })
  useCourseEvents(courseId, (ev) => { const q: string = ev.data.quizId; void q }, { types: ['quiz-published'] })
  // An untyped listener is accepted too: it sees every event as the plain envelope.
  useCourseEvents(courseId, (ev: CourseEvent) => { const d: unknown = ev.data; void d })
  // @ts-expect-error: upload-progress data has no quizId
  useCourseEvents(courseId, (ev) => { void ev.data.quizId }, { types: ['upload-progress'] })
  // @ts-expect-error: not a declared type
  useCourseEvents(courseId, () => {}, { types: ['no-such-type'] })

  const save = useOperationMutation({
    courseId,
    timeoutMs: 5_000,
    mutationFn: async (title: string, { operationId, signal }) => {
      const res = await fetch('/api/chapters', { method: 'POST', body: JSON.stringify({ title, operationId }), signal })
      return res.status
    },
    onSuccess: ({ event, result }) => { const s: number = result; const op: string | undefined = event.operationId; void s; void op },
  })
  // @ts-expect-error: courseId is required
  useOperationMutation({ mutationFn: async () => 1 })
  // @ts-expect-error: the mutation's data is {event, result}, result a number here
  const wrong: string | undefined = save.data?.result
  void wrong
  const chapters = useQuery({ queryKey: ['chapters', 'list', courseId], queryFn: async () => [] as string[] })
  return <button onClick={() => save.mutate('new title')}>{state} {chapters.data?.length}</button>
}

export function Root({ token }: { token: string }) {
  return <CourseStreamProvider baseUrl="https://events.example.com" token={() => token} lingerMs={500}><Course courseId="c" /></CourseStreamProvider>
}

// The library and the adapter, typed by the same map.
const conn = connect({ courseId: 'c', onEvent: (ev) => { if (ev.type === 'quiz-published') { const t: string = ev.data.title; void t } } })
const off = conn.subscribe((ev) => { if (isReset(ev)) void ev.lastEventId; else void describe(ev) })
const unbind = bindCourseQueries(queryClient, conn, { rules })
const done: Promise<TypedCourseEvent> = conn.awaitOperation('op-1')
// @ts-expect-error: a rule's keys are arrays
bindCourseQueries(queryClient, conn, { rules: { 'quiz-published': () => 'quizzes' } })
void [off, unbind, done]
