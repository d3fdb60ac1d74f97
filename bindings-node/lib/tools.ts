/** Tool declarations: what core is told about a tool, and how its handler is run. */

import { type ArgumentsOf, type InputSchema, isStandardSchema, jsonSchemaOf, parseArguments } from "./schema.js";
import type { ToolResult } from "./content.js";

/**
 * What a tool depends on: a capability (`"add"`), or a selector narrowing it by tags and a
 * semver range, e.g. `{ capability: "add", tags: ["math", "+fast", "-beta", ["eu", "us"]],
 * version: ">=1.2" }` (`+` prefers, `-` excludes, a list needs one of its tags).
 */
export type Dependency =
  | string
  | {
      readonly capability: string;
      readonly tags?: ReadonlyArray<string | readonly string[]>;
      readonly version?: string;
    };

/**
 * MCP's tool annotations, listed by `tools/list` and kept by the registry. A call to a tool with
 * `readOnlyHint` or `idempotentHint` true is also retried on another provider when the
 * connection breaks after the provider received it; any other call only when it never left.
 */
export interface ToolAnnotations {
  readonly title?: string;
  readonly readOnlyHint?: boolean;
  readonly destructiveHint?: boolean;
  readonly idempotentHint?: boolean;
  readonly openWorldHint?: boolean;
}

/** Calls a dependency: a provider chosen by core runs it, and its result comes back. */
export interface DependencyProxy {
  <Result = any>(args?: Record<string, unknown>): Promise<Result>;
  /**
   * Calls the dependency and iterates over what its callee reports while it runs, in order;
   * awaiting the call gives its result:
   *
   * ```ts
   * const call = proxies.fetch.stream({ url });
   * for await (const update of call) {
   *   if (update.kind === "progress") currentContext()!.progress(update.progress / 2, 1);
   * }
   * const page = await call;
   * ```
   *
   * Such a call's reports are the handler's to re-emit or transform: core does not relay them
   * to the handler's own caller as it does for a plain call.
   */
  stream<Result = any>(args?: Record<string, unknown>): StreamedCall<Result>;
  /**
   * Calls the dependency and resolves to its whole result: a `ToolResult` whose `content` holds
   * every item as the callee sent it (MCP's JSON: images, audio, resource links, embedded
   * resources, text) and its `structuredContent`. A handler that returns it answers its own
   * caller with the same result, unchanged.
   */
  callResult(args?: Record<string, unknown>): Promise<ToolResult>;
}

/** What a dependency's callee reported while it ran. */
export type CalleeUpdate =
  | { readonly kind: "progress"; readonly progress: number; readonly total?: number; readonly message?: string }
  | { readonly kind: "log"; readonly level: string; readonly data: unknown; readonly logger?: string };

/** A dependency call in flight: its callee's updates, then (awaited) its result. */
export interface StreamedCall<Result = any> extends AsyncIterable<CalleeUpdate>, PromiseLike<Result> {}

type CapabilityOf<D> = D extends string ? D : D extends { readonly capability: infer C extends string } ? C : never;

/**
 * A tool's dependency proxies, by capability name and by position in `dependencies`. When two
 * dependencies name the same capability, the name reaches the first; positions reach both.
 */
export type Proxies<D extends readonly Dependency[]> = {
  readonly [Capability in CapabilityOf<D[number]>]: DependencyProxy;
} & { readonly [position: number]: DependencyProxy };

/** A client capability a tool can require (see {@link ToolDefinition.requiredClientCapabilities}). */
export type ClientCapability = "elicitation" | "roots" | "sampling";

/** MCP's `execution.taskSupport` (see {@link ToolDefinition.taskSupport}). */
export type TaskSupport = "forbidden" | "optional" | "required";

export interface ToolDefinition<S extends InputSchema = InputSchema, D extends readonly Dependency[] = readonly Dependency[]> {
  /** The MCP tool name: 1 to 128 characters of A-Z, a-z, 0-9, `_`, `-` and `.`. */
  readonly name: string;
  /** What the tool provides to other agents; defaults to `name`. */
  readonly capability?: string;
  /** A semver version (default "1.0.0"), matched by dependents' version ranges. */
  readonly version?: string;
  readonly tags?: readonly string[];
  readonly description?: string;
  /** A JSON Schema of the arguments object, or a zod (4.2 or later) schema. */
  readonly inputSchema?: S;
  readonly dependencies?: D;
  /** Timeout of each call this tool makes to its dependencies (default: the agent's). */
  readonly timeoutMs?: number;
  /** MCP's tool annotations, e.g. `{ idempotentHint: true }` (see {@link ToolAnnotations}). */
  readonly annotations?: ToolAnnotations;
  /**
   * MCP's `outputSchema`: a JSON Schema of an object, or a zod schema. `tools/list` shows it, and
   * core checks every answer's structured content against it (HANDLER_RESULT when it breaks it).
   */
  readonly outputSchema?: InputSchema;
  /**
   * Client capabilities the tool needs: a modern MCP client that did not declare one is refused
   * (400 / -32021) before `execute` runs.
   */
  readonly requiredClientCapabilities?: readonly ClientCapability[];
  /**
   * Whether a call may run as a task (the MCP tasks extension; default `"forbidden"`): with
   * `"optional"`, a call from a client that negotiated the extension becomes a task unless
   * `execute` settles at once; `"required"` refuses any other client (-32021). Core runs it.
   */
  readonly taskSupport?: TaskSupport;
  /**
   * Runs the tool: sync or async; its result must be JSON (`undefined` is sent as null), or a
   * rich result: a `ToolResult`, an `Image`/`Audio`/`ResourceLink`/`EmbeddedResource`/`Text`,
   * or an array of those (core checks it; an invalid one reaches the caller as HANDLER_RESULT). A
   * throw or rejection reaches the caller as a tool error; when it is a `ToolmeshError` from a
   * dependency call, the caller gets that error's code and message.
   */
  readonly execute: (args: ArgumentsOf<S>, dependencies: Proxies<D>) => unknown;
}

export function capabilityOf(dependency: Dependency): string {
  return typeof dependency === "string" ? dependency : dependency.capability;
}

/** A declared tool of an agent. */
export class LocalTool {
  readonly #definition: ToolDefinition;

  constructor(definition: ToolDefinition) {
    if (typeof definition?.execute !== "function") {
      throw new TypeError(`tool '${definition?.name}' needs an execute function`);
    }
    this.#definition = definition;
  }

  get name(): string {
    return this.#definition.name;
  }

  get dependencies(): readonly Dependency[] {
    return this.#definition.dependencies ?? [];
  }

  /** Core's JSON tool definition; core checks it (names, capabilities, selectors). */
  info(): Record<string, unknown> {
    const { name, capability, version, tags, description, inputSchema, dependencies, timeoutMs, annotations } = this.#definition;
    const { outputSchema, requiredClientCapabilities, taskSupport } = this.#definition;
    return {
      name,
      capability, // core defaults it to the name
      version,
      tags,
      description,
      input_schema: inputSchema === undefined ? undefined : jsonSchemaOf(name, inputSchema),
      dependencies,
      timeout_ms: timeoutMs,
      annotations,
      output_schema: outputSchema === undefined ? undefined : jsonSchemaOf(name, outputSchema, "output"),
      required_client_capabilities: requiredClientCapabilities,
      task_support: taskSupport,
    };
  }

  /** Runs the handler with the JSON arguments, parsed by its Standard Schema if it has one. */
  async run(args: unknown, proxies: Proxies<readonly Dependency[]>): Promise<unknown> {
    const { name, inputSchema, execute } = this.#definition;
    const parsed = inputSchema !== undefined && isStandardSchema(inputSchema) ? await parseArguments(name, inputSchema, args) : args;
    return execute(parsed as ArgumentsOf<InputSchema>, proxies);
  }
}
