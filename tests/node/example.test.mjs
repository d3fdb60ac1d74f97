// The README's Node example, run as a user runs it: examples/node/calc.mjs imports "toolmesh"
// through examples/node's own node_modules (linked by scripts/node-env.sh), registers with a
// real registry, answers `toolmesh call sum3` through its dependency on add, and exits 0 on SIGTERM.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { certsInit, Mesh, ROOT, tempDir, waitUntil } from "./meshkit.mjs";

const EXAMPLE = join(ROOT, "examples", "node");

describe("examples/node/calc.mjs", { timeout: 120_000 }, () => {
  const example = {};
  before(async () => {
    assert.ok(existsSync(join(EXAMPLE, "node_modules", "toolmesh")), "examples/node is not linked to the package: run scripts/node-env.sh");
    const dir = tempDir("node-example");
    example.certs = await certsInit(dir, ["calc"]);
    example.mesh = new Mesh(example.certs, dir);
    example.registry = await example.mesh.startRegistry();
  });
  after(() => example.mesh?.close());

  it("answers sum3 through the registry, and stops cleanly on SIGTERM", async () => {
    const { mesh, registry } = example;
    const calc = await mesh.startAgent([process.execPath, join(EXAMPLE, "calc.mjs")], "calc", registry);
    assert.equal(calc.name, "calc");
    await mesh.waitListed(registry, ["calc"]);
    const done = await waitUntil(async () => {
      const call = await mesh.cli(["call", "sum3", '{"a":1,"b":2,"c":3}'], registry);
      assert.equal(call.code, 0, call.stderr);
      return call;
    }, 15_000, "toolmesh call sum3");
    assert.equal(JSON.parse(done.stdout), 6);
    const { code, signal } = await calc.process.stop("SIGTERM", 15_000);
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, calc.process.output());
  });
});
