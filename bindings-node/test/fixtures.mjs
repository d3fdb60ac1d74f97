// Fixtures of the binding's suite: one set of certificates and one registry process per test
// file, and in-process agents that use them.

import { after, before } from "node:test";
import { Agent } from "../dist/index.js";
import { certsInit, HEARTBEAT_MS, Mesh, tempDir, waitUntil } from "../../tests/node/meshkit.mjs";

export const IDENTITIES = ["alpha", "beta", "gamma"];

/** Certificates and a registry for the test file; killed after it. */
export function meshFixture({ registry = true } = {}) {
  const fixture = {};
  before(async () => {
    const dir = tempDir("node-binding");
    fixture.certs = await certsInit(dir, IDENTITIES);
    fixture.mesh = new Mesh(fixture.certs, dir);
    if (registry) fixture.registry = await fixture.mesh.startRegistry();
  });
  after(() => fixture.mesh?.close());
  return fixture;
}

/** An agent with identity `name` in the fixture's mesh. */
export function agent(fixture, name, options = {}) {
  return new Agent({
    name,
    heartbeatIntervalMs: HEARTBEAT_MS,
    ...fixture.certs.options(name),
    ...(fixture.registry ? { registryUrl: fixture.registry.url } : {}),
    ...options,
  });
}

/** Retries `attempt` until the registry has told the caller about its providers. */
export function eventually(attempt, timeoutMs = 15_000) {
  return waitUntil(() => attempt(), timeoutMs, "the call to succeed");
}

/** Starts `agents`, runs `scenario`, and stops them whatever happens. */
export async function serving(agents, scenario) {
  try {
    for (const each of agents) await each.start();
    return await scenario();
  } finally {
    await Promise.all(agents.map((each) => each.stop()));
  }
}
