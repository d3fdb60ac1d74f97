// Builds the npm packages a user installs without the source tree:
//   node bindings-node/scripts/dist.mjs --out <dir> [--profile <cargo profile>]
// writes into <dir>
//   toolmesh-<version>.tgz                 the TypeScript package: CommonJS and ES module entry
//                                          points with typings, napi-rs's loader binding.cjs, an
//                                          install step, and the Rust sources to build the addon
//                                          where no prebuilt package matches (scripts/install.mjs)
//   toolmesh-linux-x64-gnu-<version>.tgz   the prebuilt addon, in napi-rs's layout
//                                          (npm/linux-x64-gnu/package.json: os, cpu, libc)
// The main package pins the platform package in its optionalDependencies, as `napi pre-publish`
// would; the checkout's package.json does not, so that installing its dev dependencies asks the
// registry for no unpublished package.
//
// --profile is a cargo profile: release (the default), dist-fast (release without LTO, for CI),
// or dev (alias debug), which reuses the debug build scripts/node-env.sh left in the target dir.

import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const PACKAGE = join(dirname(fileURLToPath(import.meta.url)), "..");
const WORKSPACE = join(PACKAGE, "..");

const { values: options } = parseArgs({
  options: { out: { type: "string" }, profile: { type: "string", default: "release" } },
});
if (options.out === undefined) {
  console.error("usage: node bindings-node/scripts/dist.mjs --out <dir> [--profile release|dist-fast|dev]");
  process.exit(2);
}
const out = resolve(options.out);
const profile = options.profile === "debug" ? "dev" : options.profile;

function run(command, args, cwd = PACKAGE, stdout = "inherit") {
  const done = spawnSync(command, args, { cwd, stdio: ["ignore", stdout, "inherit"] });
  if (done.error) throw done.error;
  if (done.status !== 0) {
    console.error(`dist.mjs: \`${command} ${args.join(" ")}\` failed with status ${done.status}`);
    process.exit(done.status ?? 1);
  }
}

const readJson = (path) => JSON.parse(readFileSync(path, "utf8"));
const writeJson = (path, value) => writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`);
const bin = (name) => join(PACKAGE, "node_modules", ".bin", name);
// TypeScript 6 by path: node_modules/.bin/tsc may be the devDependency typescript7's.
const TSC = join(PACKAGE, "node_modules", "typescript", "bin", "tsc");

const manifest = readJson(join(PACKAGE, "package.json"));
const { version } = manifest;

if (!existsSync(bin("napi")) || !existsSync(TSC)) {
  // What package-lock.json pins (see scripts/node-env.sh), without the package's install script.
  run("npm", ["install", "--no-save", "--ignore-scripts", "--include=dev", "--no-audit", "--no-fund", "--loglevel=error"]);
}

// napi-rs's names of platforms (x86_64-unknown-linux-gnu is linux-x64-gnu), a dev dependency.
const { parseTriple } = await import("@napi-rs/cli");

const stage = mkdtempSync(join(tmpdir(), "toolmesh-npm-"));
// Also when a step fails (process.exit skips a finally block).
process.on("exit", () => rmSync(stage, { recursive: true, force: true }));
const main = join(stage, "toolmesh");
mkdirSync(main);

// The addon, named for its platform, and napi-rs's loader for it (binding.cjs, which requires
// ./toolmesh.<platform>.node next to it, else the package toolmesh-<platform>).
const built = join(stage, "napi");
run(bin("napi"), [
  "build",
  "--manifest-path", "Cargo.toml",
  "--platform",
  // napi looks for a profile's output in target/<profile>/, but dev's is target/debug/.
  ...(profile === "dev" ? [] : ["--profile", profile]),
  "--output-dir", built,
  "--js", "binding.cjs",
  "--dts", "addon.d.ts",
]);
cpSync(join(built, "binding.cjs"), join(main, "binding.cjs"));
// The typings that ship (lib/addon.d.ts) must be the ones generated from the addon that ships.
// (With --js, napi also declares its loader's __napiBindingTarget, which lib/addon.d.ts leaves out.)
const generatedTypings = readFileSync(join(built, "addon.d.ts"), "utf8").replace(
  /\/\*\*(?:(?!\*\/)[^])*\*\/\nexport declare const __napiBindingTarget\b[^\n]*\n\n?/,
  "",
);
if (generatedTypings !== readFileSync(join(PACKAGE, "lib", "addon.d.ts"), "utf8")) {
  console.error("dist.mjs: lib/addon.d.ts is out of date with src/*.rs: run `node bindings-node/scripts/build.mjs`, then `cp bindings-node/build/native.d.ts bindings-node/lib/addon.d.ts`");
  process.exit(1);
}

// The TypeScript API: CommonJS (dist/*.js, *.d.ts) and its ES module entry (dist/index.mjs).
run(process.execPath, [TSC, "-p", "tsconfig.json", "--outDir", join(main, "dist"), "--sourceMap", "false"]);
// dist/native.d.ts imports the addon's typings, which tsc does not copy (a .d.ts is not emitted).
cpSync(join(PACKAGE, "lib", "addon.d.ts"), join(main, "dist", "addon.d.ts"));

cpSync(join(PACKAGE, "scripts", "install.mjs"), join(main, "scripts", "install.mjs"));
stageRustSources(join(main, "rust"));
cpSync(join(PACKAGE, "README.md"), join(main, "README.md"));

const platformPackages = manifest.napi.targets.map(platformPackageOf);
const { private: _checkoutOnly, devDependencies: _dev, scripts: _devScripts, ...published } = manifest;
writeJson(join(main, "package.json"), {
  ...published,
  files: ["dist", "binding.cjs", "scripts/install.mjs", "rust", "README.md"],
  scripts: { install: "node scripts/install.mjs" },
  optionalDependencies: Object.fromEntries(platformPackages.map(({ name }) => [name, version])),
});

mkdirSync(out, { recursive: true });
for (const { name, dir, binary } of platformPackages) {
  const staged = join(stage, name);
  cpSync(join(PACKAGE, "npm", dir), staged, { recursive: true });
  const platformManifest = readJson(join(staged, "package.json"));
  writeJson(join(staged, "package.json"), { ...platformManifest, version, license: manifest.license });
  if (!existsSync(join(built, binary))) {
    console.error(`dist.mjs: napi build made no ${binary}; only the host's platform package can be built here`);
    process.exit(1);
  }
  cpSync(join(built, binary), join(staged, binary));
  pack(staged);
}
pack(main);

/** npm pack into --out; prints the tarball's name. */
function pack(dir) {
  const done = spawnSync("npm", ["pack", "--json", "--pack-destination", out, "--loglevel=error"], {
    cwd: dir,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  if (done.status !== 0) {
    console.error(`dist.mjs: npm pack in ${dir} failed with status ${done.status}`);
    process.exit(1);
  }
  const [{ filename, size }] = JSON.parse(done.stdout);
  console.log(`dist.mjs: ${join(out, filename)} (${Math.round(size / 1024)} kB)`);
}

/** napi-rs's platform package of a target triple, in npm/<platform>/ as `napi create-npm-dirs` made it. */
function platformPackageOf(triple) {
  const dir = parseTriple(triple).platformArchABI;
  if (!existsSync(join(PACKAGE, "npm", dir, "package.json"))) {
    console.error(`dist.mjs: no npm/${dir}/package.json for target ${triple}; run \`npx napi create-npm-dirs\` in bindings-node`);
    process.exit(1);
  }
  return { name: readJson(join(PACKAGE, "npm", dir, "package.json")).name, dir, binary: `${manifest.napi.binaryName}.${dir}.node` };
}

/**
 * A cargo workspace of its own for building the addon from source: core and the addon crate, the
 * workspace's dependency versions and profiles, and its Cargo.lock. Checked with `cargo
 * metadata --no-deps` when cargo is on PATH.
 */
function stageRustSources(rust) {
  // Core's own tests are not shipped, nor the crates only they use (toolmesh-ca).
  const coreManifest = readFileSync(join(WORKSPACE, "core", "Cargo.toml"), "utf8").replace(/^\[dev-dependencies\]\n(?:(?!\[).*\n?)*/m, "");
  mkdirSync(join(rust, "core"), { recursive: true });
  writeFileSync(join(rust, "core", "Cargo.toml"), coreManifest);
  cpSync(join(WORKSPACE, "core", "src"), join(rust, "core", "src"), { recursive: true });
  for (const file of ["Cargo.toml", "build.rs"]) cpSync(join(PACKAGE, file), join(rust, "toolmesh-node", file));
  cpSync(join(PACKAGE, "src"), join(rust, "toolmesh-node", "src"), { recursive: true });
  cpSync(join(WORKSPACE, "Cargo.lock"), join(rust, "Cargo.lock"));

  let workspace = readFileSync(join(WORKSPACE, "Cargo.toml"), "utf8");
  const membersLine = /^members = \[.*\]$/m;
  if (!membersLine.test(workspace)) throw new Error("dist.mjs: the workspace Cargo.toml has no one-line `members = [...]`; update stageRustSources");
  workspace = workspace
    .replace(membersLine, 'members = ["core", "toolmesh-node"]')
    .replace(/^default-members = .*\n/m, "")
    .replace(/^# Builds without Python\/Node\/JDK toolchains\.\n/m, "")
    // Path dependencies on crates the addon does not use, and which are not shipped.
    .replace(/^toolmesh-(?!core\b)[\w-]+ = \{ path = .*\n/gm, "");
  writeFileSync(
    join(rust, "Cargo.toml"),
    "# The part of toolmesh's cargo workspace that builds the Node addon (made by bindings-node/scripts/dist.mjs).\n" + workspace,
  );

  const cargo = process.env.CARGO || "cargo";
  if (!spawnSync(cargo, ["--version"], { stdio: "ignore" }).error) {
    run(cargo, ["metadata", "--no-deps", "--offline", "--format-version", "1", "--manifest-path", join(rust, "Cargo.toml")], rust, "ignore");
  }
}
