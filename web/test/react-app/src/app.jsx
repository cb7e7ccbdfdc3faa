// The app of web/test/react.test.mjs, bundled by esbuild against the
// installed coursestream tarball (with React 19, or 18 through aliases),
// always in StrictMode (development build: double renders and effects).
// window.T drives it; window.R records what it saw.
import { StrictMode, useEffect, useRef, useState } from 'react'
import { createRoot } from 'react-dom/client'
import { flushSync } from 'react-dom'
import { QueryClient, QueryClientProvider, useQuery } from '@tanstack/react-query'
import { CourseStreamProvider, useCourseEvents, useCourseQueries, useCourseStatus, useOperationMutation } from 'coursestream/react'
import { COURSE_EVENTS } from 'coursestream'
import { DEFAULT_RULES } from 'coursestream/tanstack'
import { App as QuickStart } from './quickstart.jsx'
import { version } from 'react'

const R = { events: [], statuses: [], renders: {}, fetches: { chapters: 0, videos: 0 }, mutations: [] }
const render = (name) => { R.renders[name] = (R.renders[name] ?? 0) + 1 }

// Events: onEvent is a new function each render and records the render it
// came from, so a stale one shows; status changes are recorded once each.
function Events({ courseId, name }) {
  const [n, setN] = useState(0)
  render(name)
  useCourseEvents(courseId, (ev) => {
    R.events.push({ name, id: ev.id, type: ev.type, seenBy: n })
    setN(n + 1)
  })
  const status = useCourseStatus(courseId)
  useEffect(() => { R.statuses.push({ name, state: status.state, transport: status.transport }) }, [name, status])
  return <p className={name}>{status.state} {n}</p>
}

// Lists as the seed had them: useQuery per list; the adapter bound by
// useCourseQueries does the cache work, no effect writes the cache.
function List({ courseId, list }) {
  render(list)
  const q = useQuery({
    queryKey: [list, 'list', courseId],
    queryFn: async () => { R.fetches[list]++; return R.fetches[list] },
    staleTime: Infinity,
  })
  return <p className={list}>{q.data ?? '-'}</p>
}

function Lists({ courseId, client }) {
  render('lists')
  useCourseQueries(courseId, client)
  useCourseEvents(courseId, (ev) => { R.events.push({ name: 'lists', id: ev.id, type: ev.type, at: performance.now() }) })
  return <><List courseId={courseId} list="chapters" /><List courseId={courseId} list="videos" /></>
}

function Save({ courseId, base, timeoutMs, publishIt }) {
  const m = useOperationMutation({
    courseId,
    timeoutMs,
    mutationFn: async (title, { operationId }) => {
      // The backend of the app would publish after its work; here the
      // page publishes the confirming event itself (or, for the timeout,
      // one without the operationId).
      const res = await fetch(`${base}/v1/courses/${encodeURIComponent(courseId)}/events`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ type: 'chapter-update-complete', data: { chapterId: 'ch-1', updates: { title } }, ...(publishIt ? { operationId } : {}) }),
      })
      return { status: res.status, operationId }
    },
    onSuccess: (data) => R.mutations.push({ ok: true, eventOp: data.event.operationId, sentOp: data.result.operationId, type: data.event.type }),
    onError: (err) => R.mutations.push({ ok: false, name: err.name }),
  })
  const fire = useRef(m.mutate)
  fire.current = m.mutate
  useEffect(() => { window.T.save = (title) => fire.current(title) }, [])
  return <p className="save">{m.status}</p>
}

let root = null
let client = null
window.R = R
window.T = {
  react: version,
  rules: Object.keys(DEFAULT_RULES),
  courseEvents: COURSE_EVENTS,
  /** Mounts a scenario in StrictMode: what is a list of ['events', course, name] | ['lists', course] | ['save', course, opts] | ['quickstart', course]. */
  mount(base, what, { token, remounts = 0 } = {}) {
    client = new QueryClient()
    const el = document.createElement('div')
    document.body.append(el)
    root = createRoot(el)
    const tree = (k) => (
      <StrictMode>
        <QueryClientProvider client={client}>
          <CourseStreamProvider baseUrl={base} token={token}>
            {what.map(([kind, course, arg], i) => {
              const key = `${kind}-${i}-${k}`
              if (kind === 'events') return <Events key={key} courseId={course} name={arg} />
              if (kind === 'lists') return <Lists key={key} courseId={course} client={client} />
              if (kind === 'save') return <Save key={key} courseId={course} base={base} {...arg} />
              return null
            })}
          </CourseStreamProvider>
        </QueryClientProvider>
      </StrictMode>
    )
    // Fast remounts: each render gives every component a new key, so
    // React unmounts and mounts them, one commit after the other, under
    // the same provider; T.remount() does one more, later.
    let k = 0
    flushSync(() => root.render(tree(k)))
    while (k < remounts) flushSync(() => root.render(tree(++k)))
    window.T.remount = () => flushSync(() => root.render(tree(++k)))
  },
  quickstart(base, courseId) {
    const el = document.createElement('div')
    el.id = 'quickstart'
    document.body.append(el)
    root = createRoot(el)
    root.render(<StrictMode><QuickStart baseUrl={base} courseId={courseId} /></StrictMode>)
  },
  unmount() { root?.unmount(); root = null },
}
window.appReady = true
