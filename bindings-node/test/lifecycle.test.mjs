// Starting and stopping: a running agent keeps its process alive like a listening server, a
// stopped one lets it exit, and start-up errors read the same as in every language.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { TransportError } from "../dist/index.js";
import { callTool, HEARTBEAT_MS } from "../../tests/node/meshkit.mjs";
import { agent, meshFixture } from "./fixtures.mjs";

const fixture = meshFixture();
const program = fileURLToPath(new URL("programs/lifecycle.mjs", import.meta.url));

describe("lifecycle", { timeout: 90_000 }, () => {
  it("lets the process exit once the agent has stopped", async () => {
    const child = fixture.mesh.spawnAgent([process.execPath, program, "serve-then-stop"], "alpha", null);
    const { code } = await child.wait(20_000);
    assert.equal(code, 0, child.output());
    assert.match(child.output(), /sum3 6; stopped/);
  });

  it("lets the process exit once a registered, heartbeating agent has stopped", async () => {
    const { registry } = fixture;
    const child = fixture.mesh.spawnAgent([process.execPath, program, "serve-then-stop"], "alpha", registry);
    await child.waitForLine(/waiting for SIGUSR2/, 30_000);
    const [listed] = await fixture.mesh.waitListed(registry, ["alpha"]);
    // Heartbeats are running: five intervals after registering, alpha was seen within two.
    await sleep(5 * HEARTBEAT_MS);
    const [alpha] = await fixture.mesh.waitListed(registry, ["alpha"]);
    assert.equal(alpha.agent_id, listed.agent_id);
    assert.ok(alpha.last_seen_ms < 2 * HEARTBEAT_MS, `alpha was last seen ${alpha.last_seen_ms} ms ago`);
    child.child.kill("SIGUSR2");
    const { code } = await child.wait(20_000);
    assert.equal(code, 0, child.output());
    assert.match(child.output(), /sum3 6; stopped/);
    const after = await fixture.mesh.cli(["list", "--json"], registry);
    assert.deepEqual(JSON.parse(after.stdout).agents, [], "alpha did not deregister");
  });

  it("keeps the process alive while serving, and stops cleanly on SIGTERM", async () => {
    const child = await fixture.mesh.startAgent([process.execPath, program, "run"], "alpha", null);
    assert.equal(await callTool(child.endpoint, fixture.certs, "sum3", { a: 2, b: 3, c: 4 }), 9);
    await sleep(1000);
    assert.ok(child.process.running(), "the serving process exited by itself");
    const { code } = await child.process.stop("SIGTERM", 15_000);
    assert.equal(code, 0, child.process.output());
  });

  it("prints a start-up error with its code and exits with status 2", async () => {
    const env = { TOOLMESH_REGISTRY_URL: "http://127.0.0.1:1" };
    const child = fixture.mesh.spawnAgent([process.execPath, program, "run"], "alpha", null, { env });
    const { code } = await child.wait(20_000);
    assert.equal(code, 2);
    assert.match(child.output(), /^toolmesh: error \[1004 REGISTRY_URL_NOT_HTTPS\]: environment variable TOOLMESH_REGISTRY_URL: /m);
  });

  it("stops idempotently, refuses later dependency calls, and starts again", async () => {
    const alpha = agent(fixture, "alpha");
    let savedProxy;
    alpha.addTool({ name: "one", execute: () => 1 });
    alpha.addTool({ name: "keep_proxy", dependencies: ["one"], execute: (_, { one }) => { savedProxy = one; } });
    await alpha.stop(); // never started: nothing to do
    await alpha.start();
    await assert.rejects(alpha.start(), /already started/);
    assert.throws(() => alpha.addTool({ name: "two", execute: () => 2 }), /add its tools before start/);
    assert.equal(await callTool(alpha.endpoint, fixture.certs, "keep_proxy", {}), null);
    await Promise.all([alpha.stop(), alpha.stop()]);
    await alpha.stop();
    assert.throws(() => alpha.endpoint, /is not running/);
    await assert.rejects(savedProxy(), (error) => error instanceof TransportError && error.kind === "SHUTDOWN");
    await alpha.start();
    try {
      assert.equal(await callTool(alpha.endpoint, fixture.certs, "one", {}), 1);
    } finally {
      await alpha.stop();
    }
  });
});
