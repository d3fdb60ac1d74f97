// The same failure gives the same error code and message in Node as in Python: both languages
// run the same agent (agents/parity.mjs, agents/parity.py), and what they report is compared.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { callError, callTool, certsInit, mcpPost, Mesh, ROOT, tempDir, venvPython } from "./meshkit.mjs";

const programs = {
  node: [process.execPath, `${ROOT}/tests/node/agents/parity.mjs`],
  python: [venvPython(), `${ROOT}/tests/node/agents/parity.py`],
};

describe("the same failure in Node and in Python", { timeout: 120_000 }, () => {
  const mesh = {};
  before(async () => {
    const dir = tempDir("parity");
    // Each agent holds a certificate of its own name: the registry takes the name from it.
    mesh.certs = await certsInit(dir, ["parity", "other", ...Object.keys(programs).map((language) => `parity-${language}`)]);
    mesh.foreign = await certsInit(`${dir}/foreign`, ["parity"]);
    mesh.mesh = new Mesh(mesh.certs, dir);
    mesh.registry = await mesh.mesh.startRegistry();
    mesh.agents = {};
    for (const [language, argv] of Object.entries(programs)) {
      mesh.agents[language] = await mesh.mesh.startAgent(argv, `parity-${language}`, mesh.registry);
    }
  });
  after(() => mesh.mesh?.close());

  /** What each language's agent answers; asserts the answers are equal and returns one. */
  async function same(ask) {
    const node = await ask(mesh.agents.node);
    const python = await ask(mesh.agents.python);
    assert.deepEqual(node, python);
    return node;
  }

  it("an unknown tool", async () => {
    const call = { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "no_such_tool", arguments: {} } };
    const answer = await same(async (agent) => (await mcpPost(agent.endpoint, mesh.certs, structuredClone(call))).body);
    assert.deepEqual(answer.error.data, { code: 5002, name: "UNKNOWN_TOOL", message: "Unknown tool: no_such_tool" });
  });

  it("an unresolved dependency, caught by the handler", async () => {
    const caught = await same((agent) => callTool(agent.endpoint, mesh.certs, "caught_unresolved", {}));
    assert.deepEqual([caught.class, caught.code, caught.kind], ["DiscoveryError", 3001, "DEPENDENCY_UNRESOLVED"]);
    assert.match(caught.message, /nobody-provides-this/);
    assert.equal(caught.string, `[3001 DEPENDENCY_UNRESOLVED] ${caught.message}`);
  });

  it("an unresolved dependency, reported to the caller", async () => {
    const error = await same((agent) => callError(agent.endpoint, mesh.certs, "unresolved", {}));
    assert.deepEqual([error.code, error.name], [3001, "DEPENDENCY_UNRESOLVED"]);
  });

  /** Starts each language's agent with `options`; both must fail to start the same way. */
  async function sameStartupFailure(identity, env) {
    return same(async (agent) => {
      const language = agent.name.replace("parity-", "");
      const child = mesh.mesh.spawnAgent(programs[language], `failing-${language}`, mesh.registry, { identity, env });
      const { code } = await child.wait(30_000);
      const line = child.output().match(/^toolmesh: error .*$/m)?.[0];
      return { code, line };
    });
  }

  it("a certificate that the mesh CA did not sign", async () => {
    const env = { TOOLMESH_TLS_CERT: mesh.foreign.pem("parity"), TOOLMESH_TLS_KEY: mesh.foreign.key("parity") };
    const failure = await sameStartupFailure("parity", env);
    assert.equal(failure.code, 2);
    assert.match(failure.line, /^toolmesh: error \[2001 CERTIFICATE_UNTRUSTED\]: the certificate '.*parity\.pem' is not signed by the CA/);
  });

  it("a key that does not belong to the certificate", async () => {
    const failure = await sameStartupFailure("parity", { TOOLMESH_TLS_KEY: mesh.certs.key("other") });
    assert.equal(failure.code, 2);
    assert.match(failure.line, /^toolmesh: error \[1003 KEY_MISMATCH\]/);
  });

  it("a malformed option", async () => {
    const failure = await sameStartupFailure("parity", { TOOLMESH_PORT: "http" });
    assert.equal(failure.code, 2);
    assert.match(failure.line, /^toolmesh: error \[1001 INVALID_CONFIG\]: environment variable TOOLMESH_PORT: port 'http'/);
  });
});
