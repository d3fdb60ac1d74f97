// @ts-check
// A calculator agent: `add`, and `sum3`, which calls `add` through the mesh.
//
//   toolmesh certs init --dir certs --agents calc,stats
//   toolmesh registry --tls-cert certs/registry.pem --tls-key certs/registry.key --tls-ca certs/ca.pem &
//   npm install            # in examples/node: links and builds the toolmesh package
//   TOOLMESH_REGISTRY_URL=https://127.0.0.1:8443 TOOLMESH_TLS_CERT=certs/calc.pem \
//   TOOLMESH_TLS_KEY=certs/calc.key TOOLMESH_TLS_CA=certs/ca.pem node examples/node/calc.mjs
//   toolmesh call sum3 '{"a": 1, "b": 2, "c": 3}'     # with the operator certificate: 6

import { Agent } from "toolmesh";

const agent = new Agent({ name: "calc" }); // the TOOLMESH_* environment configures it
agent.addTool({
  name: "add",
  capability: "add",
  version: "1.0.0",
  tags: ["math"],
  inputSchema: { type: "object", properties: { a: { type: "number" }, b: { type: "number" } }, required: ["a", "b"] },
  execute: async ({ a, b }) => a + b,
});
agent.addTool({
  name: "sum3",
  capability: "sum3",
  dependencies: ["add"],
  execute: async ({ a, b, c }, { add }) => add({ a: await add({ a, b }), b: c }),
});

// start(), then serve until Ctrl-C or SIGTERM and stop cleanly (deregistering first).
await agent.run();
