// Node and Python agents in one mesh, as separate processes over mTLS through the registry: a
// Node agent calls a Python tool and a Python agent calls a Node tool, with header propagation
// and one trace across the hops.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { callTool, certsInit, Mesh, ROOT, tempDir, venvPython, waitUntil } from "./meshkit.mjs";

const node = (agent) => [process.execPath, `${ROOT}/tests/node/agents/${agent}.mjs`];
const python = (agent) => [venvPython(), `${ROOT}/tests/python/agents/${agent}.py`];
// Headers the agents of the chain propagate (TOOLMESH_PROPAGATE_HEADERS).
const env = { TOOLMESH_PROPAGATE_HEADERS: "x-tenant" };

const chains = [
  { title: "a Node agent calls a Python tool", front: node("front"), back: python("back") },
  { title: "a Python agent calls a Node tool", front: python("front"), back: node("back") },
];

for (const { title, front, back } of chains) {
  describe(title, { timeout: 120_000 }, () => {
    const chain = {};
    before(async () => {
      const dir = tempDir("cross");
      chain.certs = await certsInit(dir, ["front", "back"]);
      chain.mesh = new Mesh(chain.certs, dir);
      chain.registry = await chain.mesh.startRegistry();
      chain.back = await chain.mesh.startAgent(back, "back", chain.registry, { env });
      chain.front = await chain.mesh.startAgent(front, "front", chain.registry, { env });
      await chain.mesh.waitListed(chain.registry, ["front", "back"]);
    });
    after(() => chain.mesh?.close());

    it("answers the CLI through the chain", async () => {
      // front's topology may lag its listing by a heartbeat
      const sum = await waitUntil(async () => {
        const done = await chain.mesh.cli(["call", "sum3", '{"a": 1, "b": 2, "c": 3}'], chain.registry);
        assert.equal(done.code, 0, done.stderr);
        return JSON.parse(done.stdout) === 6;
      }, 15_000, "sum3 through the chain");
      assert.ok(sum);
      const who = await chain.mesh.cli(["call", "relay-who", "{}"], chain.registry);
      assert.equal(JSON.parse(who.stdout), "back", who.stderr);
    });

    it("carries allow-listed headers and one trace across the hops", async () => {
      const traceId = "0af7651916cd43dd8448eb211c80319c";
      const headers = { "X-Tenant": "acme", "X-Secret": "do-not-forward", traceparent: `00-${traceId}-b7ad6b7169203331-01` };
      const hops = await callTool(chain.front.endpoint, chain.certs, "hops", {}, headers);
      assert.deepEqual([hops.front.agent, hops.back.agent], ["front", "back"]);
      assert.deepEqual(hops.front.headers, { "x-tenant": "acme" });
      assert.deepEqual(hops.back.headers, { "x-tenant": "acme" });
      assert.deepEqual([hops.front.trace_id, hops.back.trace_id], [traceId, traceId]);
    });

    it("starts one trace when the caller sends none", async () => {
      const done = await chain.mesh.cli(["call", "hops", "--header", "X-Tenant=cli"], chain.registry);
      assert.equal(done.code, 0, done.stderr);
      const hops = JSON.parse(done.stdout);
      assert.deepEqual(hops.back.headers, { "x-tenant": "cli" });
      assert.match(hops.front.trace_id, /^[0-9a-f]{32}$/);
      assert.equal(hops.back.trace_id, hops.front.trace_id);
    });
  });
}
