// Rich tool results, resources and prompts, over MCP to a real agent with mTLS: what a JS
// handler returns reaches the client as the MCP items core writes, and an invalid answer reaches
// it as HANDLER_RESULT naming the item at fault.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Audio, currentContext, EmbeddedResource, Image, InputRequired, ResourceLink, Text, ToolResult } from "../dist/index.js";
import { callError, mcpPost } from "../../tests/node/meshkit.mjs";
import { agent, meshFixture, serving } from "./fixtures.mjs";

const fixture = meshFixture({ registry: false });

// A 1x1 PNG, as bytes and as MCP carries it.
const PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
const PNG = Buffer.from(PNG_BASE64, "base64");
// Bytes whose base64 needs padding, in a view that does not start at its buffer's start.
const WAV = new Uint8Array([0, 82, 73, 70, 70, 1]).subarray(1, 5);

async function mcp(target, method, params) {
  // In 2026-07-28, Mcp-Name mirrors a read's URI (mcpPost mirrors params.name itself).
  const headers = params.uri === undefined ? {} : { "Mcp-Name": params.uri };
  const { status, body } = await mcpPost(target.endpoint, fixture.certs, { jsonrpc: "2.0", id: 1, method, params }, { headers });
  assert.equal(status, 200, `${method}: ${status} ${JSON.stringify(body)}`);
  return body;
}

async function callResult(target, tool) {
  const body = await mcp(target, "tools/call", { name: tool, arguments: {} });
  assert.ok(body.result, JSON.stringify(body));
  return body.result;
}

describe("rich tool results", { timeout: 60_000 }, () => {
  it("reach the client as the content items the handler gave, bytes base64-encoded", async () => {
    const alpha = agent(fixture, "alpha");
    alpha.addTool({ name: "picture", execute: () => new ToolResult({ content: ["a red pixel", new Image(PNG, "image/png")] }) });
    alpha.addTool({
      name: "everything",
      execute: () => [
        new Text("hello", { audience: ["user"] }),
        new Audio(WAV, "audio/wav"),
        new ResourceLink({ uri: "test://doc", name: "doc", mimeType: "text/plain" }),
        new EmbeddedResource({ uri: "test://blob", mimeType: "application/octet-stream", blob: WAV }),
        new EmbeddedResource({ uri: "test://text", text: "inline" }),
      ],
    });
    alpha.addTool({ name: "counted", execute: () => new ToolResult({ content: [new Image(PNG, "image/png")], structuredContent: { count: 1 } }) });
    alpha.addTool({ name: "only-structured", execute: () => new ToolResult({ structuredContent: { answer: 42 } }) });
    alpha.addTool({ name: "refused", execute: () => new ToolResult({ content: ["not today"], isError: true }) });
    alpha.addTool({ name: "plain-array", execute: () => [1, "two"] });
    await serving([alpha], async () => {
      const picture = await callResult(alpha, "picture");
      assert.deepEqual(picture.content, [
        { type: "text", text: "a red pixel" },
        { type: "image", data: PNG_BASE64, mimeType: "image/png" },
      ]);
      assert.equal(picture.isError, false);
      assert.equal(picture.structuredContent, undefined);

      const everything = await callResult(alpha, "everything");
      const wavBase64 = Buffer.from([82, 73, 70, 70]).toString("base64");
      assert.equal(wavBase64, "UklGRg==");
      assert.deepEqual(everything.content, [
        { type: "text", text: "hello", annotations: { audience: ["user"] } },
        { type: "audio", data: wavBase64, mimeType: "audio/wav" },
        { type: "resource_link", uri: "test://doc", name: "doc", mimeType: "text/plain" },
        { type: "resource", resource: { uri: "test://blob", mimeType: "application/octet-stream", blob: wavBase64 } },
        { type: "resource", resource: { uri: "test://text", text: "inline" } },
      ]);

      // structuredContent without a text item gets its serialized text appended (spec SHOULD).
      const counted = await callResult(alpha, "counted");
      assert.deepEqual(counted.structuredContent, { count: 1 });
      assert.deepEqual(counted.content, [
        { type: "image", data: PNG_BASE64, mimeType: "image/png" },
        { type: "text", text: '{"count":1}' },
      ]);
      const structured = await callResult(alpha, "only-structured");
      assert.deepEqual(structured.structuredContent, { answer: 42 });
      assert.deepEqual(structured.content, [{ type: "text", text: '{"answer":42}' }]);

      // The tool's own isError result is a result, not a mesh error.
      const refused = await callResult(alpha, "refused");
      assert.equal(refused.isError, true);
      assert.deepEqual(refused.content, [{ type: "text", text: "not today" }]);
      assert.equal(refused._meta?.["dev.toolmesh/error"], undefined);

      // An array of plain values is a plain value, not content items.
      assert.deepEqual((await callResult(alpha, "plain-array")).structuredContent, [1, "two"]);
    });
  });

  it("an invalid result reaches the caller as HANDLER_RESULT naming the item", async () => {
    const alpha = agent(fixture, "alpha");
    alpha.addTool({
      name: "bad-image",
      execute: () => new ToolResult({ content: ["fine", { type: "image", data: "not base64!", mimeType: "image/png" }] }),
    });
    alpha.addTool({ name: "no-mime", execute: () => new Image(PNG, "") });
    alpha.addTool({ name: "empty", execute: () => new ToolResult({ content: [] }) });
    await serving([alpha], async () => {
      let error = await callError(alpha.endpoint, fixture.certs, "bad-image", {});
      assert.equal(error.name, "HANDLER_RESULT");
      assert.match(error.message, /^tool 'bad-image' returned an invalid tool result: content\[1\]: image 'data' is not base64/);
      error = await callError(alpha.endpoint, fixture.certs, "no-mime", {});
      assert.equal(error.name, "HANDLER_RESULT");
      assert.match(error.message, /^tool 'no-mime' returned an invalid tool result: content\[0\]: .*mimeType/);
      error = await callError(alpha.endpoint, fixture.certs, "empty", {});
      assert.equal(error.name, "HANDLER_RESULT");
      assert.match(error.message, /needs 'content' items or 'structuredContent'/);
    });
  });
});

describe("resources and prompts", { timeout: 60_000 }, () => {
  function catalogAgent(seen = []) {
    const alpha = agent(fixture, "alpha");
    alpha.addTool({ name: "noop", execute: () => null });
    alpha.addResource({ uri: "test://static-text", name: "static-text", mimeType: "text/plain", text: "static text" });
    alpha.addResource({ uri: "test://static-binary", name: "static-binary", mimeType: "image/png", blob: PNG });
    alpha.addResource({
      uri: "test://live",
      name: "live",
      description: "read through JavaScript",
      mimeType: "text/plain",
      read: (uri) => {
        seen.push(uri);
        return `live text of ${uri}`;
      },
    });
    alpha.addResource({
      uriTemplate: "test://template/{id}/data",
      name: "template-data",
      mimeType: "application/json",
      read: async (uri, { id }) => ({ uri, mimeType: "application/json", text: JSON.stringify({ id }) }),
    });
    alpha.addResource({ uriTemplate: "test://picture/{name}", name: "picture", mimeType: "image/png", read: () => PNG });
    alpha.addResource({ uri: "test://empty", name: "empty", read: () => [] });
    alpha.addResource({ uri: "test://bad-blob", name: "bad-blob", read: (uri) => ({ uri, blob: "not base64!" }) });
    alpha.addResource({
      uri: "test://failing",
      name: "failing",
      read: () => {
        throw new Error("the disk is gone");
      },
    });
    alpha.addPrompt({ name: "test_simple_prompt", description: "a simple prompt", get: () => "This is a simple prompt." });
    alpha.addPrompt({
      name: "test_prompt_with_arguments",
      arguments: [
        { name: "arg1", description: "first", required: true },
        { name: "arg2", required: false },
      ],
      get: ({ arg1, arg2 }) => ({
        description: "with arguments",
        messages: [
          { role: "user", content: `arg1=${arg1} arg2=${arg2}` },
          { role: "assistant", content: new Image(PNG, "image/png") },
        ],
      }),
    });
    alpha.addPrompt({ name: "bad_prompt", get: () => [{ role: "system", content: "nope" }] });
    return alpha;
  }

  it("are listed in declaration order", async () => {
    const alpha = catalogAgent();
    await serving([alpha], async () => {
      const resources = (await mcp(alpha, "resources/list", {})).result.resources;
      assert.deepEqual(
        resources.map((r) => r.uri),
        ["test://static-text", "test://static-binary", "test://live", "test://empty", "test://bad-blob", "test://failing"],
      );
      assert.deepEqual(resources[2], { uri: "test://live", name: "live", description: "read through JavaScript", mimeType: "text/plain" });
      assert.equal(resources[0].text, undefined, "content is never listed");
      const templates = (await mcp(alpha, "resources/templates/list", {})).result.resourceTemplates;
      assert.deepEqual(templates, [
        { uriTemplate: "test://template/{id}/data", name: "template-data", mimeType: "application/json" },
        { uriTemplate: "test://picture/{name}", name: "picture", mimeType: "image/png" },
      ]);
      const prompts = (await mcp(alpha, "prompts/list", {})).result.prompts;
      assert.deepEqual(prompts, [
        { name: "test_simple_prompt", description: "a simple prompt" },
        {
          name: "test_prompt_with_arguments",
          arguments: [
            { name: "arg1", description: "first", required: true },
            { name: "arg2", required: false },
          ],
        },
        { name: "bad_prompt" },
      ]);
    });
  });

  it("are read and got through JavaScript, static content by core", async () => {
    const seen = [];
    const alpha = catalogAgent(seen);
    await serving([alpha], async () => {
      const read = async (uri) => (await mcp(alpha, "resources/read", { uri })).result.contents;
      assert.deepEqual(await read("test://static-text"), [{ uri: "test://static-text", mimeType: "text/plain", text: "static text" }]);
      assert.deepEqual(await read("test://static-binary"), [{ uri: "test://static-binary", mimeType: "image/png", blob: PNG_BASE64 }]);
      assert.deepEqual(await read("test://live"), [{ uri: "test://live", mimeType: "text/plain", text: "live text of test://live" }]);
      assert.deepEqual(seen, ["test://live"], "only the resource without content reaches JavaScript");
      assert.deepEqual(await read("test://template/42/data"), [
        { uri: "test://template/42/data", mimeType: "application/json", text: '{"id":"42"}' },
      ]);
      assert.deepEqual(await read("test://picture/pixel"), [{ uri: "test://picture/pixel", mimeType: "image/png", blob: PNG_BASE64 }]);

      const simple = (await mcp(alpha, "prompts/get", { name: "test_simple_prompt" })).result;
      assert.deepEqual(simple.messages, [{ role: "user", content: { type: "text", text: "This is a simple prompt." } }]);
      const withArguments = (await mcp(alpha, "prompts/get", { name: "test_prompt_with_arguments", arguments: { arg1: "a", arg2: "b" } })).result;
      assert.equal(withArguments.description, "with arguments");
      assert.deepEqual(withArguments.messages, [
        { role: "user", content: { type: "text", text: "arg1=a arg2=b" } },
        { role: "assistant", content: { type: "image", data: PNG_BASE64, mimeType: "image/png" } },
      ]);
      // A missing required argument is refused by core before JavaScript sees it.
      const missing = await mcp(alpha, "prompts/get", { name: "test_prompt_with_arguments", arguments: { arg2: "b" } });
      assert.equal(missing.error?.code, -32602, JSON.stringify(missing));
      assert.match(missing.error.message, /arg1/);
    });
  });

  it("an invalid answer or a throw reaches the caller naming the problem", async () => {
    const alpha = catalogAgent();
    await serving([alpha], async () => {
      const failure = async (method, params) => {
        const body = await mcp(alpha, method, params);
        assert.equal(body.error?.code, -32603, JSON.stringify(body));
        return body.error;
      };
      let error = await failure("resources/read", { uri: "test://empty" });
      assert.equal(error.data.name, "HANDLER_RESULT");
      assert.match(error.message, /resource 'test:\/\/empty'.*'contents' is empty/);
      error = await failure("resources/read", { uri: "test://bad-blob" });
      assert.equal(error.data.name, "HANDLER_RESULT");
      assert.match(error.message, /contents\[0\].*'blob' is not base64/);
      error = await failure("resources/read", { uri: "test://failing" });
      assert.equal(error.data.name, "HANDLER_FAILED");
      assert.match(error.message, /resource 'test:\/\/failing' failed: the disk is gone/);
      error = await failure("prompts/get", { name: "bad_prompt" });
      assert.equal(error.data.name, "HANDLER_RESULT");
      assert.match(error.message, /prompt 'bad_prompt'.*messages\[0\]: 'role'/);
    });
  });

  it("are checked at start, and by the binding when they cannot be answered", async () => {
    const alpha = agent(fixture, "alpha");
    assert.throws(() => alpha.addResource({ uri: "test://nothing", name: "nothing" }), /resource 'test:\/\/nothing' needs its content/);
    assert.throws(() => alpha.addPrompt({ name: "p" }), /prompt 'p' needs a get function/);
    alpha.addResource({ uriTemplate: "test://{a}{b}", name: "ambiguous", read: () => "" });
    await assert.rejects(alpha.start(), (error) => error.kind === "INVALID_CONFIG" && /resourceTemplates\[0\]\.uriTemplate/.test(error.message));
  });
});

describe("progress and log messages", { timeout: 60_000 }, () => {
  it("reach the client as events before the result, as far as the request asked", async () => {
    const alpha = agent(fixture, "alpha");
    const sent = [];
    alpha.addTool({
      name: "crunch",
      execute: async () => {
        const context = currentContext();
        sent.push(context.progress(1, 2, "half"), context.log("debug", "below the level"), context.log("warning", { disk: 91 }, "store"));
        await new Promise((resolve) => setImmediate(resolve));
        context.progress(2, 2);
        assert.throws(() => context.log("loud", 1), /log level "loud" is not one of debug, info/);
        sent.push(context.cancelled);
        return "crunched";
      },
    });
    await serving([alpha], async () => {
      const meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/logLevel": "info",
        progressToken: "n-1",
      };
      const { status, body, events } = await mcpPost(alpha.endpoint, fixture.certs, {
        jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "crunch", arguments: {}, _meta: meta },
      });
      assert.equal(status, 200);
      assert.deepEqual(events, [
        { jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: "n-1", progress: 1, total: 2, message: "half" } },
        { jsonrpc: "2.0", method: "notifications/message", params: { level: "warning", logger: "store", data: { disk: 91 } } },
        { jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: "n-1", progress: 2, total: 2 } },
      ]);
      assert.equal(body.result.structuredContent, "crunched");
      assert.deepEqual(sent, [true, false, true, false]);

      // Asked for nothing: nothing is sent, and the answer is one JSON body.
      const plain = await mcpPost(alpha.endpoint, fixture.certs, { jsonrpc: "2.0", id: 2, method: "tools/call", params: { name: "crunch", arguments: {} } });
      assert.deepEqual([plain.events, plain.body.result.structuredContent], [[], "crunched"]);
    });
  });
});

describe("a tool's contract with its answers and its clients", { timeout: 60_000 }, () => {
  const modernMeta = (capabilities) => ({
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": capabilities,
  });

  it("lists an output schema (zod too) and holds every answer to it", async () => {
    const { z } = await import("zod");
    const alpha = agent(fixture, "alpha");
    alpha.addTool({
      name: "counted",
      inputSchema: { type: "object", properties: { honest: { type: "boolean" } } },
      outputSchema: z.object({ count: z.number().int() }),
      execute: ({ honest }) => (honest ? { count: 3 } : { count: "three" }),
    });
    await serving([alpha], async () => {
      const listed = await mcp(alpha, "tools/list", {});
      const counted = listed.result.tools.find((t) => t.name === "counted");
      assert.equal(counted.outputSchema.type, "object");
      assert.deepEqual(counted.outputSchema.required, ["count"]);
      const good = await mcp(alpha, "tools/call", { name: "counted", arguments: { honest: true } });
      assert.deepEqual([good.result.isError, good.result.structuredContent], [false, { count: 3 }]);
      const bad = await mcp(alpha, "tools/call", { name: "counted", arguments: { honest: false } });
      assert.equal(bad.result.isError, true);
      assert.equal(
        bad.result.content[0].text,
        "tool 'counted' returned structuredContent that does not match its outputSchema: member 'count' must be of type integer, got string",
      );
    });
  });

  it("refuses a modern client without a required capability, and shows the handler the caller and its capabilities", async () => {
    const alpha = agent(fixture, "alpha");
    const seen = [];
    alpha.addTool({
      name: "sampler",
      requiredClientCapabilities: ["sampling"],
      execute: () => {
        const context = currentContext();
        seen.push([context.caller, context.clientCapabilities]);
        return "sampled";
      },
    });
    await serving([alpha], async () => {
      const call = (capabilities) =>
        mcpPost(alpha.endpoint, fixture.certs, {
          jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "sampler", arguments: {}, _meta: modernMeta(capabilities) },
        });
      const refused = await call({});
      assert.equal(refused.status, 400);
      assert.equal(refused.body.error.code, -32021);
      assert.deepEqual(refused.body.error.data, { requiredCapabilities: { sampling: {} } });
      const served = await call({ sampling: {} });
      assert.equal(served.status, 200);
      // A legacy request: capabilities unknown, the tool runs.
      const legacy = await mcpPost(
        alpha.endpoint,
        fixture.certs,
        { jsonrpc: "2.0", id: 2, method: "tools/call", params: { name: "sampler", arguments: {}, _meta: {} } },
        { headers: { "MCP-Protocol-Version": "2025-11-25" } },
      );
      assert.deepEqual([legacy.status, legacy.body.result.structuredContent], [200, { result: "sampled" }]);
    });
    assert.deepEqual(seen, [
      ["spiffe://toolmesh.local/operator/operator", { sampling: {} }],
      ["spiffe://toolmesh.local/operator/operator", null],
    ]);
  });
});

describe("long calls", { timeout: 60_000 }, () => {
  it("a dependency's progress reaches the client through a handler that only calls it", async () => {
    const alpha = agent(fixture, "alpha");
    alpha.addTool({
      name: "inner",
      execute: async () => {
        currentContext().progress(1, 2, "inner halfway");
        await new Promise((resolve) => setImmediate(resolve));
        currentContext().progress(2, 2);
        return "inner done";
      },
    });
    // Served by the same agent, so called in process: core relays all the same.
    alpha.addTool({ name: "outer", dependencies: ["inner"], execute: async (_args, { inner }) => inner({}) });
    await serving([alpha], async () => {
      const meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        progressToken: "relay-1",
      };
      const { body, events } = await mcpPost(alpha.endpoint, fixture.certs, {
        jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "outer", arguments: {}, _meta: meta },
      });
      assert.deepEqual(events, [
        { jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: "relay-1", progress: 1, total: 2, message: "inner halfway" } },
        { jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: "relay-1", progress: 2, total: 2 } },
      ]);
      assert.equal(body.result.structuredContent, "inner done");
    });
  });

  it("the context's AbortSignal is aborted when the request's deadline passes, without blocking the JS thread", async () => {
    const alpha = agent(fixture, "alpha");
    const seen = {};
    alpha.addTool({
      name: "waits",
      execute: async () => {
        const { signal } = currentContext();
        assert.equal(currentContext().signal, signal, "one signal per request");
        seen.abortedAtStart = signal.aborted;
        const started = Date.now();
        try {
          await sleep(30_000, undefined, { signal });
        } catch (error) {
          seen.error = error.name;
        }
        seen.waitedMs = Date.now() - started;
        seen.cancelled = currentContext().cancelled;
        return "gave up";
      },
    });
    await serving([alpha], async () => {
      // The JS thread keeps turning while the handler waits: a timer set now fires on time.
      let ticks = 0;
      const ticker = setInterval(() => ticks++, 10);
      const meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "dev.toolmesh/deadlineMs": 300,
      };
      const { body } = await mcpPost(alpha.endpoint, fixture.certs, {
        jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "waits", arguments: {}, _meta: meta },
      });
      clearInterval(ticker);
      assert.equal(body.result.structuredContent, "gave up");
      assert.deepEqual([seen.abortedAtStart, seen.error, seen.cancelled], [false, "AbortError", true]);
      assert.ok(seen.waitedMs >= 250 && seen.waitedMs < 300 + 100, `aborted after ${seen.waitedMs} ms`);
      assert.ok(ticks >= 10, `the JS thread ran its timers while the handler waited (${ticks} ticks)`);
    });
  });
});

describe("completion", { timeout: 60_000 }, () => {
  it("offers the values a prompt argument and a template variable declare", async () => {
    const alpha = agent(fixture, "alpha");
    alpha.addPrompt({ name: "forecast", arguments: [{ name: "city", completions: ["Paris", "Pamplona", "Berlin"] }], get: () => "x" });
    alpha.addResource({ uriTemplate: "weather://{city}", name: "weather", completions: { city: ["Oslo", "Osaka"] }, read: (uri) => uri });
    await serving([alpha], async () => {
      const complete = async (ref, name, value) => (await mcp(alpha, "completion/complete", { ref, argument: { name, value } })).result.completion;
      assert.deepEqual(await complete({ type: "ref/prompt", name: "forecast" }, "city", "pA"), { values: ["Paris", "Pamplona"], total: 2, hasMore: false });
      assert.deepEqual((await complete({ type: "ref/resource", uri: "weather://{city}" }, "city", "os")).values, ["Oslo", "Osaka"]);
      const listed = await mcp(alpha, "prompts/list", {});
      assert.ok(!JSON.stringify(listed).includes("completions"), JSON.stringify(listed));
    });
  });
});

describe("a dependency's whole result", { timeout: 60_000 }, () => {
  it("is every content item as the callee sent it, and a handler returning it answers with the same result", async () => {
    const alpha = agent(fixture, "alpha");
    const link = { type: "resource_link", uri: "file:///report.pdf", name: "report.pdf", icons: [{ src: "https://example.com/i.png" }], _meta: { k: 1 } };
    alpha.addTool({
      name: "picture",
      execute: () => new ToolResult({ content: [new Image(PNG, "image/png", { audience: ["user"] }), link], structuredContent: { pages: 3 } }),
    });
    const seen = [];
    alpha.addTool({
      name: "relay",
      dependencies: ["picture"],
      execute: async (_args, { picture }) => {
        const result = await picture.callResult();
        seen.push(result);
        return result;
      },
    });
    await serving([alpha], async () => {
      const direct = await callResult(alpha, "picture");
      const relayed = await callResult(alpha, "relay");
      assert.deepEqual([relayed.content, relayed.structuredContent], [direct.content, direct.structuredContent]);
      assert.deepEqual(direct.content.slice(0, 2), [
        { type: "image", data: PNG_BASE64, mimeType: "image/png", annotations: { audience: ["user"] } },
        link,
      ]);
      assert.ok(seen[0] instanceof ToolResult, "callResult resolves to a ToolResult");
      assert.deepEqual(seen[0].structuredContent, { pages: 3 });
    });
  });
});

describe("a dependency's updates as an AsyncIterable", { timeout: 60_000 }, () => {
  it("arrive in order, end with the call, and are the handler's to re-emit (no relay for that call)", async () => {
    const alpha = agent(fixture, "alpha");
    const seen = [];
    alpha.addTool({
      name: "inner",
      execute: async () => {
        currentContext().progress(1, 2, "inner halfway");
        currentContext().log("warning", { disk: 91 }, "inner");
        await new Promise((resolve) => setImmediate(resolve));
        currentContext().progress(2, 2);
        return "inner done";
      },
    });
    alpha.addTool({
      name: "outer",
      dependencies: ["inner"],
      execute: async (_args, { inner }) => {
        const call = inner.stream({});
        for await (const update of call) {
          seen.push(update);
          if (update.kind === "progress") currentContext().progress(update.progress * 10, 20, `outer saw ${update.message}`);
        }
        return `outer: ${await call}`;
      },
    });
    await serving([alpha], async () => {
      const meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        progressToken: "s-1",
      };
      const { body, events } = await mcpPost(alpha.endpoint, fixture.certs, {
        jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "outer", arguments: {}, _meta: meta },
      });
      assert.deepEqual(seen, [
        { kind: "progress", progress: 1, total: 2, message: "inner halfway" },
        { kind: "log", level: "warning", logger: "inner", data: { disk: 91 } },
        { kind: "progress", progress: 2, total: 2 },
      ]);
      assert.deepEqual(events, [
        { jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: "s-1", progress: 10, total: 20, message: "outer saw inner halfway" } },
        { jsonrpc: "2.0", method: "notifications/progress", params: { progressToken: "s-1", progress: 20, total: 20, message: "outer saw undefined" } },
      ]);
      assert.equal(body.result.structuredContent, "outer: inner done");
    });
  });
});

describe("input required", { timeout: 60_000 }, () => {
  it("asks the client, and the second call brings its answers and the sealed state", async () => {
    const alpha = agent(fixture, "alpha");
    const seen = [];
    alpha.addTool({
      name: "greet",
      execute: () => {
        const { inputResponses, requestState } = currentContext();
        seen.push([inputResponses, requestState]);
        if (inputResponses?.name === undefined) {
          return new InputRequired(
            { name: { method: "elicitation/create", params: { message: "Who are you?", requestedSchema: { type: "object" } } } },
            { asked: "name" },
          );
        }
        return `Hello, ${inputResponses.name.content.name}!`;
      },
    });
    await serving([alpha], async () => {
      const call = (extra) =>
        mcpPost(alpha.endpoint, fixture.certs, {
          jsonrpc: "2.0", id: 1, method: "tools/call",
          params: {
            name: "greet", arguments: {}, ...extra,
            _meta: { "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": { elicitation: {} } },
          },
        });
      const first = await call({});
      assert.equal(first.body.result.resultType, "input_required", JSON.stringify(first.body));
      assert.equal(first.body.result.inputRequests.name.method, "elicitation/create");
      const answers = { name: { action: "accept", content: { name: "Ada" } } };
      const second = await call({ inputResponses: answers, requestState: first.body.result.requestState });
      assert.equal(second.body.result.structuredContent, "Hello, Ada!", JSON.stringify(second.body));
      assert.deepEqual(seen, [[null, null], [answers, { asked: "name" }]]);
    });
  });
});
