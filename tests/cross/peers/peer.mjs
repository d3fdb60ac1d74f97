// The Node peer of the cross-language suite: the twin of peer.py (see there for the roles).
//   node peer.mjs ROLE CASES_JSON

import { readFileSync } from "node:fs";
import { Agent, currentContext, headers, InputRequired, ToolError, ToolmeshError, ToolResult, traceId, withCallHeaders } from "../../../bindings-node/dist/index.js";

const LANGUAGE = "node";

const caught = (error) => ({
  error: {
    code: error.code,
    name: error.kind,
    message: error.message,
    ...(error instanceof ToolError ? { app_code: error.appCode, data: error.data } : {}),
  },
});
const here = () => ({ language: LANGUAGE, headers: headers(), trace_id: traceId() });
/** The tag of `language`'s callee agent of `kind` ("agent", "misnamed", "replaced"). */
const tag = (table, kind, language) => table.callee.tags[kind].replace("{language}", language);

function addProbe(agent, name, dependency, timeoutMs, args, callHeaders) {
  agent.addTool({
    name,
    dependencies: [dependency],
    timeoutMs,
    execute: async (_, proxies) => {
      try {
        // the case's headers, set on purpose in code
        return { ok: await withCallHeaders(callHeaders, () => proxies[0](args)) };
      } catch (error) {
        if (error instanceof ToolmeshError) return caught(error);
        throw error;
      }
    },
  });
}

function caller(table) {
  const agent = new Agent({ name: `caller-${LANGUAGE}` });
  for (const call of table.calls) {
    const args = JSON.parse(call.arguments_json ?? "{}"); // a number past 2^53 becomes the nearest double
    if (call.callee === null) {
      addProbe(agent, call.case, call.tool, call.timeout_ms, args, call.call_headers ?? {});
      continue;
    }
    for (const callee of table.languages) {
      const dependency = { capability: call.tool, tags: [tag(table, call.callee, callee)] };
      addProbe(agent, `${call.case}__${callee}`, dependency, call.timeout_ms, args, call.call_headers ?? {});
    }
  }
  return agent;
}

function callee(table, vanishing) {
  const settings = table.callee;
  const agent = new Agent({ name: `callee-${LANGUAGE}` });
  const tags = [tag(table, "agent", LANGUAGE)];
  agent.addTool({ name: "echo", tags, execute: here });
  if (vanishing) agent.addTool({ name: settings.vanishing_tool, tags, execute: here });
  agent.addTool({
    name: "fail",
    tags,
    execute: () => {
      throw new Error(settings.fail_message);
    },
  });
  agent.addTool({
    name: "fail_without_message",
    tags,
    execute: () => {
      throw new Error();
    },
  });
  const refusal = settings.tool_error;
  agent.addTool({
    name: "refuse",
    tags,
    execute: () => {
      throw new ToolError(refusal.app_code, refusal.message, { data: refusal.data });
    },
  });
  const chainHops = table.chain.languages;
  const following = chainHops[(chainHops.indexOf(LANGUAGE) + 1) % chainHops.length];
  agent.addTool({
    name: "refuse_via",
    tags,
    dependencies: [{ capability: "refuse", tags: [tag(table, "agent", following)] }],
    execute: (_, proxies) => proxies[0](), // its ToolError goes to our caller unchanged
  });
  agent.addTool({
    name: "echo_via",
    tags,
    dependencies: [{ capability: "echo", tags: [tag(table, "agent", following)] }],
    execute: async (_, proxies) => ({ ...here(), next: await proxies[0]() }),
  });
  agent.addTool({ name: "not_json", tags, execute: () => 10n }); // JSON has no BigInt
  agent.addTool({
    name: "count",
    tags,
    annotations: { readOnlyHint: true, idempotentHint: true },
    inputSchema: { type: "object", properties: { n: { type: "integer" } }, required: ["n"] },
    execute: ({ n }) => ({ n }),
  });
  agent.addTool({
    name: "paint",
    tags,
    inputSchema: { type: "object", properties: { colour: { type: "string", enum: ["red", "green", "blue"] } }, required: ["colour"] },
    execute: ({ colour }) => ({ colour }),
  });
  agent.addTool({
    name: "slow",
    tags,
    execute: async () => {
      // A caller that asked for progress learns that the call is under way (the cancelled case).
      currentContext().progress(0, 1, "slow started");
      await new Promise((resolve) => setTimeout(resolve, settings.slow_ms));
      return here();
    },
  });
  agent.addTool({
    name: "job",
    tags,
    taskSupport: "required",
    execute: async () => {
      const seen = here();
      await new Promise((resolve) => setTimeout(resolve, settings.job_ms));
      return seen;
    },
  });
  const hops = table.chain.languages;
  const next = hops[hops.indexOf(LANGUAGE) + 1];
  agent.addTool({
    name: "chain",
    tags,
    dependencies: next === undefined ? [] : [{ capability: "chain", tags: [tag(table, "agent", next)] }],
    execute: async (_, proxies) => {
      const seen = { ...here(), remaining_ms: currentContext().remainingMs };
      if (next === undefined) return { ...seen, next: null };
      const budget = table.chain.budget;
      if (headers()["x-tenant"] === budget.tenant) await new Promise((resolve) => setTimeout(resolve, budget.spend_ms));
      return { ...seen, next: await proxies[0]() };
    },
  });
  agent.addTool({
    name: "ask",
    tags,
    execute: () => {
      const { inputResponses, requestState } = currentContext();
      if (inputResponses === null) return new InputRequired(table.input_required.requests, { asked: LANGUAGE });
      return { language: LANGUAGE, hello: inputResponses.name.content.name, state: requestState };
    },
  });
  // One dependency per language (all of capability ask), in the table's order; "to" picks one.
  agent.addTool({
    name: "ask_via",
    tags,
    dependencies: table.languages.map((language) => ({ capability: "ask", tags: [tag(table, "agent", language)] })),
    execute: ({ to }, proxies) => proxies[table.languages.indexOf(to)](),
  });
  const richHops = table.rich_chain.languages;
  const richNext = richHops[richHops.indexOf(LANGUAGE) + 1];
  agent.addTool({
    name: "rich_chain",
    tags,
    dependencies: richNext === undefined ? [] : [{ capability: "rich_chain", tags: [tag(table, "agent", richNext)] }],
    execute: (_, proxies) => (richNext === undefined ? new ToolResult(table.rich_chain.result) : proxies[0].callResult()),
  });
  return agent;
}

/** The certificate of agent `name` when TOOLMESH_CROSS_CERTS names the directory holding one per
 * agent (the registry takes an agent's name from its certificate); else nothing. */
function ownCertificate(name) {
  const directory = process.env.TOOLMESH_CROSS_CERTS;
  return directory ? { tlsCert: `${directory}/${name}.pem`, tlsKey: `${directory}/${name}.key` } : {};
}

/** Agent KIND-node, serving echo tagged as the table says for `kind`, with its own certificate. */
function echoOnly(table, kind, options = {}) {
  const name = `${kind}-${LANGUAGE}`;
  const agent = new Agent({ name, ...ownCertificate(name), ...options });
  agent.addTool({ name: "echo", tags: [tag(table, kind, LANGUAGE)], execute: here });
  return agent;
}

/** Agent guarded-node, serving the table's guarded tools (each answers like echo). */
function guarded(table) {
  const name = `guarded-${LANGUAGE}`;
  const agent = new Agent({ name, ...ownCertificate(name) });
  for (const tool of table.guarded.tools) agent.addTool({ name: tool, tags: [tag(table, "guarded", LANGUAGE)], execute: here });
  return agent;
}

/** Agent relay-node: relay calls relayed of guarded-node on behalf of its own caller; a failure
 * goes to that caller unchanged. */
function relay(table) {
  const name = `relay-${LANGUAGE}`;
  const agent = new Agent({ name, ...ownCertificate(name) });
  agent.addTool({
    name: "relay",
    tags: [tag(table, "relay", LANGUAGE)],
    dependencies: [{ capability: table.guarded.relayed_tool, tags: [tag(table, "guarded", LANGUAGE)] }],
    execute: async (_, proxies) => proxies[0](),
  });
  return agent;
}

async function serve(agents) {
  const stopped = new Promise((resolve) => {
    process.once("SIGINT", resolve).once("SIGTERM", resolve);
  });
  try {
    for (const agent of agents) {
      await agent.start();
      console.error(`toolmesh agent ${agent.name} serving ${agent.endpoint} (id ${agent.agentId})`);
    }
    await stopped;
  } finally {
    for (const agent of agents) await agent.stop();
  }
}

async function startOnce(table) {
  const agent = new Agent({ name: `starter-${LANGUAGE}` });
  agent.addTool({ name: "echo", tags: [tag(table, "agent", LANGUAGE)], execute: here });
  try {
    await agent.start();
  } catch (error) {
    if (!(error instanceof ToolmeshError)) throw error;
    console.log(JSON.stringify(caught(error)));
    return;
  }
  console.log(JSON.stringify({ ok: "started" }));
  await agent.stop();
}

const [role, cases] = process.argv.slice(2);
const table = JSON.parse(readFileSync(cases, "utf8"));
if (role === "start") {
  await startOnce(table);
} else {
  const agents = {
    caller: () => [caller(table)],
    callee: () => [
      callee(table, true),
      echoOnly(table, "misnamed", { host: table.callee.misnamed_host }),
      echoOnly(table, "replaced"),
      echoOnly(table, "aloof", { tlsAllowedIds: table.callee.aloof_allowed_ids }),
    ],
    restarted: () => [callee(table, false)],
    impostor: () => [echoOnly(table, "replaced")],
    guarded: () => [guarded(table), relay(table)],
    squat: () => [echoOnly(table, "squatter")],
  }[role]();
  await serve(agents);
}
