// @ts-check
/**
 * The seam between a connection and its transport drivers (types only:
 * nothing here runs). A driver gets a Port and does everything through it:
 * it never sees the connection.
 * @module coursestream/port
 */

/**
 * What a driver may do to its connection.
 * @import { Options } from './options.js'
 * @import { State, Status } from './status.js'
 * @import { PollRequest, PollResponse, Refusal } from './api.js'
 * @typedef {{
 *   options: Options, listenTypes: readonly string[], accepts: (type: string) => boolean,
 *   coalesceMs: number, readonly position: string | null, readonly etag: string | null,
 *   setETag: (tag: string | null, pos: string) => void, token: () => Promise<string | null>,
 *   sseURL: (token: string | null) => string, requestPoll: (req: PollRequest) => Promise<PollResponse>,
 *   probeStream: (url: string, signal: AbortSignal) => Promise<Refusal>,
 *   ingest: (envs: any[]) => void, advance: (id: string) => void, reset: (data: unknown) => void,
 *   report: (err: unknown) => void, status: (state: State, detail?: Partial<Status>) => void,
 *   isFatal: (err: unknown) => boolean, fail: (err: unknown) => void,
 *   sseOpened: () => void, sseWorked: () => void, sseFailed: (reason: string) => boolean, pollAnswered: (ok: boolean) => void,
 *   owed: (body: any) => unknown, reached: (target: unknown) => boolean, readonly renewable: boolean,
 * }} Port
 *   position: the id of one course's last event, or a shared stream's cursor (then etag, setETag,
 *   advance and poll answers' lastEventId hold cursors too); owed: what a poll answer shows the
 *   stream should bring (null: nothing), reached: whether it has; renewable: the token comes from
 *   a function, to be asked again ahead of a JWT's exp
 */

/**
 * What a connection does to its driver: start it once, stop it once, and
 * tell it when the page is hidden or shows again (or the network is back).
 * @typedef {{start: () => void, stop: () => void, hidden: () => void, visible: () => void}} Driver
 */

export {}
