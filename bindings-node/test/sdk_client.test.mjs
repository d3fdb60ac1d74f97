// The official TypeScript MCP SDK client (@modelcontextprotocol/sdk, pinned in devDependencies)
// against toolmesh agents over mTLS: the progress a dependency reports reaches it through the
// agent it called, and cancelling its call stops the dependency's handler one hop away.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { Agent as Dispatcher, fetch as undiciFetch } from "undici";
import { currentContext } from "../dist/index.js";
import { callTool } from "../../tests/node/meshkit.mjs";
import { agent, eventually, meshFixture, serving } from "./fixtures.mjs";

const fixture = meshFixture();

/** An SDK client connected to `endpoint` with the operator's certificate (mutual TLS). */
async function sdkClient(endpoint) {
  const { certs } = fixture;
  const dispatcher = new Dispatcher({
    connect: { ca: readFileSync(certs.ca), cert: readFileSync(certs.pem("operator")), key: readFileSync(certs.key("operator")) },
  });
  const transport = new StreamableHTTPClientTransport(new URL(endpoint), {
    fetch: (url, init) => undiciFetch(url, { ...init, dispatcher }),
  });
  const client = new Client({ name: "toolmesh-sdk-test", version: "1.0.0" });
  await client.connect(transport);
  return { client, close: async () => (await client.close(), await dispatcher.close()) };
}

describe("the official TypeScript SDK client over mTLS", { timeout: 90_000 }, () => {
  it("receives the progress a dependency reports, relayed by the agent it called", async () => {
    const beta = agent(fixture, "beta");
    const alpha = agent(fixture, "alpha");
    beta.addTool({
      name: "inner",
      execute: async () => {
        currentContext().progress(1, 2, "inner halfway");
        await new Promise((resolve) => setImmediate(resolve));
        currentContext().progress(2, 2, "inner done");
        return { from: "inner" };
      },
    });
    alpha.addTool({ name: "outer", dependencies: ["inner"], execute: (_args, { inner }) => inner() });
    await serving([beta, alpha], async () => {
      await eventually(() => callTool(alpha.endpoint, fixture.certs, "outer", {}));
      const sdk = await sdkClient(alpha.endpoint);
      try {
        const seen = [];
        const result = await sdk.client.callTool({ name: "outer", arguments: {} }, undefined, {
          onprogress: (progress) => seen.push(progress),
        });
        assert.deepEqual(seen, [
          { progress: 1, total: 2, message: "inner halfway" },
          { progress: 2, total: 2, message: "inner done" },
        ]);
        assert.deepEqual(result.structuredContent, { from: "inner" });
      } finally {
        await sdk.close();
      }
    });
  });

  it("cancels its call, and the dependency's handler one hop away sees it", async () => {
    const beta = agent(fixture, "beta");
    const alpha = agent(fixture, "alpha");
    let started;
    const innerStarted = new Promise((resolve) => (started = resolve));
    let seenCancelled;
    const innerCancelled = new Promise((resolve) => (seenCancelled = resolve));
    beta.addTool({
      name: "hangs",
      execute: async () => {
        const { signal } = currentContext();
        started();
        await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
        seenCancelled(performance.now());
        return "cancelled";
      },
    });
    beta.addTool({ name: "ready", execute: () => "ready" });
    alpha.addTool({ name: "waits", dependencies: ["hangs"], execute: (_args, { hangs }) => hangs() });
    alpha.addTool({ name: "probe", dependencies: ["ready"], execute: (_args, { ready }) => ready() });
    await serving([beta, alpha], async () => {
      await eventually(() => callTool(alpha.endpoint, fixture.certs, "probe", {}));
      const sdk = await sdkClient(alpha.endpoint);
      try {
        const abort = new AbortController();
        const call = sdk.client.callTool({ name: "waits", arguments: {} }, undefined, { signal: abort.signal });
        await innerStarted;
        const aborted = performance.now();
        abort.abort("the user gave up");
        await assert.rejects(call);
        const cancelledAt = await Promise.race([
          innerCancelled,
          new Promise((_, reject) => setTimeout(() => reject(new Error("the dependency's handler never saw the cancellation")), 5_000)),
        ]);
        // Two hops (the SDK's notifications/cancelled to alpha, alpha's closed stream to beta).
        assert.ok(cancelledAt - aborted < 1_000, `cancelled ${Math.round(cancelledAt - aborted)} ms after the abort`);
      } finally {
        await sdk.close();
      }
    });
  });
});
