// Headers the caller's code sets on purpose with withCallHeaders: seen by the handler the call
// reaches whatever its allow-list, forwarded no further unless allow-listed. Real agents, a real
// registry, mTLS; every agent's allow-list names only x-tenant.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { headers, ToolmeshError, withCallHeaders } from "../dist/index.js";
import { callTool } from "../../tests/node/meshkit.mjs";
import { agent, eventually, meshFixture, serving } from "./fixtures.mjs";

const fixture = meshFixture();

describe("withCallHeaders", { timeout: 120_000 }, () => {
  it("gives the next handler the scope's headers, and no hop after it", async () => {
    const options = { propagateHeaders: "x-tenant" };
    const front = agent(fixture, "alpha", options);
    const middle = agent(fixture, "beta", options);
    const back = agent(fixture, "gamma", options);
    back.addTool({ name: "inspect", capability: "inspect", execute: () => headers() });
    middle.addTool({
      name: "inspect_onward",
      capability: "inspect-onward",
      dependencies: ["inspect"],
      execute: async (_, { inspect }) => ({ seen: headers(), next: await inspect() }),
    });
    front.addTool({
      name: "inspect_here",
      capability: "inspect-here",
      dependencies: ["inspect"],
      execute: async (_, { inspect }) => ({ seen: headers(), next: await inspect() }),
    });
    front.addTool({
      name: "nested",
      dependencies: ["inspect-onward"],
      execute: async (_, { "inspect-onward": onward }) => {
        const [inner, outer] = await withCallHeaders({ "X-Scoped": "outer", "x-plan": "gold" }, async () => {
          const inner = await withCallHeaders({ "x-scoped": "inner", "x-tenant": "t-override" }, async () => {
            await sleep(5); // the scope follows the code across awaits and timers
            return onward();
          });
          return [inner, await onward()];
        });
        return { inner, outer, after: await onward(), own: headers() };
      },
    });
    front.addTool({
      name: "in_process",
      dependencies: ["inspect-here"],
      execute: (_, { "inspect-here": here }) => withCallHeaders({ "x-scoped": "local" }, () => here()),
    });
    front.addTool({
      name: "refused",
      dependencies: ["inspect-onward"],
      execute: async (_, { "inspect-onward": onward }) => {
        const outcomes = {};
        for (const [name, value] of [["content-type", "text/plain"], ["x bad", "v"], ["x-note", "line\nbreak"]]) {
          const error = await withCallHeaders({ [name]: value }, () => onward()).then(() => assert.fail(`${name} was sent`), (e) => e);
          assert.ok(error instanceof ToolmeshError);
          outcomes[name] = { code: error.code, kind: error.kind, message: error.message };
        }
        return outcomes;
      },
    });
    await serving([back, middle, front], async () => {
      const result = await eventually(() => callTool(front.endpoint, fixture.certs, "nested", {}, { "X-Tenant": "t-1" }));
      assert.deepEqual(result.inner, {
        seen: { "x-tenant": "t-override", "x-plan": "gold", "x-scoped": "inner" },
        next: { "x-tenant": "t-override" }, // allow-listed: goes on; the rest stops at the middle
      });
      assert.deepEqual(result.outer, { seen: { "x-tenant": "t-1", "x-scoped": "outer", "x-plan": "gold" }, next: { "x-tenant": "t-1" } });
      assert.deepEqual(result.after, { seen: { "x-tenant": "t-1" }, next: { "x-tenant": "t-1" } }, "the scope ended with its function");
      assert.deepEqual(result.own, { "x-tenant": "t-1" }, "a scope changes the calls, not the handler's own context");
      // A dependency the agent serves itself gets the same rule as one across the network.
      assert.deepEqual(await eventually(() => callTool(front.endpoint, fixture.certs, "in_process", {})), { seen: { "x-scoped": "local" }, next: {} });
      assert.deepEqual(await callTool(front.endpoint, fixture.certs, "refused", {}), {
        "content-type": { code: 5003, kind: "INVALID_ARGUMENTS", message:
          "call header 'content-type' cannot be set: the request sets it itself (hop-by-hop, body, protocol, trace and toolmesh headers never are); use another name" },
        "x bad": { code: 5003, kind: "INVALID_ARGUMENTS", message:
          "call header 'x bad' is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)" },
        "x-note": { code: 5003, kind: "INVALID_ARGUMENTS", message:
          "the value of call header 'x-note' is not a valid HTTP header value (visible ASCII, spaces and tabs only)" },
      });
    });
  });

  it("takes string values and returns what its function returns", () => {
    assert.throws(() => withCallHeaders({ "x-count": 3 }, () => 0), { name: "TypeError", message: "withCallHeaders takes string values; header 'x-count' is number" });
    assert.equal(withCallHeaders({ "x-a": "1" }, () => 42), 42);
  });
});
