// The package as a user gets it: `npm install path/to/bindings-node` in a project of their own,
// with install scripts on (the package's `install` script builds the addon and dist/), then
// `import "toolmesh"` by its bare name, and TypeScript finding the types through the package's
// `types`/`exports` alone (no `paths` mapping), with node16 and bundler module resolution.
//
// TOOLMESH_NODE_PROFILE=debug makes the install script build in debug, so it reuses the debug
// build scripts/node-env.sh left in the cargo target dir instead of compiling a release build.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { callTool, certsInit, Mesh, ROOT, tempDir } from "./meshkit.mjs";

const run = promisify(execFile);
const PACKAGE = join(ROOT, "bindings-node");
const TSC = join(PACKAGE, "node_modules", "typescript", "bin", "tsc");

/** The environment without what `npm test` exports to its children (npm_config_prefix, ...), which would steer the nested npm. */
function cleanEnv(extra) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)));
  return { ...env, ...extra };
}

const CONSUMER_TS = `import { Agent, ToolmeshError, type AgentOptions } from "toolmesh";

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
`;

const CONSUMER_MJS = `import { Agent } from "toolmesh";

const agent = new Agent({ name: "consumer" });
agent.addTool({ name: "add", execute: ({ a, b }) => a + b });
await agent.run();
`;

function tsconfig(module, moduleResolution) {
  return JSON.stringify({
    compilerOptions: {
      target: "ES2022",
      module,
      moduleResolution,
      strict: true,
      noEmit: true,
      skipLibCheck: false,
      // @types/node, which the package's typings import, from the repo rather than the network.
      typeRoots: [join(PACKAGE, "node_modules", "@types")],
      types: ["node"],
    },
    // native.d.ts is not reachable from index.d.ts; named so that its imports are checked too.
    files: ["consumer.ts", "node_modules/toolmesh/dist/native.d.ts"],
  });
}

describe("installing the package into a project", { timeout: 600_000 }, () => {
  const project = {};
  before(async () => {
    project.dir = tempDir("node-install");
    project.started = Date.now();
    writeFileSync(join(project.dir, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
    const env = cleanEnv({ TOOLMESH_NODE_PROFILE: "debug" });
    project.install = await run("npm", ["install", "--no-audit", "--no-fund", "--foreground-scripts", PACKAGE], {
      cwd: project.dir,
      env,
      timeout: 540_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    project.certs = await certsInit(join(project.dir, "certs"), ["consumer"]);
    project.mesh = new Mesh(project.certs, project.dir);
  });
  after(() => project.mesh?.close());

  it("runs the package's install script, which builds the addon and dist/", () => {
    assert.match(project.install.stdout, /> toolmesh@\S+ install\n> node scripts\/build\.mjs --release/);
    for (const built of ["toolmesh.node", "dist/index.js", "dist/index.d.ts", "dist/addon.d.ts"]) {
      const path = join(project.dir, "node_modules", "toolmesh", built);
      assert.ok(statSync(path).mtimeMs >= project.started - 2000, `${built} was not built by the install`);
    }
  });

  it("is imported by its bare name, and serves a call", async () => {
    writeFileSync(join(project.dir, "main.mjs"), CONSUMER_MJS);
    const agent = await project.mesh.startAgent([process.execPath, join(project.dir, "main.mjs")], "consumer", null);
    assert.equal(await callTool(agent.endpoint, project.certs, "add", { a: 2, b: 3 }), 5);
    const { code } = await agent.process.stop("SIGTERM", 15_000);
    assert.equal(code, 0, agent.process.output());
  });

  for (const [module, moduleResolution] of [["node16", "node16"], ["esnext", "bundler"]]) {
    it(`gives TypeScript its types through package.json alone (moduleResolution ${moduleResolution})`, async () => {
      writeFileSync(join(project.dir, "consumer.ts"), CONSUMER_TS);
      const config = join(project.dir, `tsconfig.${moduleResolution}.json`);
      writeFileSync(config, tsconfig(module, moduleResolution));
      const done = await run(process.execPath, [TSC, "-p", config], { cwd: project.dir, timeout: 120_000 }).catch((error) => error);
      assert.equal(done.code ?? 0, 0, `tsc found errors:\n${done.stdout}${done.stderr}`);
    });
  }
});
