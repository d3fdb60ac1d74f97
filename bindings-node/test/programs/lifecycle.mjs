// A Node process with one agent, for the lifecycle tests: `serve-then-stop` serves one call
// (through a dependency on itself), then, with a registry, waits for SIGUSR2 (heartbeating
// meanwhile), and stops, after which the process must exit by itself; `run` serves until
// signalled. Identity and options come from the TOOLMESH_* environment.

import { Agent } from "../../dist/index.js";
import { callTool, Certs } from "../../../tests/node/meshkit.mjs";
import { dirname } from "node:path";

const agent = new Agent({ name: process.env.TOOLMESH_TEST_AGENT_NAME ?? "alpha" });
agent.addTool({ name: "add", execute: ({ a, b }) => a + b });
agent.addTool({ name: "sum3", dependencies: ["add"], execute: async ({ a, b, c }, { add }) => add({ a: await add({ a, b }), b: c }) });

if (process.argv[2] === "run") {
  await agent.run();
} else {
  await agent.start();
  const sum = await callTool(agent.endpoint, new Certs(dirname(process.env.TOOLMESH_TLS_CA)), "sum3", { a: 1, b: 2, c: 3 });
  if (process.env.TOOLMESH_REGISTRY_URL) {
    // A signal listener does not keep the process alive; the running agent does.
    const stop = new Promise((resolve) => process.once("SIGUSR2", resolve));
    console.log(`sum3 ${sum}; waiting for SIGUSR2`);
    await stop;
  }
  await agent.stop();
  console.log(`sum3 ${sum}; stopped`);
}
