// Input schemas: plain JSON Schema is served unchanged; a zod schema is served as JSON Schema
// and parses the arguments (defaults, refinements) before the handler sees them.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { z } from "zod";
import { callError, callTool, mcpPost } from "../../tests/node/meshkit.mjs";
import { agent, meshFixture, serving } from "./fixtures.mjs";

const fixture = meshFixture({ registry: false });

async function listedSchemas(target) {
  const { body } = await mcpPost(target.endpoint, fixture.certs, { jsonrpc: "2.0", id: 1, method: "tools/list", params: {} });
  return Object.fromEntries(body.result.tools.map((tool) => [tool.name, tool.inputSchema]));
}

describe("input schemas", { timeout: 60_000 }, () => {
  it("serve JSON Schema as given, zod as JSON Schema, and none as an empty object", async () => {
    const plain = { type: "object", properties: { a: { type: "number" } }, required: ["a"], additionalProperties: false };
    const alpha = agent(fixture, "alpha");
    alpha.addTool({ name: "plain", inputSchema: plain, execute: ({ a }) => a });
    alpha.addTool({ name: "zod", inputSchema: z.object({ a: z.number(), label: z.string().optional() }), execute: ({ a }) => a });
    alpha.addTool({ name: "none", execute: () => null });
    await serving([alpha], async () => {
      const schemas = await listedSchemas(alpha);
      assert.deepEqual(schemas.plain, plain);
      assert.equal(schemas.zod.type, "object");
      assert.deepEqual(schemas.zod.properties, { a: { type: "number" }, label: { type: "string" } });
      assert.deepEqual(schemas.zod.required, ["a"]);
      assert.deepEqual(schemas.none, { type: "object", properties: {} });
    });
  });

  it("parse arguments with zod: defaults reach the handler, failed refinements reach the caller", async () => {
    const alpha = agent(fixture, "alpha");
    alpha.addTool({
      name: "greet",
      inputSchema: z.object({ name: z.string().min(2), times: z.number().int().default(2) }),
      execute: ({ name, times }) => Array(times).fill(name).join(" "),
    });
    await serving([alpha], async () => {
      assert.equal(await callTool(alpha.endpoint, fixture.certs, "greet", { name: "yo" }), "yo yo");
      // core checks types first, against the JSON Schema
      let error = await callError(alpha.endpoint, fixture.certs, "greet", { name: 7 });
      assert.equal(error.code, 5003);
      assert.match(error.message, /^tool 'greet': argument 'name' must be /);
      // then zod checks what JSON Schema types cannot say
      error = await callError(alpha.endpoint, fixture.certs, "greet", { name: "y" });
      assert.deepEqual([error.code, error.name], [5003, "INVALID_ARGUMENTS"]);
      assert.match(error.message, /^tool 'greet': argument 'name': Too small/);
    });
  });

  it("refuse a Standard Schema that cannot describe itself as JSON Schema", async () => {
    const alpha = agent(fixture, "alpha");
    const opaque = { "~standard": { version: 1, vendor: "opaque", validate: (value) => ({ value }) } };
    alpha.addTool({ name: "opaque", inputSchema: opaque, execute: () => null });
    await assert.rejects(alpha.start(), (error) => error instanceof TypeError && /opaque schema cannot describe itself/.test(error.message));
  });
});
