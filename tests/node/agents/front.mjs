// Test agent, the Node twin of tests/python/agents/front.py: calls its dependencies (`add`,
// `probe`, `who`) through the proxies handed to its tools.

import { Agent, headers, traceId } from "../../../bindings-node/dist/index.js";

const NAME = process.env.TOOLMESH_TEST_AGENT_NAME;

const agent = new Agent({ name: NAME });
agent.addTool({
  name: "sum3",
  capability: "sum3",
  dependencies: ["add"],
  inputSchema: { type: "object", properties: { a: { type: "integer" }, b: { type: "integer" }, c: { type: "integer" } }, required: ["a", "b", "c"] },
  execute: async ({ a, b, c }, { add }) => add({ a: await add({ a, b }), b: c }),
});
agent.addTool({
  name: "hops",
  capability: "hops",
  dependencies: ["probe"],
  execute: async (_, { probe }) => ({ front: { agent: NAME, headers: headers(), trace_id: traceId() }, back: await probe() }),
});
agent.addTool({ name: "relay_who", capability: "relay-who", dependencies: ["who"], execute: (_, { who }) => who() });
await agent.run();
