/**
 * toolmesh: a service mesh inside MCP agents.
 *
 * Declare tools with `agent.addTool({...})`, call the capabilities they depend on through the
 * proxies handed to them, and serve them with `await agent.start()`. Discovery, mTLS, MCP,
 * header propagation and tracing all happen in the shared Rust core.
 */

export { Agent, type AgentOptions } from "./agent.js";
export type {
  PromptArgument,
  PromptDefinition,
  PromptMessage,
  PromptResult,
  ReadResult,
  ResourceDefinition,
  ResourceTemplateDefinition,
} from "./catalog.js";
export {
  Audio,
  Content,
  type ContentAnnotations,
  type ContentItem,
  EmbeddedResource,
  Image,
  type InputRequest,
  InputRequired,
  type ResourceContents,
  ResourceLink,
  Text,
  ToolResult,
} from "./content.js";
export { currentContext, headers, type LogLevel, type RequestContext, traceId, withCallHeaders } from "./context.js";
export {
  ConfigError,
  DiscoveryError,
  HandlerError,
  AuthorizationError,
  RateLimitedError,
  RemoteToolError,
  TimeoutError,
  TlsError,
  ToolError,
  ToolmeshError,
  TransportError,
} from "./errors.js";
export type { InputSchema, JsonSchema, StandardSchema } from "./schema.js";
export type { CalleeUpdate, ClientCapability, Dependency, DependencyProxy, Proxies, StreamedCall, TaskSupport, ToolAnnotations, ToolDefinition } from "./tools.js";
