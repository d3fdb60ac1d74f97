// The install step of the published package (scripts/dist.mjs makes it the `install` script).
//
// Where a prebuilt platform package matches (npm installed it from the optionalDependencies, and
// napi-rs's loader binding.cjs loads it), or the addon was already built from source, it does
// nothing: a later `npm install` never rebuilds. Otherwise it builds the addon from the Rust
// sources shipped in rust/ (a self-contained cargo workspace: core and the addon crate, with the
// repository's Cargo.lock) into toolmesh.node, which lib/native.ts loads first.
//
// TOOLMESH_NODE_PROFILE picks the cargo profile of that build (default release). CARGO_TARGET_DIR
// is honoured; without it the build goes to rust/target inside the package, which is removed
// afterwards (hundreds of MB that only a rebuild would reuse).

import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);
const builtFromSource = join(root, "toolmesh.node");

if (existsSync(builtFromSource)) process.exit(0);
let prebuiltError;
try {
  require(join(root, "binding.cjs"));
  process.exit(0);
} catch (error) {
  prebuiltError = error;
}

const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const prebuilt = Object.keys(manifest.optionalDependencies ?? {}).map((name) => name.replace(/^toolmesh-/, ""));
const platform = `${process.platform}-${process.arch}`;
const cargo = process.env.CARGO || "cargo";
// "debug", as scripts/build.mjs spells it, is cargo's dev profile.
const profile = { debug: "dev", "": "release" }[process.env.TOOLMESH_NODE_PROFILE ?? ""] ?? process.env.TOOLMESH_NODE_PROFILE;

function fail(message) {
  console.error(`toolmesh: ${message}`);
  process.exit(1);
}

const cargoProbe = spawnSync(cargo, ["--version"], { stdio: "ignore" });
if (cargoProbe.error || cargoProbe.status !== 0) {
  const problem = cargoProbe.error ? "is not on PATH" : `does not run (\`${cargo} --version\` exited with status ${cargoProbe.status})`;
  fail(
    `no prebuilt native addon for ${platform} (prebuilt packages exist for ${prebuilt.join(", ") || "no platform"}), ` +
      `and building it from source needs Rust 1.88 or later, but \`${cargo}\` ${problem}. ` +
      "Install Rust (https://rustup.rs), then run `npm rebuild toolmesh`.\n" +
      `(loading the prebuilt addon failed with: ${String(prebuiltError?.message ?? prebuiltError).split("\n")[0]})`,
  );
}

console.error(`toolmesh: no prebuilt native addon for ${platform}; building it from source (cargo profile ${profile}), which takes a few minutes`);
const ownTargetDir = process.env.CARGO_TARGET_DIR ? undefined : join(root, "rust", "target");
const build = spawnSync(
  cargo,
  ["build", "--manifest-path", join(root, "rust", "Cargo.toml"), "-p", "toolmesh-node", "--profile", profile, "--message-format", "json-render-diagnostics"],
  {
    cwd: root,
    env: ownTargetDir ? { ...process.env, CARGO_TARGET_DIR: ownTargetDir } : process.env,
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 256 * 1024 * 1024,
    encoding: "utf8",
  },
);
if (build.error) fail(`running cargo failed: ${build.error.message}`);
if (build.status !== 0) fail(`\`cargo build\` of the native addon failed with status ${build.status} (its errors are above)`);

// The cdylib's path, as cargo reports it (lib*.so, lib*.dylib or *.dll, wherever the target dir is).
let library;
for (const line of build.stdout.split("\n")) {
  if (!line.startsWith("{")) continue;
  const message = JSON.parse(line);
  if (message.reason === "compiler-artifact" && message.target?.name === "toolmesh_node" && message.target.kind.includes("cdylib")) {
    library = message.filenames.find((file) => /\.(so|dylib|dll)$/.test(file));
  }
}
if (library === undefined) fail("cargo built the addon crate but reported no library file for it");
copyFileSync(library, builtFromSource);
if (ownTargetDir) rmSync(ownTargetDir, { recursive: true, force: true });
console.error(`toolmesh: built ${builtFromSource}`);
