// Builds the native addon (toolmesh.node, with napi-rs's generated typings in build/) and the
// TypeScript API (dist/). `npm install` runs it with --release; scripts/node-env.sh in debug.
// TOOLMESH_NODE_PROFILE=debug or =release overrides both, e.g. to install the package in debug,
// reusing the debug build already in the cargo target dir ($CARGO_TARGET_DIR, else ../target):
//   TOOLMESH_NODE_PROFILE=debug npm install path/to/bindings-node
//
// Installed as a dependency from a checkout (`npm install path/to/bindings-node`), npm links
// this folder and installs none of its devDependencies, so they are installed here first.

import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const profile = process.env.TOOLMESH_NODE_PROFILE || (process.argv.includes("--release") ? "release" : "debug");
if (profile !== "debug" && profile !== "release") {
  console.error(`toolmesh: TOOLMESH_NODE_PROFILE is '${profile}'; set it to debug or release, or unset it`);
  process.exit(2);
}
const release = profile === "release";

function run(command, args) {
  const done = spawnSync(command, args, { cwd: root, stdio: "inherit" });
  if (done.error) throw done.error;
  if (done.status !== 0) {
    console.error(`toolmesh: \`${command} ${args.join(" ")}\` failed with status ${done.status}`);
    process.exit(done.status ?? 1);
  }
}

const bin = (name) => join(root, "node_modules", ".bin", name);
// TypeScript 6, which builds the package; by path, since node_modules/.bin/tsc may be the
// TypeScript 7 of the devDependency `typescript7` (tests/node/install.test.mjs checks with both).
const TSC = join(root, "node_modules", "typescript", "bin", "tsc");

if (!existsSync(bin("napi")) || !existsSync(TSC)) {
  // What package-lock.json pins (see scripts/node-env.sh for why not `npm ci`); --include=dev:
  // the parent install may be a production one (npm_config_omit=dev).
  run("npm", ["install", "--no-save", "--ignore-scripts", "--include=dev", "--no-audit", "--no-fund", "--loglevel=error"]);
}
run(bin("napi"), [
  "build",
  "--manifest-path", "Cargo.toml",
  "--output-dir", ".",
  "--dts", "build/native.d.ts",
  ...(release ? ["--release"] : []),
]);
run(process.execPath, [TSC, "-p", "tsconfig.json"]);
// dist/native.d.ts imports the addon's typings, which tsc does not copy (a .d.ts is not emitted).
copyFileSync(join(root, "lib", "addon.d.ts"), join(root, "dist", "addon.d.ts"));
