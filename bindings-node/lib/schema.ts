/**
 * Input schemas: plain JSON Schema, handed to core unchanged, or a Standard Schema that can
 * describe itself as JSON Schema (zod 4.2 or later, and other libraries implementing Standard
 * JSON Schema). Core is given the JSON Schema and checks every call against it; the Standard
 * Schema then parses the arguments (refinements, defaults, transforms) before the handler runs.
 */

/** A JSON Schema object, e.g. `{ type: "object", properties: { a: { type: "number" } } }`. */
export type JsonSchema = { readonly [keyword: string]: unknown };

interface StandardIssue {
  readonly message: string;
  readonly path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> | undefined;
}

type StandardResult<Output> =
  | { readonly value: Output; readonly issues?: undefined }
  | { readonly issues: ReadonlyArray<StandardIssue> };

/** The parts of Standard Schema and Standard JSON Schema (https://standardschema.dev) used here. */
export interface StandardSchema<Output = unknown> {
  readonly "~standard": {
    readonly version: 1;
    readonly vendor: string;
    readonly validate: (value: unknown) => StandardResult<Output> | Promise<StandardResult<Output>>;
    readonly types?: { readonly input: unknown; readonly output: Output } | undefined;
    readonly jsonSchema?: {
      readonly input: (options: { readonly target: "draft-2020-12" }) => Record<string, unknown>;
      readonly output: (options: { readonly target: "draft-2020-12" }) => Record<string, unknown>;
    };
  };
}

export type InputSchema = JsonSchema | StandardSchema;

/** What a handler receives: a Standard Schema's output type, else the JSON arguments object. */
export type ArgumentsOf<Schema> = Schema extends StandardSchema<infer Output> ? Output : Record<string, any>;

/** The arguments failed a Standard Schema's checks: the caller gets INVALID_ARGUMENTS. */
export class ArgumentsRejected extends Error {}

export function isStandardSchema(schema: InputSchema): schema is StandardSchema {
  return typeof (schema as Partial<StandardSchema>)["~standard"] === "object";
}

/**
 * The JSON Schema core is given for a tool's input schema, or (`side` "output") its output
 * schema: a Standard Schema describes what it accepts, or what it produces.
 */
export function jsonSchemaOf(tool: string, schema: InputSchema, side: "input" | "output" = "input"): JsonSchema {
  if (!isStandardSchema(schema)) return schema;
  const standard = schema["~standard"];
  if (standard.jsonSchema === undefined) {
    throw new TypeError(
      `tool '${tool}': this ${standard.vendor} schema cannot describe itself as JSON Schema ` +
        "(Standard JSON Schema); with zod, use version 4.2 or later",
    );
  }
  return standard.jsonSchema[side]({ target: "draft-2020-12" });
}

/** Parses the arguments with a Standard Schema; throws `ArgumentsRejected` with its issues. */
export async function parseArguments(tool: string, schema: StandardSchema, args: unknown): Promise<unknown> {
  const result = await schema["~standard"].validate(args);
  if (result.issues !== undefined) {
    throw new ArgumentsRejected(`tool '${tool}': ${result.issues.map(describeIssue).join("; ")}`);
  }
  return result.value;
}

function describeIssue(issue: StandardIssue): string {
  const path = (issue.path ?? []).map((segment) => String(typeof segment === "object" ? segment.key : segment));
  return path.length > 0 ? `argument '${path.join(".")}': ${issue.message}` : issue.message;
}
