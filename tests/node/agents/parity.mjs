// Test agent of the parity checks, the Node twin of parity.py: the same tools failing the same
// way, so that what each language reports can be compared.

import { Agent } from "../../../bindings-node/dist/index.js";

const report = (error) => ({ class: error.constructor.name, code: error.code, kind: error.kind, message: error.message, string: String(error) });

const agent = new Agent({ name: process.env.TOOLMESH_TEST_AGENT_NAME });
agent.addTool({
  name: "caught_unresolved",
  dependencies: ["nobody-provides-this"],
  execute: async (_, { "nobody-provides-this": missing }) => {
    try {
      await missing();
    } catch (error) {
      return report(error);
    }
    throw new Error("the unresolved dependency did not fail");
  },
});
agent.addTool({ name: "unresolved", dependencies: ["nobody-provides-this"], execute: (_, deps) => deps[0]() });
await agent.run();
