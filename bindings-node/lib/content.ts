/**
 * Rich tool results: what a handler returns when one JSON value is not enough (images, audio,
 * resource links, embedded resources, several items, `structuredContent` beside its own
 * content). Each class writes MCP's content item; core reads and checks the result, so the only
 * thing done here is base64-encoding bytes (standard alphabet, padded).
 */

/** Bytes as MCP carries them. */
function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

/** MCP's annotations of a content item (audience, priority, lastModified), passed on as given. */
export type ContentAnnotations = Readonly<Record<string, unknown>>;

/** A content item of a tool result or a prompt message; `toJSON()` is its MCP shape. */
export abstract class Content {
  abstract toJSON(): Record<string, unknown>;
}

/** A text item. A plain string in a `ToolResult`'s content is one too. */
export class Text extends Content {
  constructor(
    readonly text: string,
    readonly annotations?: ContentAnnotations,
  ) {
    super();
  }

  toJSON(): Record<string, unknown> {
    return { type: "text", text: this.text, annotations: this.annotations };
  }
}

/** An image: its bytes and MIME type, e.g. `new Image(png, "image/png")`. */
export class Image extends Content {
  constructor(
    readonly data: Uint8Array,
    readonly mimeType: string,
    readonly annotations?: ContentAnnotations,
  ) {
    super();
  }

  toJSON(): Record<string, unknown> {
    return { type: "image", data: base64(this.data), mimeType: this.mimeType, annotations: this.annotations };
  }
}

/** Audio: its bytes and MIME type, e.g. `new Audio(wav, "audio/wav")`. */
export class Audio extends Content {
  constructor(
    readonly data: Uint8Array,
    readonly mimeType: string,
    readonly annotations?: ContentAnnotations,
  ) {
    super();
  }

  toJSON(): Record<string, unknown> {
    return { type: "audio", data: base64(this.data), mimeType: this.mimeType, annotations: this.annotations };
  }
}

/** A link to a resource the client may read (`resource_link`). */
export class ResourceLink extends Content {
  constructor(
    readonly link: {
      readonly uri: string;
      readonly name: string;
      readonly title?: string;
      readonly description?: string;
      readonly mimeType?: string;
      readonly size?: number;
      readonly annotations?: ContentAnnotations;
    },
  ) {
    super();
  }

  toJSON(): Record<string, unknown> {
    return { type: "resource_link", ...this.link };
  }
}

/** The contents of a resource: text, or bytes (`blob`), never both. */
export interface ResourceContents {
  readonly uri: string;
  readonly mimeType?: string;
  readonly text?: string;
  readonly blob?: Uint8Array;
}

/** MCP's shape of resource contents: bytes base64-encoded. */
export function resourceContentsJson({ blob, ...rest }: ResourceContents): Record<string, unknown> {
  return blob === undefined ? { ...rest } : { ...rest, blob: blob instanceof Uint8Array ? base64(blob) : blob };
}

/** A resource embedded in the result (`resource`): its URI and its text or bytes. */
export class EmbeddedResource extends Content {
  constructor(
    readonly resource: ResourceContents,
    readonly annotations?: ContentAnnotations,
  ) {
    super();
  }

  toJSON(): Record<string, unknown> {
    return { type: "resource", resource: resourceContentsJson(this.resource), annotations: this.annotations };
  }
}

/**
 * A content item as a handler may give it: one of the classes above, a string (a text item), or
 * a plain object already in MCP's shape (passed on as given, and checked by core).
 */
export type ContentItem = Content | string | Readonly<Record<string, unknown>>;

/** MCP's shape of a content item. */
export function contentJson(item: ContentItem): unknown {
  if (typeof item === "string") return { type: "text", text: item };
  if (item instanceof Content) return item.toJSON();
  return item;
}

/**
 * A tool result in MCP's shape (`CallToolResult`): content items, an optional
 * `structuredContent`, and `isError` for a failure the tool words itself (the caller gets it as
 * a result, not as a mesh error). A tool with `structuredContent` and no text item gets the
 * serialized `structuredContent` as its text item, as a plain return value does.
 */
export class ToolResult {
  readonly content: readonly ContentItem[];
  readonly structuredContent?: unknown;
  readonly isError: boolean;

  constructor({
    content = [],
    structuredContent,
    isError = false,
  }: {
    readonly content?: readonly ContentItem[];
    readonly structuredContent?: unknown;
    readonly isError?: boolean;
  }) {
    this.content = content;
    this.structuredContent = structuredContent;
    this.isError = isError;
  }

  toJSON(): Record<string, unknown> {
    return { content: this.content.map(contentJson), structuredContent: this.structuredContent, isError: this.isError };
  }
}

/** One of MCP's requests a tool may ask its client to answer (2026-07-28). */
export interface InputRequest {
  readonly method: "elicitation/create" | "sampling/createMessage" | "roots/list";
  readonly params?: Readonly<Record<string, unknown>>;
}

/**
 * Asks the MCP client for input instead of answering (MCP 2026-07-28): `requests` by key, and
 * `state`, any JSON value the next call gets back (core seals it, so the client can neither read
 * nor change it). The client calls the tool again with its answers: the context's
 * `inputResponses` and `requestState`.
 */
export class InputRequired {
  constructor(
    readonly requests: Readonly<Record<string, InputRequest>>,
    readonly state?: unknown,
  ) {}

  toJSON(): Record<string, unknown> {
    return { resultType: "input_required", inputRequests: this.requests, requestState: this.state };
  }
}

/**
 * The MCP document a handler's return value stands for, when it is one: a `ToolResult` or an
 * `InputRequired`, a content item of a class above, or a non-empty array of them. Anything else
 * is a plain value.
 */
export function asToolResult(returned: unknown): ToolResult | InputRequired | undefined {
  if (returned instanceof ToolResult || returned instanceof InputRequired) return returned;
  if (returned instanceof Content) return new ToolResult({ content: [returned] });
  if (Array.isArray(returned) && returned.length > 0 && returned.every((item) => item instanceof Content)) {
    return new ToolResult({ content: returned as Content[] });
  }
  return undefined;
}
