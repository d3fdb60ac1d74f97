// The Node hop of the install test (scripts/install-test.sh): agent install-node serving
// node_step(n) = java_step(n) * 2, where java_step is the Java agent's tool. Plain ESM, run
// from a fresh npm project that installed the toolmesh tarballs from dist/npm.
import { Agent } from "toolmesh";

const agent = new Agent({ name: "install-node" }); // the TOOLMESH_* environment configures it
agent.addTool({
  name: "node_step",
  capability: "node_step",
  dependencies: ["java_step"],
  inputSchema: { type: "object", properties: { n: { type: "integer" } }, required: ["n"] },
  execute: async ({ n }, { java_step }) => (await java_step({ n })) * 2,
});
await agent.run();
