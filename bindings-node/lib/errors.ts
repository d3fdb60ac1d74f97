/**
 * The mesh's error model as JS errors. Every error comes from core with a stable numeric `code`
 * and `kind` (e.g. "DEPENDENCY_UNRESOLVED"); the class is picked by the code's group, so
 * `instanceof DiscoveryError` catches every 3xxx error.
 */

import { addon } from "./native.js";

export class ToolmeshError extends Error {
  /** The stable numeric code, e.g. 3001. */
  readonly code: number;
  /** The stable name of the code, e.g. "DEPENDENCY_UNRESOLVED". */
  readonly kind: string;

  constructor(code: number, kind: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.kind = kind;
  }

  /** The same text as core's, so every language prints an error the same way. */
  override toString(): string {
    return `[${this.code} ${this.kind}] ${this.message}`;
  }
}

/** 1xxx: a configuration value, file or address is wrong. */
export class ConfigError extends ToolmeshError {}
/** 2xxx: a certificate or TLS handshake problem. */
export class TlsError extends ToolmeshError {}
/** 3xxx: the registry or a dependency's providers cannot be found. */
export class DiscoveryError extends ToolmeshError {}
/** 4xxx: the connection to a peer failed. */
export class TransportError extends ToolmeshError {}
/** 4002: a call did not complete before its deadline. */
export class TimeoutError extends TransportError {}
/** 5xxx: the remote tool ran and failed, or rejected the call. */
export class RemoteToolError extends ToolmeshError {}
/**
 * 5005 `TOOL_ERROR`: a tool's own error, an expected failure of its domain.
 *
 * Throw it in a handler — `throw new ToolError("unknown_sku", \`no such sku: ${sku}\`, { data: { sku } })`
 * — and every caller, in every language, gets code 5005 with this `appCode`, `message` (word for
 * word) and `data` (any JSON value, or `undefined`). A caller catches it as `ToolError`;
 * rethrowing it from a handler passes it on intact. The application code is 1 to 64 characters
 * among `A-Z a-z 0-9 _ . : -`; the core refuses any other (the caller then gets 5001
 * `TOOL_FAILED` saying why). No stack is logged for it: it is an answer, not a bug.
 */
export class ToolError extends RemoteToolError {
  /** The tool's own code, e.g. "unknown_sku". */
  readonly appCode: string;
  /** The tool's data about the error (any JSON value), or `undefined`. */
  readonly data: unknown;

  constructor(appCode: string, message: string, options?: { data?: unknown; cause?: unknown }) {
    super(TOOL_ERROR_CODE, TOOL_ERROR_KIND, message);
    this.appCode = appCode;
    this.data = options?.data;
    if (options?.cause !== undefined) Object.defineProperty(this, "cause", { value: options.cause, configurable: true, writable: true });
  }

  override toString(): string {
    return `[${this.code} ${this.kind} ${this.appCode}] ${this.message}`;
  }
}

const TOOL_ERROR_CODE = 5005;
const TOOL_ERROR_KIND = "TOOL_ERROR";

/** 6xxx: a local tool handler failed. */
export class HandlerError extends ToolmeshError {}
/** 7xxx: policy refused a call, a registration or an origin, or a limit was reached. */
export class AuthorizationError extends ToolmeshError {}
/** 7002: a rate or concurrency limit of the callee's policy was reached; retry later. */
export class RateLimitedError extends AuthorizationError {}

/** The classes core's rule (`errorClassName`) names, by name. */
const CLASSES: Readonly<Record<string, typeof ToolmeshError>> = {
  ToolmeshError,
  ConfigError,
  TlsError,
  DiscoveryError,
  TransportError,
  TimeoutError,
  RemoteToolError,
  HandlerError,
  AuthorizationError,
  RateLimitedError,
};

/** The error class of a core error code, by core's rule (the same as Python's). */
export function errorClass(code: number): typeof ToolmeshError {
  return CLASSES[addon.errorClassName(code)] ?? ToolmeshError;
}

/**
 * The `ToolmeshError` for an error thrown by the native addon (an `Error` with a numeric
 * `code` and a `kind`); anything else is returned unchanged.
 */
export function fromNative(error: unknown): unknown {
  if (!(error instanceof Error) || error instanceof ToolmeshError) return error;
  const { code, kind, appCode, dataJson } = error as Error & { code?: unknown; kind?: unknown; appCode?: unknown; dataJson?: unknown };
  if (typeof code !== "number" || typeof kind !== "string") return error;
  if (typeof appCode === "string") {
    return new ToolError(appCode, error.message, { data: typeof dataJson === "string" ? JSON.parse(dataJson) : undefined });
  }
  const ErrorClass = errorClass(code);
  return new ErrorClass(code, kind, error.message);
}
