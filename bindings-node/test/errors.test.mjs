// The error classes, and configuration and start-up errors that come from core unchanged.

import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import * as toolmesh from "../dist/index.js";
import { fromNative } from "../dist/errors.js";
import { certsInit } from "../../tests/node/meshkit.mjs";
import { meshFixture } from "./fixtures.mjs";

const { Agent, ConfigError, TlsError, ToolmeshError } = toolmesh;
const fixture = meshFixture({ registry: false });

/** Starts an agent with one tool; resolves with what start() rejected with. */
async function startError(name, options = {}) {
  const agent = new Agent({ name, ...options });
  agent.addTool({ name: "one", execute: () => 1 });
  try {
    await agent.start();
  } catch (error) {
    return error;
  } finally {
    await agent.stop();
  }
  assert.fail("the agent started");
}

describe("errors", { timeout: 60_000 }, () => {
  it("map each code to its group's class", () => {
    const cases = [
      [1004, "REGISTRY_URL_NOT_HTTPS", "ConfigError"],
      [2002, "CERTIFICATE_EXPIRED", "TlsError"],
      [3001, "DEPENDENCY_UNRESOLVED", "DiscoveryError"],
      [4001, "CONNECT_FAILED", "TransportError"],
      [4002, "TIMEOUT", "TimeoutError"],
      [5001, "TOOL_FAILED", "RemoteToolError"],
      [6001, "HANDLER_FAILED", "HandlerError"],
      [7001, "CALL_DENIED", "AuthorizationError"],
      [7002, "RATE_LIMITED", "RateLimitedError"],
      [7003, "ORIGIN_REJECTED", "AuthorizationError"],
      [7004, "REGISTRATION_REFUSED", "AuthorizationError"],
      [9001, "INTERNAL", "ToolmeshError"],
    ];
    for (const [code, kind, className] of cases) {
      const native = Object.assign(new Error("what happened"), { code, kind });
      const error = fromNative(native);
      assert.equal(error.constructor, toolmesh[className]);
      assert.ok(error instanceof ToolmeshError && error instanceof Error);
      assert.deepEqual([error.code, error.kind, error.message, error.name], [code, kind, "what happened", className]);
      assert.equal(String(error), `[${code} ${kind}] what happened`);
    }
    assert.ok(fromNative(Object.assign(new Error("x"), { code: 4002, kind: "TIMEOUT" })) instanceof toolmesh.TransportError);
    assert.ok(fromNative(Object.assign(new Error("x"), { code: 7002, kind: "RATE_LIMITED" })) instanceof toolmesh.AuthorizationError);
    const refused = fromNative(Object.assign(new Error("no such sku: X"), { code: 5005, kind: "TOOL_ERROR", appCode: "unknown_sku", dataJson: '{"sku":"X"}' }));
    assert.ok(refused instanceof toolmesh.ToolError && refused instanceof toolmesh.RemoteToolError);
    assert.deepEqual([refused.code, refused.kind, refused.appCode, refused.message, refused.data, refused.name], [5005, "TOOL_ERROR", "unknown_sku", "no such sku: X", { sku: "X" }, "ToolError"]);
    assert.equal(String(refused), "[5005 TOOL_ERROR unknown_sku] no such sku: X");
    const thrown = new toolmesh.ToolError("out_of_stock", "none left");
    assert.deepEqual([thrown.code, thrown.appCode, thrown.data], [5005, "out_of_stock", undefined]);
    const plain = new TypeError("not ours");
    assert.equal(fromNative(plain), plain);
  });

  it("reports bad options as ConfigErrors from core", async () => {
    let error = await startError("errors", { registryUrl: "http://127.0.0.1:1" });
    assert.ok(error instanceof ConfigError);
    assert.deepEqual([error.code, error.kind], [1004, "REGISTRY_URL_NOT_HTTPS"]);

    error = await startError("errors", { colour: "blue" });
    assert.ok(error instanceof ConfigError);
    assert.match(String(error), /^\[1001 INVALID_CONFIG\] unknown option 'colour'/);

    error = await startError("errors", { port: "http" });
    assert.match(error.message, /port 'http' is not a number/);
  });

  it("reads the TOOLMESH_* environment through core", async () => {
    process.env.TOOLMESH_CALL_TIMEOUT_MS = "soon";
    try {
      const error = await startError("errors");
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /environment variable TOOLMESH_CALL_TIMEOUT_MS/);
    } finally {
      delete process.env.TOOLMESH_CALL_TIMEOUT_MS;
    }
  });

  it("says how to create a missing identity, and rejects unreadable ones", async () => {
    let error = await startError("lonely");
    assert.equal(error.kind, "CERTIFICATE_FILE");
    assert.match(error.message, /TOOLMESH_TLS_CERT/);
    assert.match(error.message, /toolmesh certs init/);

    const missing = join(fixture.certs.dir, "none");
    error = await startError("lonely", { tlsCert: `${missing}.pem`, tlsKey: `${missing}.key`, tlsCa: fixture.certs.ca });
    assert.ok(error instanceof ConfigError);
    assert.equal(error.kind, "CERTIFICATE_FILE");
  });

  it("rejects start() with core's TLS errors", async () => {
    const foreign = await certsInit(join(fixture.certs.dir, "foreign"), ["alpha"]);
    let error = await startError("alpha", { ...foreign.options("alpha"), tlsCa: fixture.certs.ca });
    assert.ok(error instanceof TlsError);
    assert.deepEqual([error.code, error.kind], [2001, "CERTIFICATE_UNTRUSTED"]);
    assert.match(error.message, /is not signed by the CA/);

    error = await startError("alpha", { ...fixture.certs.options("alpha"), tlsKey: fixture.certs.key("beta") });
    assert.deepEqual([error.code, error.kind], [1003, "KEY_MISMATCH"]);
  });

  it("lets core refuse invalid tools", async () => {
    const agent = new Agent({ name: "errors" });
    agent.addTool({ name: "no spaces", execute: () => 1 });
    await assert.rejects(agent.start(), (error) => error instanceof ConfigError && /tool name 'no spaces' is not valid/.test(error.message));

    const twice = new Agent({ name: "errors" });
    twice.addTool({ name: "same", execute: () => 1 }).addTool({ name: "same", execute: () => 2 });
    await assert.rejects(twice.start(), /two tools are named 'same'/);

    assert.throws(() => new Agent({ name: "errors" }).addTool({ name: "no_handler" }), TypeError);
  });
});
