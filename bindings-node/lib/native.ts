/**
 * The native addon (`src/*.rs`), typed by `addon.d.ts`, which napi-rs generates from it.
 *
 * Found in this order: `toolmesh.node` in the package root (built from source: by
 * `scripts/build.mjs` in a checkout, or by the install step where no prebuilt package matches),
 * then napi-rs's loader `binding.cjs`, which picks this platform's prebuilt package
 * (`toolmesh-linux-x64-gnu`, ...) from the package's optionalDependencies.
 */

import { existsSync } from "node:fs";
import { join } from "node:path";
import type * as Addon from "./addon.js";

const PACKAGE_ROOT = join(__dirname, "..");

function loadAddon(): typeof Addon {
  const builtFromSource = join(PACKAGE_ROOT, "toolmesh.node");
  if (existsSync(builtFromSource)) return require(builtFromSource) as typeof Addon;
  try {
    return require(join(PACKAGE_ROOT, "binding.cjs")) as typeof Addon;
  } catch (error) {
    throw new Error(missingAddonMessage(error), { cause: error });
  }
}

/** Names this platform, the platforms with a prebuilt package, and the command that builds one. */
function missingAddonMessage(error: unknown): string {
  let prebuilt: string[] = [];
  try {
    const manifest = require(join(PACKAGE_ROOT, "package.json")) as { optionalDependencies?: Record<string, string> };
    prebuilt = Object.keys(manifest.optionalDependencies ?? {}).map((name) => name.replace(/^toolmesh-/, ""));
  } catch {
    // a checkout without a build: no prebuilt packages to name
  }
  const reason = error instanceof Error ? error.message.split("\n")[0] : String(error);
  return (
    `toolmesh: no native addon loads on ${process.platform}-${process.arch}: ` +
    (prebuilt.length > 0
      ? `no prebuilt package (${prebuilt.map((platform) => `toolmesh-${platform}`).join(", ")}) is installed that matches, `
      : "") +
    `and none was built from source (${reason}). ` +
    (prebuilt.length > 0 ? "Install the prebuilt package for this platform next to toolmesh, or, with " : "With ") +
    "Rust 1.88 or later (https://rustup.rs) on PATH, run `npm rebuild toolmesh` to build the addon; " +
    "in a checkout of toolmesh, run scripts/node-env.sh."
  );
}

export const addon: typeof Addon = loadAddon();

declare module "./addon.js" {
  interface RequestContext {
    /** Aborted when the request is cancelled; see `RequestContext.signal` in context.ts. */
    readonly signal: AbortSignal;
  }
}

/**
 * A handler context's `signal`: an AbortSignal that core aborts when the request is cancelled
 * (its caller went away, or its deadline passed). Made on first use, so a handler that never
 * reads it costs nothing; one per request.
 */
const signals = new WeakMap<object, AbortSignal>();
Object.defineProperty(addon.RequestContext.prototype, "signal", {
  get(this: Addon.RequestContext): AbortSignal {
    let signal = signals.get(this);
    if (signal === undefined) {
      const controller = new AbortController();
      signal = controller.signal;
      signals.set(this, signal);
      this.onCancel(() => controller.abort(new DOMException("the request was cancelled: its caller went away or its deadline passed", "AbortError")));
    }
    return signal;
  },
});
export type { NativeAgent, Responder } from "./addon.js";
