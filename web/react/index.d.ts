// Types of coursestream/react, the React hooks.
import type { ReactElement, ReactNode } from 'react'
import type { QueryClient, UseMutationOptions, UseMutationResult } from '@tanstack/react-query'
import type { ConnectOptions, CourseEventName, CourseEventOf, ResetEvent, Status, TypedCourseEvent } from '../static/coursestream.js'
import type { BindOptions, QueryClientLike } from '../static/coursestream-tanstack.js'

export interface CourseStreamProviderProps {
  /** Where the service is; default: the page's origin. */
  baseUrl?: string | URL
  /** A JWT, or a function that hands one out; a new value is used from the next request on. */
  token?: ConnectOptions['token']
  /** The other connect() options (transport, fallback, ...), for the connections opened after. */
  options?: Omit<ConnectOptions, 'courseId' | 'baseUrl' | 'token' | 'onEvent' | 'onStatus' | 'onReset'>
  /** How long a connection no component uses stays open (for remounts); default 1000 ms. */
  lingerMs?: number
  /** Gets what a listener threw and malformed frames; default reportError. */
  onError?: (error: unknown) => void
  children?: ReactNode
}

/** Holds the page's connections: one per course, shared by the hooks below it. */
export declare function CourseStreamProvider(props: CourseStreamProviderProps): ReactElement

export interface CourseEventsOptions<K extends CourseEventName> {
  /** Only events of these types reach onEvent (the connection is shared, so it filters here). */
  types?: readonly K[]
  /** The course's resets: the events after the old position are gone; refetch. */
  onReset?: (reset: ResetEvent) => void
}

/**
 * Calls onEvent for each event of the course while mounted; the latest
 * onEvent is called, a new function does not resubscribe.
 */
export declare function useCourseEvents<K extends CourseEventName = CourseEventName>(
  courseId: string,
  onEvent: (event: CourseEventOf<K>) => void,
  options?: CourseEventsOptions<K>,
): void

/** The status of the course's connection; re-renders only when it changes. */
export declare function useCourseStatus(courseId: string): Status

/**
 * Binds the TanStack adapter to the course's connection for the
 * component's life; options.rules is read at each event, the others at
 * binding.
 */
export declare function useCourseQueries(courseId: string, queryClient: QueryClientLike, options?: BindOptions): void

/** What mutationFn gets besides the variables. */
export interface OperationContext {
  /** A fresh crypto.randomUUID(): send it with the request, the server's event carries it back. */
  readonly operationId: string
  /** Aborted when the component unmounts. */
  readonly signal: AbortSignal
}

/** What the mutation succeeds with. */
export interface OperationResult<TResult> {
  /** The course event carrying the operationId. */
  readonly event: TypedCourseEvent
  /** What mutationFn resolved with. */
  readonly result: TResult
}

export interface OperationMutationOptions<TResult, TVariables, TError, TOnMutateResult>
  extends Omit<UseMutationOptions<OperationResult<TResult>, TError, TVariables, TOnMutateResult>, 'mutationFn'> {
  courseId: string
  mutationFn: (variables: TVariables, operation: OperationContext) => Promise<TResult>
  /** How long to wait for the event; default 30000. */
  timeoutMs?: number
}

/**
 * useMutation whose promise settles when the course event carrying its
 * operationId arrives: a TimeoutError after timeoutMs without it, an
 * AbortError on unmount.
 */
export declare function useOperationMutation<TResult = unknown, TVariables = void, TError = Error, TOnMutateResult = unknown>(
  options: OperationMutationOptions<TResult, TVariables, TError, TOnMutateResult>,
  queryClient?: QueryClient,
): UseMutationResult<OperationResult<TResult>, TError, TVariables, TOnMutateResult>
