// The npm packages as a user receives them: bindings-node/scripts/dist.mjs packs the TypeScript
// package and the prebuilt linux-x64-gnu package, and a fresh project outside the repo (`npm init
// -y`, so CommonJS) installs the two tarballs with no cargo on PATH. Then: `import "toolmesh"`
// and `require("toolmesh")` each serve a call, TypeScript 7 and 6 typecheck an ES module and a
// CommonJS consumer with the tsconfig.json `tsc --init` writes (no `types` entry, no @types/node
// in the project), and a second `npm install` builds nothing. Without the platform package and
// without cargo, the install fails naming the platforms and the command that builds from source.
//
// dist.mjs builds with TOOLMESH_NPM_DIST_PROFILE (default dev, which reuses the debug build that
// scripts/node-env.sh left in the cargo target dir).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { callTool, certsInit, Mesh, ROOT, tempDir } from "./meshkit.mjs";

const PACKAGE = join(ROOT, "bindings-node");
const TYPESCRIPTS = {
  7: join(PACKAGE, "node_modules", "typescript7", "bin", "tsc"),
  6: join(PACKAGE, "node_modules", "typescript", "bin", "tsc"),
};

/**
 * Runs a command to its end: `{ code, signal, stdout, stderr, ms }`. A process killed by its
 * timeout has code null and its signal, so that no caller can mistake it for a success.
 */
function run(command, args, options) {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(command, args, { maxBuffer: 64 * 1024 * 1024, ...options }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : null) : 0;
      resolve({ code, signal: error?.signal ?? null, stdout, stderr, ms: Date.now() - started, error });
    });
  });
}

function assertSucceeded(done, what) {
  assert.ok(
    done.code === 0 && done.signal === null,
    `${what} failed (exit code ${done.code}, signal ${done.signal}${done.error && done.code !== 0 ? `, ${done.error.message.split("\n")[0]}` : ""}):\n${done.stdout}${done.stderr}`,
  );
}

/**
 * The environment of a user's shell without Rust: no PATH entry that holds cargo or rustc; with
 * `fakeCargoDir`, first a `cargo` that records each invocation in `cargoCalls` and fails, so that
 * any build a step attempts is both seen and stopped. No npm_* variables (`npm test` exports them, and
 * they would steer the nested npm), no CARGO_TARGET_DIR.
 */
function userEnv(fakeCargoDir, cargoCalls) {
  if (fakeCargoDir !== undefined) {
    mkdirSync(fakeCargoDir, { recursive: true });
    const fakeCargo = join(fakeCargoDir, "cargo");
    writeFileSync(fakeCargo, `#!/bin/sh\necho "cargo $*" >> '${cargoCalls}'\necho "cargo is not installed on this machine" >&2\nexit 127\n`);
    chmodSync(fakeCargo, 0o755);
  }
  const path = (process.env.PATH ?? "")
    .split(delimiter)
    .filter((dir) => dir && !["cargo", "rustc"].some((tool) => existsSync(join(dir, tool))));
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !/^(npm_|CARGO|RUSTUP_)/i.test(name) && name !== "TOOLMESH_NODE_PROFILE"),
  );
  return { ...env, PATH: [...(fakeCargoDir ? [fakeCargoDir] : []), dirname(process.execPath), ...path].join(delimiter) };
}

const npmInstall = (cwd, env, args) =>
  run("npm", ["install", "--no-audit", "--no-fund", "--foreground-scripts", ...args], { cwd, env, timeout: 300_000 });

const CONSUMER_MJS = `import { Agent } from "toolmesh";
import { createRequire } from "node:module";

// One implementation behind both entry points: require and import give the same classes.
if (createRequire(import.meta.url)("toolmesh").Agent !== Agent) throw new Error("two copies of toolmesh");
const agent = new Agent({ name: "consumer" });
agent.addTool({ name: "add", execute: ({ a, b }) => a + b });
await agent.run();
`;

const CONSUMER_CJS = `const { Agent } = require("toolmesh");

const agent = new Agent({ name: "consumer" });
agent.addTool({ name: "multiply", execute: ({ a, b }) => a * b });
agent.run();
`;

const CONSUMER_MTS = `import { Agent, headers, ToolmeshError, type AgentOptions, type RequestContext } from "toolmesh";

const options: AgentOptions = { name: "consumer", port: 0 };
const agent = new Agent(options);
agent.addTool({
  name: "add",
  inputSchema: { type: "object", properties: { a: { type: "number" }, b: { type: "number" } }, required: ["a", "b"] },
  execute: ({ a, b }) => a + b,
});
// @ts-expect-error: a tool needs an execute function
agent.addTool({ name: "broken" });
export const isMeshError = (error: unknown): boolean => error instanceof ToolmeshError;
export const propagated: Record<string, string> = headers();
export type Context = RequestContext;
`;

// With tsc --init's verbatimModuleSyntax, CommonJS TypeScript imports with \`import x = require()\`.
const CONSUMER_CTS = `import toolmesh = require("toolmesh");

const agent = new toolmesh.Agent({ name: "consumer", port: 0 });
agent.addTool({ name: "multiply", execute: ({ a, b }) => Number(a) * Number(b) });
// @ts-expect-error: a tool needs an execute function
agent.addTool({ name: "broken" });
const isMeshError = (error: unknown): boolean => error instanceof toolmesh.ToolmeshError;
export = { isMeshError };
`;

describe("the npm packages from dist.mjs, installed without Rust", { timeout: 900_000 }, () => {
  const state = {};
  /** Temporary directories, removed after the suite. */
  const scratch = [];
  before(async () => {
    state.out = tempDir("npm-dist");
    scratch.push(state.out);
    const profile = process.env.TOOLMESH_NPM_DIST_PROFILE ?? "dev";
    const packed = await run(process.execPath, [join(PACKAGE, "scripts", "dist.mjs"), "--out", state.out, "--profile", profile], {
      cwd: ROOT,
      timeout: 900_000,
    });
    assertSucceeded(packed, "dist.mjs");
    state.packMs = packed.ms;
    const tarballs = readdirSync(state.out);
    state.main = join(state.out, tarballs.find((name) => /^toolmesh-\d.*\.tgz$/.test(name)) ?? assert.fail(`no main tarball in ${tarballs}`));
    state.prebuilt = join(state.out, tarballs.find((name) => /^toolmesh-linux-x64-gnu-.*\.tgz$/.test(name)) ?? assert.fail(`no linux-x64-gnu tarball in ${tarballs}`));

    state.project = tempDir("npm-user");
    scratch.push(state.project, `${state.project}-bin`, `${state.project}-cargo-calls`);
    state.cargoCalls = `${state.project}-cargo-calls`;
    state.env = userEnv(`${state.project}-bin`, state.cargoCalls);
    assertSucceeded(await run("npm", ["init", "-y"], { cwd: state.project, env: state.env }), "npm init -y");
    state.install = await npmInstall(state.project, state.env, [state.prebuilt, state.main]);
    assertSucceeded(state.install, "npm install of the two tarballs");

    state.certs = await certsInit(join(state.project, "certs"), ["consumer"]);
    state.mesh = new Mesh(state.certs, state.project);
  });
  after(async () => {
    await state.mesh?.close();
    // Each run leaves tens of MB of tarballs and installed packages; the agents' logs go with them.
    for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
  });

  it("installs the prebuilt addon without building (no cargo on PATH)", () => {
    const installed = join(state.project, "node_modules");
    assert.ok(existsSync(join(installed, "toolmesh-linux-x64-gnu", "toolmesh.linux-x64-gnu.node")), "the platform package has no addon");
    assert.ok(!existsSync(join(installed, "toolmesh", "toolmesh.node")), "the install step built the addon from source");
    assert.ok(!existsSync(state.cargoCalls), `the install step ran cargo: ${existsSync(state.cargoCalls) && readFileSync(state.cargoCalls, "utf8")}`);
    const manifest = JSON.parse(readFileSync(join(installed, "toolmesh", "package.json"), "utf8"));
    assert.equal(manifest.private, undefined, "the published package must not be private");
    assert.deepEqual(manifest.optionalDependencies, { "toolmesh-linux-x64-gnu": manifest.version });
    const platformManifest = JSON.parse(readFileSync(join(installed, "toolmesh-linux-x64-gnu", "package.json"), "utf8"));
    assert.deepEqual([platformManifest.os, platformManifest.cpu, platformManifest.libc], [["linux"], ["x64"], ["glibc"]]);
    console.log(`dist.mjs took ${state.packMs} ms, the first npm install ${state.install.ms} ms`);
  });

  it("is imported from an ES module, and serves a call", async () => {
    writeFileSync(join(state.project, "main.mjs"), CONSUMER_MJS);
    const agent = await state.mesh.startAgent([process.execPath, join(state.project, "main.mjs")], "consumer", null);
    assert.equal(await callTool(agent.endpoint, state.certs, "add", { a: 2, b: 3 }), 5);
    const { code } = await agent.process.stop("SIGTERM", 15_000);
    assert.equal(code, 0, agent.process.output());
  });

  it("is required from CommonJS (a project from npm init -y), and serves a call", async () => {
    assert.equal(JSON.parse(readFileSync(join(state.project, "package.json"), "utf8")).type ?? "commonjs", "commonjs");
    writeFileSync(join(state.project, "main.js"), CONSUMER_CJS);
    const agent = await state.mesh.startAgent([process.execPath, join(state.project, "main.js")], "consumer", null);
    assert.equal(await callTool(agent.endpoint, state.certs, "multiply", { a: 6, b: 7 }), 42);
    const { code } = await agent.process.stop("SIGTERM", 15_000);
    assert.equal(code, 0, agent.process.output());
  });

  for (const version of [7, 6]) {
    it(`typechecks ES module and CommonJS consumers with TypeScript ${version} and tsc --init's tsconfig.json`, async () => {
      const dir = join(state.project, `ts${version}`);
      mkdirSync(dir);
      // A package of its own (type commonjs, as npm init -y writes) that finds toolmesh in the
      // project's node_modules above it.
      writeFileSync(join(dir, "package.json"), JSON.stringify({ name: `ts${version}`, private: true, type: "commonjs" }));
      const init = await run(process.execPath, [TYPESCRIPTS[version], "--init"], { cwd: dir, timeout: 60_000 });
      assertSucceeded(init, `tsc ${version} --init`);
      const config = readFileSync(join(dir, "tsconfig.json"), "utf8");
      // No `types` entry at all; and our typings checked too, not skipped.
      assert.match(config, /"skipLibCheck": true/);
      writeFileSync(join(dir, "tsconfig.json"), config.replace(/^\s*"types": \[\],?\n/m, "").replace('"skipLibCheck": true', '"skipLibCheck": false'));
      assert.doesNotMatch(readFileSync(join(dir, "tsconfig.json"), "utf8"), /^\s*"types"/m);
      writeFileSync(join(dir, "consumer.mts"), CONSUMER_MTS);
      writeFileSync(join(dir, "consumer.cts"), CONSUMER_CTS);
      const listed = await run(process.execPath, [TYPESCRIPTS[version], "-p", dir, "--noEmit", "--listFiles"], { cwd: dir, timeout: 120_000 });
      assertSucceeded(listed, `tsc ${version}`);
      // Both entry points' typings were used: the ES module's (index.d.mts) and CommonJS's (index.d.ts).
      assert.match(listed.stdout, /node_modules\/toolmesh\/dist\/index\.d\.mts/);
      assert.match(listed.stdout, /node_modules\/toolmesh\/dist\/index\.d\.ts/);
      assert.doesNotMatch(listed.stdout, /@types\/node/);
    });
  }

  it("builds nothing on a second npm install", async () => {
    const again = await npmInstall(state.project, state.env, []);
    assertSucceeded(again, "the second npm install");
    assert.ok(!existsSync(state.cargoCalls), `the second install ran cargo: ${existsSync(state.cargoCalls) && readFileSync(state.cargoCalls, "utf8")}`);
    assert.ok(!existsSync(join(state.project, "node_modules", "toolmesh", "toolmesh.node")), "the second install built the addon");
    assert.doesNotMatch(again.stderr, /building it from source/);
    console.log(`the second npm install took ${again.ms} ms`);
  });

  it("without a matching prebuilt package or cargo, fails naming the platforms and the command that builds it", async () => {
    const project = tempDir("npm-no-prebuilt");
    scratch.push(project);
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "no-prebuilt", private: true }));
    const done = await npmInstall(project, userEnv(), ["--omit=optional", state.main]);
    assert.notEqual(done.code, 0, `the install succeeded without an addon:\n${done.stdout}${done.stderr}`);
    assert.equal(done.signal, null);
    assert.match(done.stderr, /no prebuilt native addon for linux-x64 \(prebuilt packages exist for linux-x64-gnu\)/);
    assert.match(done.stderr, /needs Rust 1\.88 or later, but `cargo` is not on PATH.*`npm rebuild toolmesh`/s);
    assert.ok(!existsSync(join(project, "node_modules", "toolmesh", "toolmesh.node")));

    // Installed with its install step skipped, the package says the same when it is loaded.
    const skipped = await npmInstall(project, userEnv(), ["--omit=optional", "--ignore-scripts", state.main]);
    assertSucceeded(skipped, "npm install --ignore-scripts");
    const loaded = await run(process.execPath, ["-e", 'require("toolmesh")'], { cwd: project, env: userEnv() });
    assert.notEqual(loaded.code, 0);
    assert.match(loaded.stderr, /toolmesh: no native addon loads on linux-x64: no prebuilt package \(toolmesh-linux-x64-gnu\) is installed that matches/);
    assert.match(loaded.stderr, /run `npm rebuild toolmesh` to build the addon/);
  });

  // Minutes of compiling (core and the addon, and dependencies the target dir does not hold in
  // this workspace's feature set), so opt-in: TOOLMESH_TEST_NPM_FROM_SOURCE=1.
  it(
    "where no prebuilt package matches, builds the addon from the Rust sources in the package",
    { skip: process.env.TOOLMESH_TEST_NPM_FROM_SOURCE !== "1" && "set TOOLMESH_TEST_NPM_FROM_SOURCE=1 to build from source" },
    async () => {
      const project = tempDir("npm-from-source");
      scratch.push(project);
      writeFileSync(join(project, "package.json"), JSON.stringify({ name: "from-source", private: true }));
      // The user's real toolchain this time; debug, in the suite's cargo target dir, to reuse what it can.
      const env = {
        ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name))),
        TOOLMESH_NODE_PROFILE: "dev",
      };
      const done = await npmInstall(project, env, ["--omit=optional", state.main]);
      assertSucceeded(done, "npm install building from source");
      assert.match(done.stderr, /no prebuilt native addon for linux-x64; building it from source/);
      assert.ok(existsSync(join(project, "node_modules", "toolmesh", "toolmesh.node")));
      assert.ok(!existsSync(join(project, "node_modules", "toolmesh-linux-x64-gnu")));
      const loaded = await run(process.execPath, ["-e", 'console.log(typeof require("toolmesh").Agent)'], { cwd: project, env });
      assertSucceeded(loaded, "require after a build from source");
      assert.equal(loaded.stdout.trim(), "function");
      console.log(`the install that built from source took ${done.ms} ms`);
    },
  );
});
