import { QueryClient, QueryClientProvider, useQuery } from '@tanstack/react-query'
import { CourseStreamProvider, useCourseQueries, useCourseStatus } from 'coursestream/react'

const queryClient = new QueryClient()

function Chapters({ courseId }) {
  useCourseQueries(courseId, queryClient) // course events invalidate ['chapters', 'list', courseId] ...
  const status = useCourseStatus(courseId) // re-renders when the connection's status changes
  const chapters = useQuery({
    queryKey: ['chapters', 'list', courseId],
    queryFn: () => fetch(`/api/courses/${courseId}/chapters`).then((res) => res.json()),
  })
  return <p>{status.state}: {chapters.data?.length ?? 0} chapters</p>
}

export function App({ baseUrl, token, courseId }) {
  return (
    <QueryClientProvider client={queryClient}>
      <CourseStreamProvider baseUrl={baseUrl} token={token}>
        <Chapters courseId={courseId} />
      </CourseStreamProvider>
    </QueryClientProvider>
  )
}
