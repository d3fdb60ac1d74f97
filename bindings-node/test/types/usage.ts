// Compiled, never run, by typings.test.mjs: the published types accept the documented usage
// and reject misuse (each @ts-expect-error must meet an error).

import {
  Agent,
  type DependencyProxy,
  DiscoveryError,
  EmbeddedResource,
  headers,
  Image,
  type RequestContext,
  ResourceLink,
  ToolResult,
  currentContext,
  traceId,
} from "toolmesh";
import { z } from "zod";

const agent = new Agent({ name: "calc", registryUrl: "https://127.0.0.1:8443", propagateHeaders: ["x-tenant"], port: 0 });

// The README's snippet is examples/node/calc.mjs, checked by this project too.

// With zod, a handler's arguments are the schema's output type.
agent.addTool({
  name: "greet",
  inputSchema: z.object({ name: z.string(), times: z.number().default(2) }),
  execute: ({ name, times }) => {
    // @ts-expect-error: name is a string
    const wrong: boolean = name;
    return name.repeat(times) + String(wrong);
  },
});

// Proxies: by declared capability and by position.
agent.addTool({
  name: "proxies",
  dependencies: ["add", { capability: "mul", tags: ["+fast", ["eu", "us"]], version: ">=1" }],
  execute: async (_args, deps) => {
    const add: DependencyProxy = deps.add;
    const mul: DependencyProxy = deps.mul;
    const first: DependencyProxy | undefined = deps[0];
    // @ts-expect-error: not a declared dependency
    void deps.div;
    const sum: number = await add<number>({ a: 1, b: 2 });
    return [sum, await mul({ a: 2, b: 3 }), first];
  },
});

// @ts-expect-error: execute is required
agent.addTool({ name: "nothing" });
// @ts-expect-error: the port is a number
new Agent({ name: "x", port: "80" });

const context: RequestContext | undefined = currentContext();
const tenant: string | undefined = headers()["x-tenant"];
const trace: string | undefined = traceId();
const started: Promise<Agent> = agent.start();
void [context, tenant, trace, started, DiscoveryError];

// Rich results: content classes, bytes as Uint8Array.
const png = new Uint8Array([137, 80, 78, 71]);
agent.addTool({
  name: "picture",
  execute: () =>
    new ToolResult({
      content: ["a picture", new Image(png, "image/png"), new ResourceLink({ uri: "test://doc", name: "doc" })],
      structuredContent: { width: 1 },
    }),
});
new EmbeddedResource({ uri: "test://x", blob: png });
// @ts-expect-error: image data is bytes, not base64 text
new Image("iVBORw0KGgo=", "image/png");

// Resources, templates and prompts.
agent.addResource({ uri: "test://static", name: "static", mimeType: "text/plain", text: "hello" });
agent.addResource({ uriTemplate: "test://item/{id}", name: "item", read: (uri, { id }) => ({ uri, text: `item ${id}` }) });
agent.addPrompt({
  name: "review",
  arguments: [{ name: "code", required: true }],
  get: ({ code }) => [{ role: "user", content: `Review ${code}` }],
});
// @ts-expect-error: a template needs a read function
agent.addResource({ uriTemplate: "test://item/{id}", name: "item" });
// @ts-expect-error: a role is user or assistant
agent.addPrompt({ name: "p", get: () => [{ role: "system", content: "x" }] });
