// Test helpers shared by the Node suites (bindings-node/test and tests/node): certificates from
// the toolmesh CLI, registry and agent processes, and raw MCP calls over mTLS. Every wait is
// bounded; every process is killed at teardown.

import { execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, openSync, closeSync, readFileSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const AGENT_READY = /toolmesh agent (\S+) serving (https:\/\/\S+) \(id (\S+)\)/;
export const REGISTRY_READY = /toolmesh registry listening on (https:\/\/\S+)/;
// Short, so that topology changes reach the agents within a second.
export const HEARTBEAT_MS = 300;

const run = promisify(execFile);
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

/** The `toolmesh` CLI: $TOOLMESH_BIN, else the debug build in the cargo target dir. */
export function cliBinary() {
  const binary = process.env.TOOLMESH_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(ROOT, "target"), "debug", "toolmesh");
  if (!existsSync(binary)) throw new Error(`${binary} is missing: build it with \`cargo build -p toolmesh-cli\``);
  return binary;
}

/** The Python of the repo's .venv (scripts/python-env.sh), with the toolmesh wheel. */
export function venvPython() {
  const python = join(ROOT, ".venv", "bin", "python");
  if (!existsSync(python)) throw new Error(`${python} is missing: run scripts/python-env.sh`);
  return python;
}

export function tempDir(label) {
  return mkdtempSync(join(tmpdir(), `toolmesh-${label}-`));
}

/** Polls `probe` until it returns something truthy; fails after `timeoutMs`. */
export async function waitUntil(probe, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (error) {
      lastError = error; // the condition may throw until it holds
    }
    await sleep(100);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${lastError})` : ""}`);
}

/** A directory written by `toolmesh certs init`. */
export class Certs {
  constructor(dir) {
    this.dir = dir;
    this.ca = join(dir, "ca.pem");
  }

  pem(name) {
    return join(this.dir, `${name}.pem`);
  }

  key(name) {
    return join(this.dir, `${name}.key`);
  }

  /** Options of a Node `Agent` for identity `name`. */
  options(name) {
    return { tlsCert: this.pem(name), tlsKey: this.key(name), tlsCa: this.ca };
  }

  /** The same as TOOLMESH_* environment variables. */
  env(name) {
    return { TOOLMESH_TLS_CERT: this.pem(name), TOOLMESH_TLS_KEY: this.key(name), TOOLMESH_TLS_CA: this.ca };
  }
}

export async function certsInit(dir, agents) {
  await run(cliBinary(), ["certs", "init", "--dir", dir, ...(agents.length ? ["--agents", agents.join(",")] : [])], { timeout: 60_000 });
  return new Certs(dir);
}

/** A child process whose stdout and stderr go to files (never a pipe that could fill up). */
export class Process {
  constructor(argv, env, logPrefix) {
    this.argv = argv;
    this.stdoutPath = `${logPrefix}.out`;
    this.stderrPath = `${logPrefix}.err`;
    const out = openSync(this.stdoutPath, "w");
    const err = openSync(this.stderrPath, "w");
    this.child = spawn(argv[0], argv.slice(1), { env: { ...process.env, ...env }, stdio: ["ignore", out, err] });
    closeSync(out);
    closeSync(err);
    this.exited = new Promise((done) => this.child.once("exit", (code, signal) => done({ code, signal })));
  }

  output() {
    return `--- stdout\n${readFileSync(this.stdoutPath, "utf8")}--- stderr\n${readFileSync(this.stderrPath, "utf8")}`;
  }

  running() {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Waits for a line matching `pattern` on stdout or stderr; fails if the process exits first. */
  async waitForLine(pattern, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      for (const path of [this.stdoutPath, this.stderrPath]) {
        const match = pattern.exec(readFileSync(path, "utf8"));
        if (match) return match;
      }
      if (!this.running()) throw new Error(`${this.argv.join(" ")} exited before it was ready\n${this.output()}`);
      await sleep(50);
    }
    throw new Error(`${this.argv.join(" ")} was not ready within ${timeoutMs} ms\n${this.output()}`);
  }

  /** Waits for the process to exit; fails after `timeoutMs`. */
  async wait(timeoutMs) {
    let timer;
    const timeout = new Promise((_, fail) => {
      timer = setTimeout(() => fail(new Error(`${this.argv.join(" ")} did not exit within ${timeoutMs} ms\n${this.output()}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Signals the process and waits for it; kills it if it does not exit in time. */
  async stop(signal = "SIGTERM", timeoutMs = 15_000) {
    if (this.running()) {
      this.child.kill(signal);
      try {
        return await this.wait(timeoutMs);
      } catch {
        this.child.kill("SIGKILL");
      }
    }
    return this.exited;
  }
}

/** Starts registries, agents and CLI commands for a suite; `close` kills them all. */
export class Mesh {
  constructor(certs, logDir) {
    this.certs = certs;
    this.logDir = logDir;
    this.processes = [];
  }

  spawn(argv, env, label) {
    const process = new Process(argv, env, join(this.logDir, `${label}-${this.processes.length}`));
    this.processes.push(process);
    return process;
  }

  async startRegistry() {
    const { certs } = this;
    const argv = [cliBinary(), "registry", "--port", "0", "--heartbeat-interval-ms", String(HEARTBEAT_MS),
      "--tls-cert", certs.pem("registry"), "--tls-key", certs.key("registry"), "--tls-ca", certs.ca];
    const process = this.spawn(argv, {}, "registry");
    const [, url] = await process.waitForLine(REGISTRY_READY, 30_000);
    return { process, url };
  }

  /**
   * Runs an agent program (`argv`, e.g. [node, script]) as agent `name` with certificate
   * `identity` (default `name`) and the TOOLMESH_* environment; `ready` waits for its ready line.
   */
  spawnAgent(argv, name, registry, { env = {}, identity = name } = {}) {
    const agentEnv = {
      ...this.certs.env(identity),
      TOOLMESH_TEST_AGENT_NAME: name,
      TOOLMESH_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS),
      ...(registry ? { TOOLMESH_REGISTRY_URL: registry.url } : {}),
      ...env,
    };
    return this.spawn(argv, agentEnv, name);
  }

  async startAgent(argv, name, registry, options) {
    const process = this.spawnAgent(argv, name, registry, options);
    const [, agentName, endpoint, agentId] = await process.waitForLine(AGENT_READY, 30_000);
    return { process, name: agentName, endpoint, agentId };
  }

  /** Runs the CLI as the operator; resolves with its exit code and output. */
  async cli(args, registry) {
    const env = { ...process.env, ...this.certs.env("operator"), ...(registry ? { TOOLMESH_REGISTRY_URL: registry.url } : {}) };
    try {
      const { stdout, stderr } = await run(cliBinary(), args, { env, timeout: 30_000 });
      return { code: 0, stdout, stderr };
    } catch (error) {
      if (typeof error.code !== "number") throw error;
      return { code: error.code, stdout: error.stdout, stderr: error.stderr };
    }
  }

  /** Waits until every agent in `names` is registered and healthy. */
  async waitListed(registry, names, timeoutMs = 20_000) {
    return waitUntil(async () => {
      const done = await this.cli(["list", "--json"], registry);
      if (done.code !== 0) throw new Error(done.stderr);
      const agents = JSON.parse(done.stdout).agents;
      const healthy = new Set(agents.filter((a) => a.status === "healthy").map((a) => a.name));
      return names.every((name) => healthy.has(name)) ? agents : undefined;
    }, timeoutMs, `agents ${names.join(", ")} to be listed`);
  }

  async close() {
    await Promise.all(this.processes.map((process) => process.stop("SIGKILL", 10_000)));
  }
}

/** One modern-revision (2026-07-28) MCP request over mTLS, as the operator by default. */
/**
 * One modern-revision MCP request: `{status, body, events}`, where an answer streamed as events
 * gives its notifications in `events` and its response in `body`.
 */
export function mcpPost(endpoint, certs, body, { headers = {}, identity = "operator", timeoutMs = 30_000 } = {}) {
  const params = (body.params ??= {});
  params._meta ??= {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
  };
  const payload = JSON.stringify(body);
  const options = {
    method: "POST",
    ca: readFileSync(certs.ca),
    cert: readFileSync(certs.pem(identity)),
    key: readFileSync(certs.key(identity)),
    timeout: timeoutMs,
    headers: {
      "Content-Type": "application/json",
      Accept: "application/json, text/event-stream",
      "MCP-Protocol-Version": "2026-07-28",
      "Mcp-Method": body.method,
      ...(params.name ? { "Mcp-Name": params.name } : {}),
      ...headers,
    },
  };
  return new Promise((done, fail) => {
    const req = request(endpoint, options, (response) => {
      const chunks = [];
      response.on("data", (chunk) => chunks.push(chunk));
      response.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        if (!(response.headers["content-type"] ?? "").startsWith("text/event-stream")) {
          done({ status: response.statusCode, body: text ? JSON.parse(text) : {}, events: [] });
          return;
        }
        // An answer streamed as events: the notifications, then the response (the last message).
        const messages = text
          .split("\n\n")
          .map((event) => event.split("\n").filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trimStart()).join("\n"))
          .filter((data) => data !== "")
          .map((data) => JSON.parse(data));
        done({ status: response.statusCode, body: messages.at(-1), events: messages.slice(0, -1) });
      });
      response.on("error", fail);
    });
    req.on("timeout", () => req.destroy(new Error(`no answer from ${endpoint} within ${timeoutMs} ms`)));
    req.on("error", fail);
    req.end(payload);
  });
}

function toolsCall(tool, args) {
  return { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: tool, arguments: args } };
}

/** Calls `tool` with a raw MCP request and returns its structured result; fails on any error. */
export async function callTool(endpoint, certs, tool, args, headers = {}) {
  const { status, body } = await mcpPost(endpoint, certs, toolsCall(tool, args), { headers });
  if (status !== 200 || !body.result || body.result.isError) {
    throw new Error(`${tool} failed: ${status} ${JSON.stringify(body)}`);
  }
  return body.result.structuredContent;
}

/** Calls a tool that must fail; returns the mesh error it reported (`{code, name, message}`). */
export async function callError(endpoint, certs, tool, args, { timeoutMs } = {}) {
  const { status, body } = await mcpPost(endpoint, certs, toolsCall(tool, args), { timeoutMs });
  if (status !== 200 || !body.result?.isError) throw new Error(`${tool} did not fail: ${status} ${JSON.stringify(body)}`);
  return body.result._meta["dev.toolmesh/error"];
}
