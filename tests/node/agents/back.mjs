// Test agent, the Node twin of tests/python/agents/back.py: provides `add`, `probe` (what a
// handler sees) and `who` (which agent answered). Named by TOOLMESH_TEST_AGENT_NAME; everything
// else comes from the TOOLMESH_* environment.

import { Agent, headers, traceId } from "../../../bindings-node/dist/index.js";

const NAME = process.env.TOOLMESH_TEST_AGENT_NAME;
const integers = (...names) => ({
  type: "object",
  properties: Object.fromEntries(names.map((name) => [name, { type: "integer" }])),
  required: names,
});

const agent = new Agent({ name: NAME });
agent.addTool({ name: "add", capability: "add", tags: ["math"], inputSchema: integers("a", "b"), execute: async ({ a, b }) => a + b });
agent.addTool({ name: "probe", capability: "probe", execute: async () => ({ agent: NAME, headers: headers(), trace_id: traceId() }) });
agent.addTool({ name: "who", capability: "who", execute: () => NAME });
await agent.run();
