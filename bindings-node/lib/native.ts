/** The native addon (`src/*.rs`), typed by `addon.d.ts`, which napi-rs generates from it. */

import { createRequire } from "node:module";
import type * as Addon from "./addon.js";

const require = createRequire(import.meta.url);

export const addon: typeof Addon = require("../toolmesh.node");
export type { NativeAgent, Responder } from "./addon.js";
