// @ts-check
/**
 * React hooks for coursestream (the package's `coursestream/react` entry;
 * for bundlers: it imports `react` and `@tanstack/react-query`, so it is
 * not one of the files the binary serves to plain pages).
 *
 *   <CourseStreamProvider baseUrl={url} token={jwt}>
 *     useCourseEvents(courseId, (ev) => ..., { types: ['upload-progress'] })
 *     const status = useCourseStatus(courseId)
 *     useCourseQueries(courseId, queryClient, { rules })
 *     const save = useOperationMutation({ courseId, mutationFn: (vars, { operationId }) => post(vars, operationId) })
 *
 * The provider holds the page's connections: one connect() per course,
 * shared and reference-counted among the hooks that use it, and closed
 * `lingerMs` (default 1000) after the last one leaves, so that StrictMode's
 * double effects and fast remounts reuse the connection instead of opening
 * a second stream. Nothing connects during render: connections open in
 * effects (and useSyncExternalStore's subscribe), and close in their
 * cleanups.
 *
 * @module coursestream/react
 */
import {
  createContext, createElement, useCallback, useContext, useEffect, useInsertionEffect, useMemo, useRef,
  useSyncExternalStore,
} from 'react'
import { useMutation } from '@tanstack/react-query'
import { connect } from '../static/coursestream.js'
import { bindCourseQueries } from '../static/coursestream-tanstack.js'

/**
 * @import { ReactNode } from 'react'
 * @import { QueryClient } from '@tanstack/react-query'
 * @import { Connection, ConnectOptions, Status } from '../static/coursestream.js'
 * @import { BindOptions, QueryClientLike } from '../static/coursestream-tanstack.js'
 */

/** Default of the provider's lingerMs. */
const LINGER_MS = 1000

/**
 * One course's shared connection.
 * @typedef {{
 *   conn: Connection,
 *   refs: number,
 *   statusListeners: Set<() => void>,
 *   closeTimer: ReturnType<typeof setTimeout> | undefined,
 * }} Entry
 * @typedef {{conn: Connection, onStatus: (listener: () => void) => () => void, release: () => void}} Lease
 * @typedef {{
 *   baseUrl?: string | URL,
 *   token?: () => string | null | Promise<string | null>,
 *   options: () => Omit<ConnectOptions, 'courseId'>,
 *   lingerMs: number,
 * }} StreamsConfig
 */

/**
 * The connections of one provider, per course: acquire() opens or shares,
 * the lease's release() gives it back; the last release closes the
 * connection lingerMs later unless it is acquired again meanwhile.
 */
class Streams {
  /** @type {Map<string, Entry>} */
  #entries = new Map()
  #config

  /** @param {StreamsConfig} config */
  constructor(config) {
    this.#config = config
  }

  /**
   * The course's connection, opened now if it is not open; release the
   * lease exactly once.
   * @param {string} courseId
   * @returns {Lease}
   */
  acquire(courseId) {
    let entry = this.#entries.get(courseId)
    if (entry && entry.refs === 0 && entry.conn.closed) { // closed by the server's refusal: try again
      clearTimeout(entry.closeTimer)
      this.#entries.delete(courseId)
      entry = undefined
    }
    if (!entry) entry = this.#open(courseId)
    const e = entry
    clearTimeout(e.closeTimer)
    e.closeTimer = undefined
    e.refs++
    let held = true
    return {
      conn: e.conn,
      onStatus: (listener) => {
        e.statusListeners.add(listener)
        return () => { e.statusListeners.delete(listener) }
      },
      release: () => {
        if (!held) return
        held = false
        if (--e.refs > 0) return
        e.closeTimer = setTimeout(() => {
          if (e.refs > 0 || this.#entries.get(courseId) !== e) return
          this.#entries.delete(courseId)
          e.conn.close()
        }, this.#config.lingerMs)
      },
    }
  }

  /**
   * The course's entry, if a connection is held (or lingering).
   * @param {string} courseId
   */
  peek(courseId) {
    return this.#entries.get(courseId)
  }

  /** @param {string} courseId */
  #open(courseId) {
    /** @type {Set<() => void>} */
    const statusListeners = new Set()
    const { baseUrl, token, options } = this.#config
    const conn = connect({
      ...options(),
      courseId,
      ...(baseUrl != null ? { baseUrl } : {}),
      ...(token ? { token } : {}),
      onStatus: () => { for (const l of [...statusListeners]) l() },
    })
    /** @type {Entry} */
    const entry = { conn, refs: 0, statusListeners, closeTimer: undefined }
    this.#entries.set(courseId, entry)
    return entry
  }
}

const StreamsContext = createContext(/** @type {Streams | null} */ (null))

/** @returns {Streams} */
function useStreams() {
  const streams = useContext(StreamsContext)
  if (!streams) throw new Error('coursestream/react: no <CourseStreamProvider> above this component')
  return streams
}

/**
 * A ref that holds the latest value, updated before any effect runs (so an
 * event handler or a subscription reads the latest without re-subscribing).
 * @template T
 * @param {T} value
 */
function useLatest(value) {
  const ref = useRef(value)
  useInsertionEffect(() => { ref.current = value })
  return ref
}

/**
 * Holds the page's coursestream connections for the components below it.
 * A change of baseUrl (or token given or taken away) reopens them; a new
 * token is used from the next request on, without reconnecting (the
 * connections get it through a function). `options` (transport, types ...)
 * apply to the connections opened after.
 * @param {{
 *   baseUrl?: string | URL,
 *   token?: ConnectOptions['token'],
 *   options?: Omit<ConnectOptions, 'courseId' | 'baseUrl' | 'token' | 'onEvent' | 'onStatus' | 'onReset'>,
 *   lingerMs?: number,
 *   onError?: (error: unknown) => void,
 *   children?: ReactNode,
 * }} props
 */
export function CourseStreamProvider({ baseUrl, token, options, lingerMs = LINGER_MS, onError, children }) {
  const tokenRef = useLatest(token)
  const optionsRef = useLatest(options)
  const onErrorRef = useLatest(onError)
  const hasToken = token != null
  const base = baseUrl == null ? undefined : String(baseUrl)
  const streams = useMemo(() => new Streams({
    baseUrl: base,
    token: hasToken
      ? () => {
        const t = tokenRef.current
        return typeof t === 'function' ? t() : (t ?? null)
      }
      : undefined,
    options: () => ({
      ...(optionsRef.current ?? {}),
      onError: (/** @type {unknown} */ err) => {
        const f = onErrorRef.current
        if (f) f(err)
        else reportError(err)
      },
    }),
    lingerMs: Math.max(0, lingerMs),
  }), [base, hasToken, lingerMs, tokenRef, optionsRef, onErrorRef])
  return createElement(StreamsContext.Provider, { value: streams }, children)
}

/**
 * Calls onEvent for each event of the course while the component is
 * mounted (the latest onEvent: a new function does not resubscribe).
 * options.types: only these types; options.onReset: the course's resets.
 * @param {string} courseId
 * @param {(event: any) => void} onEvent
 * @param {{types?: readonly string[], onReset?: (reset: any) => void}} [options]
 */
export function useCourseEvents(courseId, onEvent, options = {}) {
  const streams = useStreams()
  const onEventRef = useLatest(onEvent)
  const onResetRef = useLatest(options.onReset)
  const typesKey = options.types ? JSON.stringify([...options.types]) : ''
  useEffect(() => {
    const lease = streams.acquire(courseId)
    /** @type {Set<string> | null} */
    const only = typesKey ? new Set(JSON.parse(typesKey)) : null
    const unsubscribe = lease.conn.subscribe((ev) => {
      if (ev.type === 'reset') {
        onResetRef.current?.(ev)
      } else if (!only || only.has(ev.type)) {
        onEventRef.current(ev)
      }
    })
    return () => {
      unsubscribe()
      lease.release()
    }
  }, [streams, courseId, typesKey, onEventRef, onResetRef])
}

/**
 * A placeholder status, until the course's connection is held.
 * @type {Readonly<Status>}
 */
const CONNECTING = Object.freeze({ state: 'connecting', transport: 'sse' })

/**
 * The status of the course's connection; the component re-renders only
 * when it changes (useSyncExternalStore).
 * @param {string} courseId
 * @returns {Status}
 */
export function useCourseStatus(courseId) {
  const streams = useStreams()
  const subscribe = useCallback((/** @type {() => void} */ onChange) => {
    const lease = streams.acquire(courseId)
    const off = lease.onStatus(onChange)
    return () => {
      off()
      lease.release()
    }
  }, [streams, courseId])
  const snapshot = useCallback(() => streams.peek(courseId)?.conn.status ?? CONNECTING, [streams, courseId])
  return useSyncExternalStore(subscribe, snapshot, snapshot)
}

/**
 * Binds the TanStack adapter (bindCourseQueries) to the course's
 * connection for the component's life. options.rules is read at each
 * event (a new rules object takes effect without rebinding); the other
 * options are read when the binding is made (mount, or a change of
 * courseId or queryClient).
 * @param {string} courseId
 * @param {QueryClientLike} queryClient
 * @param {BindOptions} [options]
 */
export function useCourseQueries(courseId, queryClient, options) {
  const streams = useStreams()
  const optionsRef = useLatest(options)
  useEffect(() => {
    const lease = streams.acquire(courseId)
    const unbind = bindCourseQueries(queryClient, lease.conn, {
      ...(optionsRef.current ?? {}),
      get rules() { return optionsRef.current?.rules },
    })
    return () => {
      unbind()
      lease.release()
    }
  }, [streams, courseId, queryClient, optionsRef])
}

/**
 * TanStack's useMutation for an operation that the server confirms with a
 * course event: each mutate makes an operationId (crypto.randomUUID), and
 * calls mutationFn(variables, {operationId, signal}); the mutation
 * succeeds with {event, result} when the course event carrying that
 * operationId arrives, and fails with a TimeoutError after timeoutMs
 * (default 30000), or an AbortError when the component unmounts.
 * @param {{
 *   courseId: string,
 *   mutationFn: (variables: any, operation: {operationId: string, signal: AbortSignal}) => Promise<any>,
 *   timeoutMs?: number,
 *   [option: string]: any,
 * }} options the other options go to useMutation
 * @param {QueryClient} [queryClient]
 */
export function useOperationMutation(options, queryClient) {
  const { courseId, mutationFn, timeoutMs, ...rest } = options
  const streams = useStreams()
  const latest = useLatest({ courseId, mutationFn, timeoutMs, streams })
  const pending = useRef(/** @type {Set<AbortController>} */ (new Set()))
  // The course's connection is held while mounted, so that the event is
  // seen however soon it comes; unmounting aborts what is pending.
  useEffect(() => {
    const lease = streams.acquire(courseId)
    const mine = pending.current
    return () => {
      for (const ac of mine) ac.abort()
      mine.clear()
      lease.release()
    }
  }, [streams, courseId])
  return useMutation({
    ...rest,
    mutationFn: async (/** @type {unknown} */ variables) => {
      const { courseId, mutationFn, timeoutMs, streams } = latest.current
      const operationId = crypto.randomUUID()
      const ac = new AbortController()
      pending.current.add(ac)
      const lease = streams.acquire(courseId)
      try {
        // Waiting starts before the request, and awaitOperation also
        // finds an event that came before it was called.
        const confirmed = lease.conn.awaitOperation(operationId, timeoutMs, { signal: ac.signal })
        confirmed.catch(() => {}) // awaited below; mutationFn may fail first
        const result = await mutationFn(variables, { operationId, signal: ac.signal })
        const event = await confirmed
        return { event, result }
      } finally {
        ac.abort() // the wait's timer, when mutationFn failed
        pending.current.delete(ac)
        lease.release()
      }
    },
  }, queryClient)
}
