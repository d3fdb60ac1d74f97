// The official MCP conformance suite's fixtures on a Node agent (`scripts/conformance.sh --agent
// node`): the same tools, resources and prompts as core's `conformance_agent` example, written with
// the Node binding's public API only, so the suite judges what a TypeScript author gets.
//
// Configured like any agent, through `TOOLMESH_*` variables; prints `endpoint <url>` once it
// listens and serves until its standard input closes.

import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { Agent, Audio, currentContext, EmbeddedResource, Image, InputRequired, Text } from "../../bindings-node/dist/index.js";

// A 1x1 red PNG and a minimal WAV, the suite's own samples.
const PNG = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==", "base64");
const WAV = Buffer.from("UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=", "base64");
const EMPTY = { type: "object", properties: {} };
// The schemas every language's fixture agent shares.
const SCHEMAS = JSON.parse(readFileSync(new URL("schemas.json", import.meta.url), "utf8"));

const agent = new Agent({ name: "conformance" });
const tool = (name, description, execute, more = {}) => agent.addTool({ name, description, inputSchema: EMPTY, execute, ...more });

// --- Tools answering text, errors and rich content ---------------------------------------------

tool("test_simple_text", "Returns a simple text response", () => "This is a simple text response for testing.");
tool("test_error_handling", "Always fails, to test error reporting", () => {
  throw new Error("This tool intentionally returns an error for testing");
});
tool("test_image_content", "Returns an image", () => new Image(PNG, "image/png"));
tool("test_audio_content", "Returns audio", () => new Audio(WAV, "audio/wav"));
tool("test_embedded_resource", "Returns an embedded resource", () =>
  new EmbeddedResource({ uri: "test://embedded-resource", mimeType: "text/plain", text: "This is an embedded resource content." }),
);
tool("test_multiple_content_types", "Returns text, an image and an embedded resource", () => [
  new Text("Multiple content types test:"),
  new Image(PNG, "image/png"),
  new EmbeddedResource({ uri: "test://mixed-content-resource", mimeType: "application/json", text: '{"test":"data","value":123}' }),
]);
tool("test_tool_with_progress", "Reports progress 0, 50 and 100 of 100", async () => {
  const context = currentContext();
  for (const [step, progress] of [0, 50, 100].entries()) {
    if (step) await sleep(50);
    context.progress(progress, 100);
  }
  return "Progress reported: 0, 50 and 100 of 100";
});
async function logThree() {
  const context = currentContext();
  for (const [step, message] of ["Tool execution started", "Tool processing data", "Tool execution completed"].entries()) {
    if (step) await sleep(50);
    context.log("info", message);
  }
  return "Logged three messages at info level";
}
tool("test_tool_with_logging", "Logs three messages at info level", logThree);
tool("test_logging_tool", "Logs a message (sent only to a client that asked for a level)", logThree);
agent.addTool({
  name: "json_schema_2020_12_tool",
  description: "Tool with JSON Schema 2020-12 features",
  inputSchema: SCHEMAS.json_schema_2020_12_tool,
  execute: (args) => `received ${JSON.stringify(args)}`,
});
agent.addTool({
  name: "greet",
  description: "Says hello (synchronous, no task support)",
  inputSchema: { type: "object", properties: { name: { type: "string" } }, required: ["name"] },
  execute: ({ name }) => `Hello, ${name}!`,
});
// --- The tasks extension (SEP-2663): these run as tasks for a client that negotiated it --------

const WORK = 400; // ms: past core's 100 ms window for a direct answer, so the call becomes a task
const work = (ms = WORK) => sleep(ms, undefined, { signal: currentContext().signal }); // tasks/cancel aborts it
agent.addTool({
  name: "slow_compute",
  description: "Sleeps the given seconds, then answers with its label",
  inputSchema: { type: "object", properties: { seconds: { type: "number", minimum: 0 }, label: { type: "string" } } },
  taskSupport: "optional",
  execute: async ({ seconds = 0, label = "" }) => {
    const wait = Math.max(Number(seconds), 0);
    await work(wait * 1000);
    return `computed ${label} in ${wait} s`;
  },
});
tool("failing_job", "Works for a second, then reports a tool error", async () => {
  await work();
  throw new Error("failing_job failed, as it always does");
}, { taskSupport: "required" });
tool("protocol_error_job", "Works for a second, then ends without an answer", async () => {
  await work();
  return 1n; // not JSON: core fails the task with a protocol error
}, { taskSupport: "optional" });
agent.addTool({
  name: "confirm_delete",
  description: "Looks the file up, asks the client to confirm, then deletes it",
  inputSchema: { type: "object", properties: { filename: { type: "string" } } },
  taskSupport: "optional",
  execute: async ({ filename = "" }) => {
    await work();
    const given = answer("confirm");
    if (given === undefined) return new InputRequired({ confirm: elicit(`Delete ${filename}?`, "confirm") });
    return given.action === "accept" ? `deleted ${filename}` : `kept ${filename}`;
  },
});
tool("multi_input", "Asks two questions at once, then answers with both", async () => {
  await work();
  const [first, second] = [answer("first"), answer("second")];
  if (first === undefined || second === undefined) {
    return new InputRequired({ first: elicit("First question: your name?", "name"), second: elicit("Second question: your name again?", "name") });
  }
  return `got ${JSON.stringify(first.content?.name)} and ${JSON.stringify(second.content?.name)}`;
}, { taskSupport: "optional" });
tool("test_tool_with_task", "Asks for the user's name in the call itself, then greets them from a task", async () => {
  const given = answer("user_name");
  if (given === undefined) return new InputRequired({ user_name: elicit("What is your name?", "name") }); // at once: answered directly
  await work();
  return `Hello, ${given.content?.name ?? "stranger"}!`;
}, { taskSupport: "required" });

tool("test_missing_capability", "Needs the client's sampling capability", () => "The client declared sampling", {
  requiredClientCapabilities: ["sampling"],
});
agent.addTool({
  name: "test_headers",
  description: "Echoes a parameter that callers mirror in the Mcp-Param-Region header",
  inputSchema: { type: "object", properties: { region: { type: "string", "x-mcp-header": "Region" } }, required: ["region"] },
  execute: ({ region }) => `region "${region}"`,
});

// --- Input requests (SEP-2322): answered by the client in a later call -------------------------

const elicitWith = (message, requestedSchema) => ({ method: "elicitation/create", params: { message, requestedSchema } });
const elicit = (message, field) => elicitWith(message, { type: "object", properties: { [field]: { type: "string" } }, required: [field] });
const sample = (question, maxTokens) => ({
  method: "sampling/createMessage",
  params: { messages: [{ role: "user", content: { type: "text", text: question } }], maxTokens },
});
const ROOTS = { method: "roots/list", params: {} };
const answer = (key) => currentContext().inputResponses?.[key];

function askName() {
  const given = answer("user_name");
  if (given === undefined) return new InputRequired({ user_name: elicit("What is your name?", "name") });
  return `Hello, ${given.content?.name ?? "stranger"}!`;
}
tool("test_input_required_result_elicitation", "Asks the client for the user's name", askName);
tool("test_streaming_elicitation", "Asks the client for the user's name, on the request's stream", askName);
tool("test_input_required_result_sampling", "Asks the client's model a question", () => {
  const given = answer("capital_question");
  if (given === undefined) return new InputRequired({ capital_question: sample("What is the capital of France?", 100) });
  return `The model answered: ${given.content?.text ?? ""}`;
});
tool("test_input_required_result_list_roots", "Asks the client for its roots", () => {
  const given = answer("client_roots");
  if (given === undefined) return new InputRequired({ client_roots: ROOTS });
  return `The client's roots: ${(given.roots ?? []).map((root) => root.uri).join(", ")}`;
});
function confirm() {
  if (answer("confirm") !== undefined && currentContext().requestState?.asked === "confirm") return "Confirmed: state-ok";
  return new InputRequired(
    {
      confirm: {
        method: "elicitation/create",
        params: { message: "Please confirm", requestedSchema: { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] } },
      },
    },
    { asked: "confirm" },
  );
}
tool("test_input_required_result_request_state", "Asks for a confirmation, with state to get back", confirm);
tool("test_input_required_result_tampered_state", "Asks with state that core seals", confirm);
tool("test_input_required_result_multiple_inputs", "Asks for a name, a greeting and the roots at once", () => {
  const all = ["user_name", "greeting", "client_roots"].every((key) => answer(key) !== undefined);
  if (all && currentContext().requestState != null) return "Received a name, a greeting and the roots";
  return new InputRequired(
    { user_name: elicit("What is your name?", "name"), greeting: sample("Generate a greeting", 50), client_roots: ROOTS },
    { asked: "all three" },
  );
});
tool("test_input_required_result_multi_round", "Asks for a name, then a colour", () => {
  const round = currentContext().requestState?.round;
  if (round === 2 && answer("step2") !== undefined) return `Favourite colour: ${answer("step2").content?.color ?? ""}`;
  if (round === 1 && answer("step1") !== undefined) {
    return new InputRequired({ step2: elicit("Step 2: What is your favorite color?", "color") }, { round: 2, name: answer("step1").content?.name });
  }
  return new InputRequired({ step1: elicit("Step 1: What is your name?", "name") }, { round: 1 });
});
tool("test_input_required_result_capabilities", "Asks only what the client declared it can answer", () => {
  const context = currentContext();
  const declared = context.clientCapabilities ?? {};
  const requests = {};
  if ("sampling" in declared) requests.capital_question = sample("What is the capital of France?", 100);
  if ("elicitation" in declared) requests.user_name = elicit("What is your name?", "name");
  if (Object.keys(requests).length > 0 && context.inputResponses == null) return new InputRequired(requests);
  return "Asked only what the client can answer";
});

// Legacy (2025-11-25) clients get these requests on the call's stream (core sends them).
agent.addTool({
  name: "test_elicitation",
  description: "Asks the user for a name and an email",
  inputSchema: { type: "object", properties: { message: { type: "string" } }, required: ["message"] },
  execute: ({ message }) => {
    const given = answer("user_info");
    if (given === undefined) return new InputRequired({ user_info: elicitWith(message, SCHEMAS.elicit_user_info) });
    return `User response: action=${JSON.stringify(given.action)}, content=${JSON.stringify(given.content)}`;
  },
});
agent.addTool({
  name: "test_sampling",
  description: "Asks the client's model to answer a prompt",
  inputSchema: { type: "object", properties: { prompt: { type: "string" } }, required: ["prompt"] },
  execute: ({ prompt }) => {
    const given = answer("completion");
    if (given === undefined) return new InputRequired({ completion: sample(prompt, 100) });
    return `LLM response: ${given.content?.text ?? ""}`;
  },
});
function form(schema) {
  const given = answer("form");
  if (given === undefined) return new InputRequired({ form: elicitWith("Please fill in the form", SCHEMAS[schema]) });
  return `Elicitation completed: action=${JSON.stringify(given.action)}, content=${JSON.stringify(given.content)}`;
}
tool("test_elicitation_sep1034_defaults", "Asks with a default for every primitive type", () => form("elicit_sep1034_defaults"));
tool("test_elicitation_sep1330_enums", "Asks with every kind of enum", () => form("elicit_sep1330_enums"));

// --- Resources and prompts ---------------------------------------------------------------------

agent.addResource({
  uri: "test://static-text",
  name: "static-text",
  description: "A static text resource",
  mimeType: "text/plain",
  text: "This is the content of the static text resource.",
});
agent.addResource({ uri: "test://static-binary", name: "static-binary", description: "A static binary resource (a PNG)", mimeType: "image/png", blob: PNG });
agent.addResource({ uri: "test://watched-resource", name: "watched-resource", description: "A resource a client may watch", mimeType: "text/plain", text: "Watched resource content." });
agent.addResource({
  uriTemplate: "test://template/{id}/data",
  name: "template-data",
  description: "Data for an id, read through the handler",
  mimeType: "application/json",
  read: (uri, { id }) => ({ uri, mimeType: "application/json", text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }) }),
});
agent.addPrompt({ name: "test_simple_prompt", description: "A simple prompt without arguments", get: () => "This is a simple prompt for testing." });
agent.addPrompt({
  name: "test_prompt_with_arguments",
  description: "A prompt with two required arguments",
  arguments: [
    { name: "arg1", description: "First test argument", required: true },
    { name: "arg2", description: "Second test argument", required: true },
  ],
  get: ({ arg1, arg2 }) => `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'`,
});
agent.addPrompt({
  name: "test_prompt_with_embedded_resource",
  description: "A prompt embedding a resource",
  arguments: [{ name: "resourceUri", description: "URI of the resource to embed", required: true }],
  get: ({ resourceUri }) => [
    { role: "user", content: new EmbeddedResource({ uri: resourceUri, mimeType: "text/plain", text: "Embedded resource content for testing." }) },
    { role: "user", content: "Please process the embedded resource above." },
  ],
});
agent.addPrompt({
  name: "test_prompt_with_image",
  description: "A prompt with an image",
  get: () => [
    { role: "user", content: new Image(PNG, "image/png") },
    { role: "user", content: "Please analyze the image above." },
  ],
});

agent.addPrompt({
  name: "test_input_required_result_prompt",
  description: "Asks the client for context before it answers",
  get: () => {
    const given = answer("user_context");
    if (given === undefined) return new InputRequired({ user_context: elicit("What context should the prompt use?", "context") });
    return `Prompt with context: ${given.content?.context ?? ""}`;
  },
});

await agent.start();
console.log(`endpoint ${agent.endpoint}`);
// Serve until the script that started us closes our standard input (or dies).
process.stdin.resume();
process.stdin.on("end", () => agent.stop().then(() => process.exit(0)));
