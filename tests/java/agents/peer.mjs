// Peer agent of the Java end-to-end suite, in Node: the twin of peer.py, tool for tool.
// Named by TOOLMESH_TEST_AGENT_NAME; everything else comes from the TOOLMESH_* environment.

import { Agent, headers, traceId } from "../../../bindings-node/dist/index.js";

const NAME = process.env.TOOLMESH_TEST_AGENT_NAME;
const integers = (...names) => ({
  type: "object",
  properties: Object.fromEntries(names.map((name) => [name, { type: "integer" }])),
  required: names,
});
const here = () => ({ agent: NAME, headers: headers(), trace_id: traceId() });
const report = (error) => ({ code: error.code, name: error.kind, message: error.message });

/** Calls `dependency` expecting it to fail; answers what the mesh reported. */
const failureOf = async (dependency, args) => {
  try {
    await dependency(args);
  } catch (error) {
    return report(error);
  }
  throw new Error("the call did not fail");
};

const agent = new Agent({ name: NAME });
// Named `add` like the Java agent's: the same bad call then gets the same message from both.
agent.addTool({ name: "add", capability: "peer-add", inputSchema: integers("a", "b"), execute: async ({ a, b }) => a + b });
agent.addTool({ name: "probe", capability: "peer-probe", execute: async () => here() });
agent.addTool({
  name: "fail",
  capability: "peer-fail",
  execute: async () => {
    throw new Error("boom");
  },
});
agent.addTool({
  name: "sum3",
  capability: "peer-sum3",
  dependencies: ["j-add"],
  inputSchema: integers("a", "b", "c"),
  execute: async ({ a, b, c }, { "j-add": add }) => add({ a: await add({ a, b }), b: c }),
});
agent.addTool({
  name: "hops",
  capability: "peer-hops",
  dependencies: ["j-probe"],
  execute: async (_, { "j-probe": probe }) => ({ peer: here(), java: await probe() }),
});
agent.addTool({
  name: "missing",
  capability: "peer-missing",
  dependencies: ["nobody-provides-this"],
  execute: (_, { "nobody-provides-this": missing }) => failureOf(missing),
});
agent.addTool({
  name: "bad_add",
  capability: "peer-bad-add",
  dependencies: ["j-add"],
  execute: (_, { "j-add": add }) => failureOf(add, { a: "x", b: 1 }),
});
agent.addTool({
  name: "call_fail",
  capability: "peer-call-fail",
  dependencies: ["j-fail"],
  execute: (_, { "j-fail": fail }) => failureOf(fail),
});
await agent.run();
