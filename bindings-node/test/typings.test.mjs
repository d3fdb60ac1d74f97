// The TypeScript surface: the native typings in lib/addon.d.ts are the ones napi-rs generates
// from src/*.rs, and the published types accept the documented usage and reject misuse.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

describe("typings", { timeout: 120_000 }, () => {
  it("are generated from the addon without drift", () => {
    const generated = readFileSync(`${root}/build/native.d.ts`, "utf8");
    const committed = readFileSync(`${root}/lib/addon.d.ts`, "utf8");
    assert.equal(committed, generated, "lib/addon.d.ts is out of date: build, then `cp build/native.d.ts lib/addon.d.ts`");
  });

  it("accept the documented usage and reject misuse", () => {
    const done = spawnSync(process.execPath, [`${root}/node_modules/typescript/bin/tsc`, "-p", `${root}/test/types`], { encoding: "utf8", timeout: 110_000 });
    assert.equal(done.status, 0, `tsc found errors:\n${done.stdout}${done.stderr}`);
  });
});
