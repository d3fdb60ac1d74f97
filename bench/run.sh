#!/usr/bin/env bash
# toolmesh benchmarks, side by side with their baselines, in one run (see bench/README.md).
#
#   bash bench/run.sh            # the full run (≈ 15 min): bench/results/latest.{md,json}
#   bash bench/run.sh --quick    # a smoke run (≈ 3 min): bench/results/latest-quick.{md,json}
#   bash bench/run.sh --only transport,handshakes [--quick]
#   bash bench/run.sh --only policy --quick   # authorization cost (Rust only: no wheel, no MCP Mesh)
#
# Builds in release (one cargo build at a time), installs what it needs under bench/.work/
# (gitignored): the toolmesh wheel (release) in its own venv, MCP Mesh in another, with HOME
# pointed at a scratch directory for it. Not part of CI: these are measurements.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$ROOT/bench/.work"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
MM_VERSION=3.8.0
MM_CLI_VERSION=3.7.1

step() { echo "bench: $*" >&2; }
mkdir -p "$WORK/logs"

# The Python wheel, MCP Mesh and the other languages' examples are needed by the python, memory
# and coldstart sections only; `--only` without them builds and installs the Rust side alone.
only=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --only) only="${args[$((i + 1))]:-}" ;;
    --only=*) only="${args[$i]#--only=}" ;;
  esac
done
needs_others=1
if [[ -n "$only" && ! ",$only," =~ ,(python|memory|coldstart), ]]; then
  needs_others=0
fi

if ((needs_others)); then
  step "building toolmesh-bench, the toolmesh CLI and libtoolmesh (release)"
  (cd "$ROOT" && cargo build --quiet --release -p toolmesh-bench -p toolmesh-cli -p toolmesh-ffi)
else
  step "building toolmesh-bench and the toolmesh CLI (release; sections: $only)"
  (cd "$ROOT" && cargo build --quiet --release -p toolmesh-bench -p toolmesh-cli)
fi

if ((needs_others)); then

# The Python toolchain (maturin) comes from the project's own .venv.
if [[ ! -x "$ROOT/.venv/bin/maturin" ]]; then
  step "setting up .venv with scripts/python-env.sh"
  bash "$ROOT/scripts/python-env.sh"
fi
step "building the toolmesh wheel (release) into bench/.work/tm-venv"
[[ -x "$WORK/tm-venv/bin/python" ]] || python3 -m venv "$WORK/tm-venv"
rm -rf "$WORK/wheel"
build_log="$WORK/logs/wheel-build.log"
if ! (cd "$ROOT/bindings-python" && "$ROOT/.venv/bin/maturin" build --release --out "$WORK/wheel" \
      --interpreter "$WORK/tm-venv/bin/python") >"$build_log" 2>&1; then
  cat "$build_log" >&2
  exit 1
fi
"$WORK/tm-venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$WORK"/wheel/toolmesh-*.whl

if [[ ! -x "$WORK/mm-venv/bin/python" ]] || ! "$WORK/mm-venv/bin/python" -c "import mesh" >/dev/null 2>&1; then
  step "installing MCP Mesh $MM_VERSION into bench/.work/mm-venv (about a minute)"
  python3 -m venv "$WORK/mm-venv"
  "$WORK/mm-venv/bin/pip" install --quiet --disable-pip-version-check "mcp-mesh==$MM_VERSION"
fi
MM_BIN="$WORK/mm-npm/node_modules/@mcpmesh/cli-linux-x64/bin"
if [[ ! -x "$MM_BIN/meshctl" ]]; then
  step "installing meshctl and the MCP Mesh registry ($MM_CLI_VERSION) into bench/.work/mm-npm"
  HOME="$WORK/mm-home" npm install --silent --no-audit --no-fund --prefix "$WORK/mm-npm" "@mcpmesh/cli-linux-x64@$MM_CLI_VERSION"
fi
# meshctl --tls-auto writes MCP Mesh's CA and the agents' certificates; the harness then starts
# the same processes directly (same environment), to own their pids.
MM_AGENTS="$WORK/mm-home/.mcp-mesh/tls/local-dev/agents"
if [[ ! -f "$MM_AGENTS/agent-a-cert.pem" || ! -f "$MM_AGENTS/agent-b-cert.pem" ]]; then
  step "generating MCP Mesh's tls-auto certificates with meshctl"
  mkdir -p "$WORK/mm" "$WORK/mm-home"
  ln -sfn ../mm-venv "$WORK/mm/.venv"   # meshctl wants ./.venv
  cp "$ROOT/bench/agents/mm_agent_a.py" "$ROOT/bench/agents/mm_agent_b.py" "$WORK/mm/"
  (cd "$WORK/mm" && export HOME="$WORK/mm-home" PATH="$MM_BIN:$PATH" \
    && meshctl start --registry-only --tls-auto -d >/dev/null \
    && meshctl start mm_agent_b.py --tls-auto -d --env BENCH_PORT=0 --env BENCH_AGENT_NAME=agent-b --env HOST=127.0.0.1 --env MCP_MESH_HTTP_HOST=127.0.0.1 >/dev/null \
    && meshctl start mm_agent_a.py --tls-auto -d --env BENCH_PORT=0 --env BENCH_AGENT_NAME=agent-a --env HOST=127.0.0.1 --env MCP_MESH_HTTP_HOST=127.0.0.1 >/dev/null; \
    meshctl stop >/dev/null 2>&1 || true)
fi
mkdir -p "$WORK/mm"

# Agents of the other languages: used when their examples are built (scripts/*-env.sh).
if [[ -f "$ROOT/examples/c/Makefile" ]]; then
  mkdir -p "$WORK/c"
  make --quiet -C "$ROOT/examples/c" PROFILE=release OUT="$WORK/c" >/dev/null 2>"$WORK/logs/c-build.log" \
    || step "examples/c did not build (see bench/.work/logs/c-build.log); the C rows are skipped"
fi

if [[ -f "$ROOT/examples/java/target/classes/Calc.class" ]] && command -v mvn >/dev/null; then
  # The Java example's classpath: the toolmesh jar (native library inside) and its dependencies.
  mvn -q -B -f "$ROOT/examples/java/pom.xml" dependency:build-classpath \
    -Dmdep.outputFile="$WORK/java-classpath.txt" >"$WORK/logs/java-classpath.log" 2>&1 \
    || { rm -f "$WORK/java-classpath.txt"; step "no classpath for examples/java (see bench/.work/logs/java-classpath.log); the Java rows are skipped"; }
fi
fi  # needs_others

step "certificates for this run"
rm -rf "$WORK/certs" "$WORK/scale-certs"
"$CARGO_TARGET_DIR/release/toolmesh" certs init --dir "$WORK/certs" \
  --agents bench-a,bench-b,bench-p,py-a,py-b,py-mem,calc,squares,rust,loadgen >/dev/null

exec python3 "$ROOT/bench/harness.py" "$@"
