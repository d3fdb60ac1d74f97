// Agents in this process, serving and calling each other through a real registry over mTLS.

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { currentContext, DiscoveryError, headers, RemoteToolError, TimeoutError, ToolError, traceId } from "../dist/index.js";
import { callError, callTool } from "../../tests/node/meshkit.mjs";
import { agent, eventually, meshFixture, serving } from "./fixtures.mjs";

const fixture = meshFixture();
const numbers = { type: "object", properties: { a: { type: "number" }, b: { type: "number" } }, required: ["a", "b"] };

describe("agents through the registry", { timeout: 120_000 }, () => {
  it("call each other with sync and async handlers, by capability and by position", async () => {
    const beta = agent(fixture, "beta");
    const alpha = agent(fixture, "alpha");
    beta.addTool({ name: "add", capability: "add", inputSchema: numbers, execute: async ({ a, b }) => a + b });
    beta.addTool({ name: "mul", capability: "mul", inputSchema: numbers, execute: ({ a, b }) => a * b });
    alpha.addTool({
      name: "calc",
      inputSchema: numbers,
      dependencies: ["add", "mul"],
      execute: async ({ a, b }, deps) => ({ sum: await deps.add({ a, b }), product: await deps[1]({ a, b }) }),
    });
    beta.addTool({
      name: "calc_twice",
      dependencies: ["calc"],
      execute: async ({ x }, { calc }) => {
        const first = await calc({ a: x, b: x });
        return (await calc({ a: first.sum, b: first.product })).sum;
      },
    });
    await serving([beta, alpha], async () => {
      assert.match(alpha.endpoint, /^https:\/\/127\.0\.0\.1:\d+\/mcp$/);
      assert.match(alpha.agentId, /^alpha-/);
      const calc = await eventually(() => callTool(alpha.endpoint, fixture.certs, "calc", { a: 3, b: 4 }));
      assert.deepEqual(calc, { sum: 7, product: 12 });
      // beta -> alpha -> beta: 3+3=6, 3*3=9, then 6+9
      assert.equal(await eventually(() => callTool(beta.endpoint, fixture.certs, "calc_twice", { x: 3 })), 15);
    });
  });

  it("keeps error codes across agents", async () => {
    const beta = agent(fixture, "beta");
    const alpha = agent(fixture, "alpha");
    beta.addTool({ name: "explode", execute: () => { throw new Error("boom"); } });
    beta.addTool({ name: "slow", execute: async ({ ms }) => { await sleep(ms); return ms; } });
    const report = (error) => ({ class: error.constructor.name, code: error.code, kind: error.kind, message: error.message, string: String(error) });
    alpha.addTool({
      name: "catch_failure",
      dependencies: ["explode"],
      execute: async (_, { explode }) => {
        const error = await explode().then(() => assert.fail("the remote failure was not raised"), (e) => e);
        assert.ok(error instanceof RemoteToolError);
        return report(error);
      },
    });
    alpha.addTool({
      name: "catch_timeout",
      dependencies: ["slow"],
      timeoutMs: 200,
      execute: async (_, { slow }) => report(await slow({ ms: 2000 }).then(() => assert.fail("no timeout"), (e) => e)),
    });
    alpha.addTool({ name: "unresolved", dependencies: ["nobody-provides-this"], execute: (_, deps) => deps[0]() });
    alpha.addTool({ name: "not_json", execute: () => 10n });
    alpha.addTool({ name: "rejects_a_string", execute: () => Promise.reject("plain text") });
    await serving([beta, alpha], async () => {
      const failure = await eventually(() => callTool(alpha.endpoint, fixture.certs, "catch_failure", {}));
      assert.equal(failure.class, "RemoteToolError");
      assert.deepEqual([failure.code, failure.kind], [5001, "TOOL_FAILED"]);
      // The error's own message; its name is logged by beta, not sent.
      assert.equal(failure.message, "tool 'explode' failed: boom");
      assert.equal(failure.string, `[5001 TOOL_FAILED] ${failure.message}`);

      const timeout = await eventually(() => callTool(alpha.endpoint, fixture.certs, "catch_timeout", {}));
      assert.deepEqual([timeout.class, timeout.code, timeout.kind], ["TimeoutError", 4002, "TIMEOUT"]);

      // Not caught by the handler: the caller sees the mesh error, not a handler failure.
      let error = await callError(alpha.endpoint, fixture.certs, "unresolved", {});
      assert.deepEqual([error.code, error.name], [3001, "DEPENDENCY_UNRESOLVED"]);
      assert.match(error.message, /nobody-provides-this/);

      error = await callError(alpha.endpoint, fixture.certs, "not_json", {});
      assert.deepEqual([error.code, error.name], [6002, "HANDLER_RESULT"]);
      assert.equal(error.message, "tool 'not_json' returned a value that is not JSON; the agent serving it logs why");

      error = await callError(alpha.endpoint, fixture.certs, "rejects_a_string", {});
      assert.deepEqual([error.code, error.message], [6001, "tool 'rejects_a_string' failed: plain text"]);
    });
  });

  it("carries a tool error's code, message and data to callers, intact through a handler that rethrows it", async () => {
    const beta = agent(fixture, "beta");
    const alpha = agent(fixture, "alpha");
    beta.addTool({
      name: "lookup",
      execute: ({ sku }) => {
        throw new ToolError("unknown_sku", `no such sku: ${sku}`, { data: { sku, near: ["X1"] } });
      },
    });
    beta.addTool({ name: "bad_data", execute: () => { throw new ToolError("unknown_sku", "m", { data: 10n }); } });
    alpha.addTool({
      name: "catch_lookup",
      dependencies: ["lookup"],
      execute: async (_, { lookup }) => {
        const error = await lookup({ sku: "X" }).then(() => assert.fail("the tool error was not raised"), (e) => e);
        // Before the registry has told alpha about beta, the call fails as a mesh error: passed
        // on (unlogged) for `eventually` to retry; only a ToolError (a RemoteToolError) answers.
        if (!(error instanceof ToolError)) throw error;
        return { code: error.code, kind: error.kind, appCode: error.appCode, message: error.message, data: error.data, string: String(error) };
      },
    });
    alpha.addTool({ name: "rethrow", dependencies: ["lookup"], execute: (_, { lookup }) => lookup({ sku: "Y" }) });
    const logged = [];
    const originalWarn = console.warn;
    console.warn = (...args) => logged.push(args);
    try {
      await serving([beta, alpha], async () => {
        const caught = await eventually(() => callTool(alpha.endpoint, fixture.certs, "catch_lookup", {}));
        assert.deepEqual(caught, {
          code: 5005, kind: "TOOL_ERROR", appCode: "unknown_sku", message: "no such sku: X",
          data: { sku: "X", near: ["X1"] }, string: "[5005 TOOL_ERROR unknown_sku] no such sku: X",
        });
        const error = await callError(alpha.endpoint, fixture.certs, "rethrow", {});
        assert.deepEqual(error, { code: 5005, name: "TOOL_ERROR", message: "no such sku: Y", appCode: "unknown_sku", data: { sku: "Y", near: ["X1"] } });
        const bad = await callError(beta.endpoint, fixture.certs, "bad_data", {});
        assert.deepEqual([bad.code, bad.message], [6001, "tool 'bad_data' failed: it raised a tool error (\"unknown_sku\") whose data is not JSON; the agent serving it logs why"]);
      });
    } finally {
      console.warn = originalWarn;
    }
    assert.deepEqual(logged.filter((args) => args.some((a) => a instanceof Error)), [], "an expected tool error logged a stack");
  });

  it("answers whatever a handler throws as a tool failure", async () => {
    const alpha = agent(fixture, "alpha");
    const unreadable = new Error("unreadable");
    Object.defineProperty(unreadable, "message", { get() { throw new Error("no message for you"); } });
    const revoked = Proxy.revocable({}, {});
    revoked.revoke();
    const throwing = {
      no_prototype: () => { throw Object.create(null); },
      number_message: () => { throw Object.assign(new Error(), { message: 42 }); },
      unreadable_message: () => { throw unreadable; },
      revoked_proxy: () => Promise.reject(revoked.proxy),
    };
    for (const [name, execute] of Object.entries(throwing)) alpha.addTool({ name, execute });
    await serving([alpha], async () => {
      const answers = {};
      for (const name of Object.keys(throwing)) {
        const { code, message } = await callError(alpha.endpoint, fixture.certs, name, {}, { timeoutMs: 5_000 });
        answers[name] = [code, message];
      }
      assert.deepEqual(answers, {
        no_prototype: [6001, "tool 'no_prototype' failed: [object Object]"],
        number_message: [6001, "tool 'number_message' failed: 42"],
        unreadable_message: [6001, "tool 'unreadable_message' failed: [object Error]"],
        // `instanceof` itself throws here, in the agent's own code: answered by its last resort.
        revoked_proxy: [6001, "tool 'revoked_proxy' failed: Cannot perform 'getPrototypeOf' on a proxy that has been revoked"],
      });
    });
  });

  it("gives handlers their request context, across awaits and timers", async () => {
    const beta = agent(fixture, "beta", { propagateHeaders: "x-tenant" });
    const alpha = agent(fixture, "alpha", { propagateHeaders: ["x-tenant", "x-audit-*"] });
    const seen = () => {
      const context = currentContext();
      assert.ok(context);
      assert.equal(context.traceparent, `00-${context.traceId}-${context.spanId}-01`);
      return { headers: headers(), traceId: traceId(), spanId: context.spanId };
    };
    beta.addTool({ name: "inspect", capability: "inspect", execute: async () => { await sleep(5); return seen(); } });
    beta.addTool({ name: "inspect_sync", capability: "inspect-sync", execute: () => seen() });
    alpha.addTool({
      name: "hop",
      dependencies: ["inspect", "inspect-sync"],
      execute: async (_, deps) => {
        const here = seen();
        const later = await new Promise((done) => setTimeout(() => done(seen()), 5));
        return { alpha: here, later, beta: await deps.inspect(), betaSync: await deps["inspect-sync"]() };
      },
    });
    const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const sent = { "X-Tenant": "t-42", "X-Audit-User": "ann", "X-Secret": "s3", traceparent };
    assert.deepEqual([headers(), traceId(), currentContext()], [{}, undefined, undefined]);
    // The agents' options override the environment: X-Secret is sent but never propagated.
    process.env.TOOLMESH_PROPAGATE_HEADERS = "x-secret";
    try {
      await serving([beta, alpha], async () => {
        const hops = await eventually(() => callTool(alpha.endpoint, fixture.certs, "hop", {}, sent));
        assert.deepEqual(hops.alpha.headers, { "x-tenant": "t-42", "x-audit-user": "ann" });
        assert.deepEqual(hops.later, hops.alpha);
        // beta's own allow-list drops x-audit-user: core filters on every hop
        assert.deepEqual(hops.beta.headers, { "x-tenant": "t-42" });
        assert.deepEqual(hops.betaSync.headers, { "x-tenant": "t-42" });
        const hopsSeen = [hops.alpha, hops.beta, hops.betaSync];
        assert.deepEqual(new Set(hopsSeen.map((h) => h.traceId)), new Set(["4bf92f3577b34da6a3ce929d0e0e4736"]));
        assert.equal(new Set(hopsSeen.map((h) => h.spanId)).size, 3);
      });
    } finally {
      delete process.env.TOOLMESH_PROPAGATE_HEADERS;
    }
  });

  it("keeps the event loop free while a call is in flight", async () => {
    const beta = agent(fixture, "beta");
    const alpha = agent(fixture, "alpha");
    // A blocking handler in another agent would stall this process too, so beta waits with a timer.
    beta.addTool({ name: "nap", execute: async ({ ms }) => { await sleep(ms); return ms; } });
    alpha.addTool({ name: "wait_for_nap", dependencies: ["nap"], execute: (args, { nap }) => nap(args) });
    await serving([beta, alpha], async () => {
      await eventually(() => callTool(alpha.endpoint, fixture.certs, "wait_for_nap", { ms: 1 }));
      let ticks = 0;
      const ticker = setInterval(() => ticks++, 10);
      try {
        const started = Date.now();
        assert.equal(await callTool(alpha.endpoint, fixture.certs, "wait_for_nap", { ms: 500 }), 500);
        assert.ok(Date.now() - started >= 500);
      } finally {
        clearInterval(ticker);
      }
      assert.ok(ticks >= 25, `the event loop ticked only ${ticks} times in 500 ms`);
    });
  });

  it("runs on core's one tokio runtime: napi-rs starts none of its own", async () => {
    const alpha = agent(fixture, "alpha");
    alpha.addTool({ name: "one", execute: () => 1 });
    alpha.addTool({ name: "via_one", dependencies: ["one"], execute: (_, { one }) => one() });
    await serving([alpha], () => eventually(() => callTool(alpha.endpoint, fixture.certs, "via_one", {})));
    const threads = readdirSync("/proc/self/task").map((task) => readFileSync(`/proc/self/task/${task}/comm`, "utf8").trim());
    assert.ok(threads.includes("toolmesh-worker"), threads.join(", "));
    assert.ok(!threads.some((name) => name.startsWith("tokio-")), threads.join(", "));
  });

  it("rejects dependency calls with a DiscoveryError when nothing provides them", async () => {
    const alpha = agent(fixture, "alpha");
    let caught;
    alpha.addTool({
      name: "lonely",
      dependencies: [{ capability: "ghost", tags: ["+fast"], version: ">=2" }],
      execute: async (_, { ghost }) => { caught = await ghost({}).catch((e) => e); return "done"; },
    });
    await serving([alpha], async () => {
      assert.equal(await callTool(alpha.endpoint, fixture.certs, "lonely", {}), "done");
    });
    assert.ok(caught instanceof DiscoveryError);
    assert.deepEqual([caught.code, caught.kind], [3001, "DEPENDENCY_UNRESOLVED"]);
  });
});
