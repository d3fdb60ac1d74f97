/**
 * Resources, resource templates and prompts: what core is told about them (one JSON document,
 * MCP's member names, checked by core at start), and how a JS read or get answers core's request.
 */

import { type ContentItem, contentJson, InputRequired, type ResourceContents, resourceContentsJson } from "./content.js";

/** What a resource's or template's `read` may return. */
export type ReadResult =
  | string // text, with the declared mimeType
  | Uint8Array // bytes, with the declared mimeType
  | ResourceContents
  | readonly ResourceContents[];

interface ResourceCommon {
  /** The resource's name, listed by `resources/list` (and decided on by the callee's policy, as a tool of that name). */
  readonly name: string;
  readonly title?: string;
  readonly description?: string;
  readonly mimeType?: string;
  readonly annotations?: Readonly<Record<string, unknown>>;
  readonly icons?: readonly unknown[];
  readonly _meta?: Readonly<Record<string, unknown>>;
}

/**
 * A resource of one URI. Declared with `text` or `blob`, core serves it without calling
 * JavaScript; otherwise `read(uri)` answers each `resources/read`.
 */
export interface ResourceDefinition extends ResourceCommon {
  readonly uri: string;
  readonly size?: number;
  readonly text?: string;
  readonly blob?: Uint8Array;
  readonly read?: (uri: string, variables: Readonly<Record<string, string>>) => ReadResult | Promise<ReadResult>;
}

/**
 * A resource template (RFC 6570 level 1, e.g. `test://template/{id}/data`): `read(uri,
 * variables)` answers each URI it expands, with the variables' values as they appear in the URI.
 */
export interface ResourceTemplateDefinition extends ResourceCommon {
  readonly uriTemplate: string;
  /** The values each variable may take, which core offers to `completion/complete` (not listed). */
  readonly completions?: Readonly<Record<string, readonly string[]>>;
  readonly read: (uri: string, variables: Readonly<Record<string, string>>) => ReadResult | Promise<ReadResult>;
}

export interface PromptArgument {
  readonly name: string;
  readonly title?: string;
  readonly description?: string;
  readonly required?: boolean;
  /** The values the argument may take, which core offers to `completion/complete` (not listed). */
  readonly completions?: readonly string[];
}

/** One message of a prompt: a string is a text item. */
export interface PromptMessage {
  readonly role: "user" | "assistant";
  readonly content: ContentItem;
}

/** What a prompt's `get` may return: a string (one user message), messages, or both with a description. */
/**
 * What a prompt's `get` may return: its messages, or an `InputRequired` asking the client for
 * input first (MCP 2026-07-28; the client gets the prompt again with its answers, read from the
 * context's `inputResponses` and `requestState`).
 */
export type PromptResult =
  | string
  | readonly PromptMessage[]
  | { readonly description?: string; readonly messages: readonly PromptMessage[] }
  | InputRequired;

/** A prompt: core checks the arguments (strings, the required ones present) before `get` sees them. */
export interface PromptDefinition {
  readonly name: string;
  readonly title?: string;
  readonly description?: string;
  readonly arguments?: readonly PromptArgument[];
  readonly icons?: readonly unknown[];
  readonly _meta?: Readonly<Record<string, unknown>>;
  readonly get: (args: Readonly<Record<string, string>>) => PromptResult | Promise<PromptResult>;
}

/** Core's request for a resource or prompt (`CatalogRequest`, serialized by core). */
export type CatalogRequest =
  | { kind: "readResource"; uri: string; name: string; template?: string; variables: Record<string, string> }
  | { kind: "getPrompt"; name: string; arguments: Record<string, string> };

/** An agent's resources, templates and prompts, in declaration order. */
export class LocalCatalog {
  readonly #resources: ResourceDefinition[] = [];
  readonly #templates: ResourceTemplateDefinition[] = [];
  readonly #prompts: PromptDefinition[] = [];

  addResource(definition: ResourceDefinition | ResourceTemplateDefinition): void {
    if ("uriTemplate" in definition) {
      if (typeof definition.read !== "function") {
        throw new TypeError(`resource template '${definition.uriTemplate}' needs a read function`);
      }
      this.#templates.push(definition);
      return;
    }
    const hasContent = definition.text !== undefined || definition.blob !== undefined;
    if (!hasContent && typeof definition.read !== "function") {
      throw new TypeError(`resource '${definition.uri}' needs its content (text or blob) or a read function`);
    }
    if (hasContent && definition.read !== undefined) {
      throw new TypeError(`resource '${definition.uri}' has both content (text or blob) and a read function; give one`);
    }
    this.#resources.push(definition);
  }

  addPrompt(definition: PromptDefinition): void {
    if (typeof definition?.get !== "function") {
      throw new TypeError(`prompt '${definition?.name}' needs a get function`);
    }
    this.#prompts.push(definition);
  }

  /** Core's catalog JSON (`agent::parse_catalog`); core checks it. */
  json(): string {
    const resources = this.#resources.map(({ read: _read, blob, ...declared }) =>
      blob === undefined ? declared : { ...declared, ...resourceContentsJson({ uri: declared.uri, blob }) },
    );
    const resourceTemplates = this.#templates.map(({ read: _read, ...declared }) => declared);
    const prompts = this.#prompts.map(({ get: _get, ...declared }) => declared);
    return JSON.stringify({ resources, resourceTemplates, prompts });
  }

  /** Answers core's request with the JSON core checks (`ReadResourceResult` or `GetPromptResult`). */
  async answer(request: CatalogRequest): Promise<unknown> {
    if (request.kind === "getPrompt") {
      // Core asks only for the prompts it was given.
      const prompt = this.#prompts.find((each) => each.name === request.name)!;
      return promptJson(await prompt.get(request.arguments));
    }
    // Core reads through JavaScript only the resources declared without content, and templates.
    const declared =
      request.template === undefined
        ? this.#resources.find((each) => each.uri === request.uri)!
        : this.#templates.find((each) => each.uriTemplate === request.template)!;
    return readJson(request.uri, declared.mimeType, await declared.read!(request.uri, request.variables));
  }
}

function readJson(uri: string, mimeType: string | undefined, result: ReadResult): unknown {
  const one = (contents: ResourceContents): Record<string, unknown> => resourceContentsJson(contents);
  if (typeof result === "string") return { contents: [{ uri, mimeType, text: result }] };
  if (result instanceof Uint8Array) return { contents: [one({ uri, ...(mimeType === undefined ? {} : { mimeType }), blob: result })] };
  if (Array.isArray(result)) return { contents: (result as readonly ResourceContents[]).map(one) };
  return { contents: [one(result as ResourceContents)] };
}

function promptJson(result: PromptResult): unknown {
  const messages = (list: readonly PromptMessage[]): unknown[] => list.map(({ role, content }) => ({ role, content: contentJson(content) }));
  if (result instanceof InputRequired) return result.toJSON(); // core seals the state
  if (typeof result === "string") return { messages: [{ role: "user", content: { type: "text", text: result } }] };
  if (Array.isArray(result)) return { messages: messages(result as readonly PromptMessage[]) };
  const { description, messages: list } = result as { description?: string; messages: readonly PromptMessage[] };
  return { description, messages: Array.isArray(list) ? messages(list) : list };
}
