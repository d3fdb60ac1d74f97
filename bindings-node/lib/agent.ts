/** Agents: a set of tools served by one native core agent. */

import { type CatalogRequest, LocalCatalog, type PromptDefinition, type ResourceDefinition, type ResourceTemplateDefinition } from "./catalog.js";
import { asToolResult, ToolResult } from "./content.js";
import { callHeadersStorage, contextStorage, type RequestContext } from "./context.js";
import { fromNative, ToolError, ToolmeshError } from "./errors.js";
import { addon, type NativeAgent, type Responder } from "./native.js";
import { ArgumentsRejected, type InputSchema, type JsonSchema } from "./schema.js";
import {
  type CalleeUpdate,
  capabilityOf,
  type Dependency,
  type DependencyProxy,
  LocalTool,
  type Proxies,
  type StreamedCall,
  type ToolDefinition,
} from "./tools.js";

/**
 * An agent's name and options. The options are core's, and override the `TOOLMESH_*`
 * environment (`registryUrl` is `TOOLMESH_REGISTRY_URL`, and so on); core checks them.
 */
export interface AgentOptions {
  readonly name: string;
  /** The registry, `https://host:port`; without one, the agent serves standalone. */
  readonly registryUrl?: string;
  /** PEM files of the agent's identity and of the mesh CA. */
  readonly tlsCert?: string;
  readonly tlsKey?: string;
  readonly tlsCa?: string;
  /** The address to listen on (default 127.0.0.1). */
  readonly host?: string;
  /** The host name peers dial (default: `host`). */
  readonly advertiseHost?: string;
  /** The port to listen on; 0 (the default) picks a free one. */
  readonly port?: number;
  /** Inbound headers that flow into the calls a handler makes: names, or prefixes ending in `*`. */
  readonly propagateHeaders?: string | readonly string[];
  readonly heartbeatIntervalMs?: number;
  /** Default timeout of a dependency call. */
  readonly callTimeoutMs?: number;
}

// Core's stable error kind that a binding reports for a handler.
const INVALID_ARGUMENTS = "INVALID_ARGUMENTS";

/** One mesh agent: its tools, its options, and once started, the native agent serving them. */
export class Agent {
  readonly name: string;
  readonly #options: Array<[string, string]>;
  readonly #tools: LocalTool[] = [];
  readonly #catalog = new LocalCatalog();
  /** While started (or starting): the tools by name, and each tool's dependency proxies. */
  #running: Map<string, { tool: LocalTool; proxies: Proxies<readonly Dependency[]> }> | undefined;
  /** From start() until stop() has finished. */
  #starting: Promise<NativeAgent> | undefined;
  /** The last native agent, kept after stop() so that a late dependency call gets core's SHUTDOWN error. */
  #native: NativeAgent | undefined;
  #stopping: Promise<void> | undefined;

  constructor({ name, ...options }: AgentOptions) {
    this.name = name;
    this.#options = optionPairs(options);
  }

  /** Declares a tool; tools are added before `start()`. */
  addTool<S extends InputSchema = JsonSchema, const D extends readonly Dependency[] = readonly []>(
    definition: ToolDefinition<S, D>,
  ): this {
    this.#requireNotStarted("tools");
    this.#tools.push(new LocalTool(definition as unknown as ToolDefinition));
    return this;
  }

  /**
   * Declares a resource served over MCP (`resources/list`, `resources/read`): one URI with its
   * content (`text` or `blob`, served by core) or a `read(uri)` function, or a template
   * (`uriTemplate: "test://template/{id}/data"`) whose `read(uri, variables)` answers each URI it
   * expands. Resources are not registered with the registry; added before `start()`.
   */
  addResource(definition: ResourceDefinition | ResourceTemplateDefinition): this {
    this.#requireNotStarted("resources");
    this.#catalog.addResource(definition);
    return this;
  }

  /** Declares a prompt served over MCP (`prompts/list`, `prompts/get`); added before `start()`. */
  addPrompt(definition: PromptDefinition): this {
    this.#requireNotStarted("prompts");
    this.#catalog.addPrompt(definition);
    return this;
  }

  #requireNotStarted(what: string): void {
    if (this.#starting !== undefined) {
      throw new Error(`agent '${this.name}' is already started: add its ${what} before start()`);
    }
  }

  /** The id the registry knows this agent by (its name and a random suffix). */
  get agentId(): string {
    return this.#requireNative().agentId;
  }

  /** `https://host:port/mcp` */
  get endpoint(): string {
    return this.#requireNative().endpoint;
  }

  get port(): number {
    return this.#requireNative().port;
  }

  /**
   * Starts serving and registers in the background. Rejects with a `ToolmeshError` (e.g.
   * `ConfigError`, `TlsError`) when the options, certificates or tools are wrong.
   */
  async start(): Promise<this> {
    if (this.#starting !== undefined) throw new Error(`agent '${this.name}' is already started`);
    this.#running = new Map(this.#tools.map((tool) => [tool.name, { tool, proxies: this.#proxies(tool) }]));
    this.#starting = this.#startNative();
    try {
      this.#native = await this.#starting;
    } catch (error) {
      this.#starting = undefined;
      this.#running = undefined;
      throw error;
    }
    return this;
  }

  /** Deregisters, lets in-flight calls finish and stops serving. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stopNative().finally(() => {
      this.#stopping = undefined;
    });
    return this.#stopping;
  }

  /**
   * Serves until SIGINT or SIGTERM, then stops cleanly. A start-up error is printed as
   * `toolmesh: error [CODE KIND]: message`, with exit status 2 (configuration or TLS) or 1.
   */
  async run(): Promise<void> {
    try {
      await this.start();
    } catch (error) {
      if (!(error instanceof ToolmeshError)) throw error;
      const failure = addon.startFailure(error.code, error.kind, error.message);
      console.error(failure.line);
      process.exitCode = failure.status;
      return;
    }
    await new Promise<void>((resolve) => {
      const stop = (): void => {
        process.off("SIGINT", stop).off("SIGTERM", stop);
        resolve();
      };
      // Handlers first: a signal sent right after the ready line must stop the agent cleanly.
      process.on("SIGINT", stop).on("SIGTERM", stop);
      console.error(this.#requireNative().readyLine);
    });
    await this.stop();
  }

  async #startNative(): Promise<NativeAgent> {
    const tools = JSON.stringify(this.#tools.map((tool) => tool.info()));
    try {
      return await addon.start(this.name, this.#options, tools, this.#catalog.json(), this.#onInvoke, this.#onCatalog);
    } catch (error) {
      throw fromNative(error);
    }
  }

  async #stopNative(): Promise<void> {
    const starting = this.#starting;
    if (starting === undefined) return;
    const native = await starting.catch(() => undefined);
    await native?.stop();
    this.#running = undefined;
    this.#starting = undefined;
  }

  #requireNative(): NativeAgent {
    if (this.#native === undefined || this.#starting === undefined || this.#stopping !== undefined) {
      throw new Error(`agent '${this.name}' is not running; start it with \`await agent.start()\``);
    }
    return this.#native;
  }

  #proxies(tool: LocalTool): Proxies<readonly Dependency[]> {
    const proxies: Record<string | number, DependencyProxy> = {};
    tool.dependencies.forEach((dependency, position) => {
      const proxy = ((args = {}) => this.#call(tool.name, position, args)) as DependencyProxy;
      proxy.stream = (args = {}) => this.#stream(tool.name, position, args);
      proxy.callResult = async (args = {}) => {
        const whole = await this.#call(tool.name, position, args, undefined, true);
        return new ToolResult({ content: whole.content, structuredContent: whole.structuredContent });
      };
      proxies[position] = proxy;
      proxies[capabilityOf(dependency)] ??= proxy;
    });
    return Object.freeze(proxies);
  }

  /** A dependency call, made with the request context of the handler that makes it and the headers of the `withCallHeaders` scopes it is made in. */
  async #call(
    tool: string,
    position: number,
    args: Record<string, unknown>,
    onNotification?: (json: string | null) => void,
    whole = false,
  ): Promise<any> {
    let pending: Promise<string>;
    try {
      // A handler may run before start() has resumed its caller.
      const native = (await this.#starting) ?? this.#native;
      if (native === undefined) throw new Error(`agent '${this.name}' is not running`);
      const argumentsJson = JSON.stringify(args);
      pending = native.call(tool, position, argumentsJson, contextStorage.getStore(), callHeadersStorage.getStore(), onNotification, whole);
    } catch (error) {
      onNotification?.(null); // never reached core: nothing more comes
      throw fromNative(error);
    }
    let resultJson: string;
    try {
      resultJson = await pending;
    } catch (error) {
      throw fromNative(error);
    }
    return JSON.parse(resultJson);
  }

  /** A dependency call whose callee's updates the handler iterates over (`proxy.stream`). */
  #stream(tool: string, position: number, args: Record<string, unknown>): StreamedCall {
    const updates: Array<CalleeUpdate | null> = [];
    let wake: (() => void) | undefined;
    const onNotification = (json: string | null): void => {
      updates.push(json === null ? null : (JSON.parse(json) as CalleeUpdate));
      wake?.();
      wake = undefined;
    };
    const result = this.#call(tool, position, args, onNotification);
    // Awaited by whoever wants the result; a handler that only iterates must not see an
    // unhandled rejection for it.
    result.catch(() => undefined);
    async function* iterate(): AsyncGenerator<CalleeUpdate> {
      for (;;) {
        while (updates.length === 0) await new Promise<void>((resolve) => (wake = resolve));
        const update = updates.shift()!;
        if (update === null) return;
        yield update;
      }
    }
    return { [Symbol.asyncIterator]: iterate, then: (onResult, onError) => result.then(onResult, onError) };
  }

  /** Called by the addon for every inbound call. A throw here would be fatal, so it never throws. */
  readonly #onInvoke = (tool: string, argumentsJson: string, context: RequestContext, responder: Responder): void => {
    this.#answer(tool, argumentsJson, context, responder).catch((bug: unknown) => {
      // Still answered: otherwise the caller waits until its timeout, or HANDLER_DROPPED.
      log(`toolmesh: answering a call of tool '${tool}' failed:`, bug);
      try {
        responder.fail(describe(bug));
      } catch {
        // answered before the bug
      }
    });
  };

  /** Called by the addon for every resource read or prompt get core does not answer itself; never throws. */
  readonly #onCatalog = (requestJson: string, context: RequestContext, responder: Responder): void => {
    const request = JSON.parse(requestJson) as CatalogRequest;
    const what = request.kind === "getPrompt" ? `prompt '${request.name}'` : `resource '${request.uri}'`;
    const answer = async (): Promise<unknown> => contextStorage.run(context, () => this.#catalog.answer(request));
    this.#settle(what, answer, responder).catch((bug: unknown) => {
      log(`toolmesh: answering ${what} failed:`, bug);
      try {
        responder.fail(describe(bug));
      } catch {
        // answered before the bug
      }
    });
  };

  async #answer(tool: string, argumentsJson: string, context: RequestContext, responder: Responder): Promise<void> {
    // Core invokes only the tools it was given (once started), and refuses others itself.
    const running = this.#running!.get(tool)!;
    const run = (): Promise<unknown> => contextStorage.run(context, () => running.tool.run(JSON.parse(argumentsJson), running.proxies));
    await this.#settle(`tool '${tool}'`, run, responder);
  }

  /**
   * Runs a handler and answers with what it returned or threw: a rich tool result through
   * `responder.result`, any other value as JSON through `responder.ok`.
   */
  async #settle(what: string, handler: () => Promise<unknown>, responder: Responder): Promise<void> {
    let result: unknown;
    try {
      result = await handler();
    } catch (error) {
      if (error instanceof ToolError) {
        // The tool's own error (or one a proxy call rejected with, passed on): an answer, not a
        // bug, so no stack is logged; core logs one line for it, the same in every language.
        failToolError(responder, error);
      } else if (error instanceof ToolmeshError) {
        // A mesh call the handler awaited failed: the caller gets that error, code and all.
        responder.fail(error.message, error.kind);
      } else if (error instanceof ArgumentsRejected) {
        responder.fail(error.message, INVALID_ARGUMENTS);
      } else {
        // The caller sees the error's own message, as in every language; its name and stack
        // stay in this agent's log.
        log(`toolmesh: ${what} failed:`, error);
        responder.fail(describe(error));
      }
      return;
    }
    const toolResult = asToolResult(result);
    let resultJson: string | undefined;
    let reason: string;
    try {
      resultJson = JSON.stringify(toolResult ?? result ?? null);
      reason = `JSON.stringify cannot encode a ${typeof result}`;
    } catch (error) {
      reason = describe(error);
    }
    if (resultJson === undefined) {
      // Core tells the caller, in the same words as every language, and logs the reason.
      responder.notJson(reason);
      return;
    }
    if (toolResult !== undefined) responder.result(resultJson);
    else responder.ok(resultJson);
  }
}

/** Answers with a `ToolError`: its data as JSON text, or core's words for data that is not JSON. */
function failToolError(responder: Responder, error: ToolError): void {
  let dataJson: string | undefined;
  try {
    dataJson = error.data === undefined ? undefined : JSON.stringify(error.data);
  } catch (problem) {
    responder.failToolErrorDataNotJson(error.appCode, describe(problem));
    return;
  }
  if (error.data !== undefined && dataJson === undefined) {
    responder.failToolErrorDataNotJson(error.appCode, `JSON.stringify cannot encode a ${typeof error.data}`);
    return;
  }
  responder.failToolError(error.appCode, error.message, dataJson);
}

/**
 * What the caller is told of a thrown value: an Error's message, else the value as a string.
 * Never throws, whatever was thrown (`Object.create(null)`, a message getter that throws, a
 * revoked Proxy), so that every call is answered.
 */
function describe(thrown: unknown): string {
  try {
    const message = thrown instanceof Error ? thrown.message : thrown;
    return typeof message === "string" ? message : String(message);
  } catch {
    try {
      return Object.prototype.toString.call(thrown);
    } catch {
      return `a thrown ${typeof thrown} that has no readable message`;
    }
  }
}

/** Logs a handler's failure; util.inspect may throw on a hostile value, and must not stop the answer. */
function log(what: string, thrown: unknown): void {
  try {
    console.warn(what, thrown);
  } catch {
    console.warn(what, describe(thrown));
  }
}

/** Options as the keys and strings core parses: camelCase to snake_case, lists comma-joined. */
function optionPairs(options: Record<string, unknown>): Array<[string, string]> {
  return Object.entries(options)
    .filter(([, value]) => value !== undefined && value !== null)
    .map(([key, value]) => [
      key.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`),
      Array.isArray(value) ? value.join(",") : String(value),
    ]);
}
