/**
 * The request context of the tool call being handled, in AsyncLocalStorage.
 *
 * Core captures the allow-listed headers and the trace context of each inbound call into a
 * native context object; the binding only makes it ambient, so that handlers can read it and
 * dependency proxies can hand it back to core for the calls they make.
 */

import { AsyncLocalStorage } from "node:async_hooks";

/** What a handler knows about the call it is handling. */
export interface RequestContext {
  /** The propagated headers (lowercase names), already filtered by the allow-list. */
  readonly headers: Record<string, string>;
  readonly traceId: string | null;
  /** The span of the handler that is running; outbound calls become its children. */
  readonly spanId: string | null;
  readonly sampled: boolean;
  readonly traceparent: string | null;
  readonly tracestate: string | null;
  /** Milliseconds left before the inbound call's deadline, if it has one. */
  readonly remainingMs: number | null;
  /**
   * Reports progress to the caller (`progress` so far, of `total`): sent only when the caller
   * asked for progress and is still waiting. Returns whether it was sent.
   */
  progress(progress: number, total?: number | null, message?: string | null): boolean;
  /**
   * Sends `data` (any JSON value) as a log message at `level`: sent only at or above the level
   * the caller opted into (a legacy MCP client gets "info" and up). Returns whether it was sent;
   * throws for a level MCP does not name.
   */
  log(level: LogLevel, data: unknown, logger?: string | null): boolean;
  /** Whether the caller went away: reports are dropped from then on. */
  readonly cancelled: boolean;
  /**
   * Aborted when the request is cancelled: its caller closed the stream or sent
   * `notifications/cancelled`, or its deadline passed. Pass it to what the handler awaits
   * (`fetch(url, { signal })`, `setTimeout` from `node:timers/promises`); dependency calls made
   * in the handler are cancelled by core already, and fail with `CANCELLED`.
   */
  readonly signal: AbortSignal;
  /** Calls `callback` on the JS thread once the request is cancelled (at once if it is); `signal` is built on it. */
  onCancel(callback: () => void): void;
  /** The caller's verified identity (its certificate's SPIFFE ID). */
  readonly caller: string | null;
  /**
   * The capabilities the MCP client declared (`{ sampling: {} }`); null when unknown (a
   * legacy-era request declares them only in its session's `initialize`).
   */
  readonly clientCapabilities: Record<string, unknown> | null;
  /** The client's answers to this tool's earlier `InputRequired`, by request key; null when none. */
  readonly inputResponses: Record<string, unknown> | null;
  /** The `state` of this tool's earlier `InputRequired`, checked by core; null when none. */
  readonly requestState: unknown;
}

/** MCP's log levels, least severe first. */
export type LogLevel = "debug" | "info" | "notice" | "warning" | "error" | "critical" | "alert" | "emergency";

/**
 * Holds the native context object of each handler run; private to the binding.
 * @internal Left out of the published typings (`stripInternal`), which would otherwise need
 * Node's types (`AsyncLocalStorage`) in every consumer's compilation.
 */
export const contextStorage = new AsyncLocalStorage<RequestContext>();

/** The context of the request being handled, or undefined outside a tool call. */
export function currentContext(): RequestContext | undefined {
  return contextStorage.getStore();
}

/** The propagated headers (lowercase names) of the request being handled; {} outside a call. */
export function headers(): Record<string, string> {
  return contextStorage.getStore()?.headers ?? {};
}

/** The trace id of the request being handled, or undefined outside a tool call. */
export function traceId(): string | undefined {
  return contextStorage.getStore()?.traceId ?? undefined;
}

/**
 * The headers of the `withCallHeaders` scopes being run, outer scopes first; core merges them.
 * Private to the binding.
 * @internal
 */
export const callHeadersStorage = new AsyncLocalStorage<Array<[string, string]>>();

/**
 * Runs `fn` in a scope whose calls carry `headers`, set on purpose, and returns what it returns
 * (await it when `fn` is async):
 *
 * ```ts
 * await withCallHeaders({ "x-tenant": "acme" }, async () => proxies.add({ a: 1, b: 2 }));
 * ```
 *
 * The handler each call reaches sees them whatever its agent's allow-list
 * (`TOOLMESH_PROPAGATE_HEADERS`); they go further only where allow-lists name them. Inside a tool
 * call they are added to the headers the handler sends onward. Scopes nest (an inner scope's
 * value of a header wins) and follow the code through `await`s and callbacks, as
 * AsyncLocalStorage does. Core checks them when a call is made: a name that is not a header
 * name, a value that is not a header value, or a header the request sets itself
 * (`content-type`, `traceparent`, ...) rejects the call with a `ToolmeshError`
 * `INVALID_ARGUMENTS` naming the header.
 */
export function withCallHeaders<T>(headers: Record<string, string>, fn: () => T): T {
  const pairs: Array<[string, string]> = [...(callHeadersStorage.getStore() ?? [])];
  for (const [name, value] of Object.entries(headers)) {
    if (typeof value !== "string") {
      throw new TypeError(`withCallHeaders takes string values; header '${name}' is ${typeof value}`);
    }
    pairs.push([name, value]);
  }
  return callHeadersStorage.run(pairs, fn);
}
