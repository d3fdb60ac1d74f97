#!/usr/bin/env bash
# toolmesh benchmarks, side by side with their baselines, in one run (see bench/README.md).
#
#   bash bench/run.sh            # the full run (≈ 15 min): bench/results/latest.{md,json}
#   bash bench/run.sh --quick    # a smoke run (≈ 3 min): bench/results/latest-quick.{md,json}
#   bash bench/run.sh --only transport,handshakes [--quick]
#   bash bench/run.sh --only policy --quick   # authorization cost (Rust only: no wheel, no MCP Mesh)
#   bash bench/run.sh --only mcp-mesh         # every section with MCP Mesh rows (python,memory,coldstart,long_calls_vs_mcpmesh)
#   bash bench/run.sh --only registry         # registry scale (raises the open-files limit, see below)
#   bash bench/run.sh --only long_calls       # progress and cancellation through three hops (Rust only)
#   bash bench/run.sh --only long_calls_vs_mcpmesh   # the same through three Python agents, toolmesh against MCP Mesh
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

# The Python wheel, MCP Mesh and the other languages' examples are needed by the python, memory,
# coldstart and long_calls_vs_mcpmesh sections only; `--only` without them installs nothing else.
only=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --only) only="${args[$((i + 1))]:-}" ;;
    --only=*) only="${args[$i]#--only=}" ;;
  esac
done
needs_others=1
if [[ -n "$only" && ! ",$only," =~ ,(python|memory|coldstart|long_calls_vs_mcpmesh|mcp-mesh), ]]; then
  needs_others=0
fi

# The Java agent is built here from the binding's sources when a JDK and Maven are present (its
# JNI library in the same release build), so the Java rows need nothing installed by hand.
java_ok=0
if command -v javac >/dev/null && command -v mvn >/dev/null; then java_ok=1; fi
# One build of the same packages whatever --only says: building another set of packages unifies
# the dependencies' features differently and rebuilds core and the rest (minutes, with fat LTO).
step "building toolmesh-bench, the toolmesh CLI, libtoolmesh$( ((java_ok)) && echo ' and the JNI library') (release)"
(cd "$ROOT" && cargo build --quiet --release -p toolmesh-bench -p toolmesh-cli -p toolmesh-ffi $( ((java_ok)) && echo -p toolmesh-java))

if ((needs_others)); then

# maturin: the project's .venv's when scripts/python-env.sh made one, else the bench's own
# (bench/.work/tools-venv; the same version range as bindings-python/pyproject.toml requires).
MATURIN="$ROOT/.venv/bin/maturin"
if [[ ! -x "$MATURIN" ]]; then
  MATURIN="$WORK/tools-venv/bin/maturin"
  if [[ ! -x "$MATURIN" ]]; then
    step "installing maturin into bench/.work/tools-venv"
    python3 -m venv "$WORK/tools-venv"
    "$WORK/tools-venv/bin/pip" install --quiet --disable-pip-version-check "maturin>=1.9,<2"
  fi
fi
step "building the toolmesh wheel (release) into bench/.work/tm-venv"
[[ -x "$WORK/tm-venv/bin/python" ]] || python3 -m venv "$WORK/tm-venv"
rm -rf "$WORK/wheel"
build_log="$WORK/logs/wheel-build.log"
if ! (cd "$ROOT/bindings-python" && "$MATURIN" build --release --out "$WORK/wheel" \
      --interpreter "$WORK/tm-venv/bin/python") >"$build_log" 2>&1; then
  cat "$build_log" >&2
  exit 1
fi
"$WORK/tm-venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$WORK"/wheel/toolmesh-*.whl
# The memory rows' Node agent: examples/node linked to the package, its addon built in release.
if command -v node >/dev/null && command -v npm >/dev/null; then
  step "building the Node addon (release) and linking examples/node (log: bench/.work/logs/node-env.log)"
  TOOLMESH_NODE_PROFILE=release bash "$ROOT/scripts/node-env.sh" >"$WORK/logs/node-env.log" 2>&1 \
    || step "the Node rows will be missing: scripts/node-env.sh failed (bench/.work/logs/node-env.log)"
fi

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
# meshctl --tls-auto writes MCP Mesh's CA, the registry's certificate and one certificate per
# agent; the harness then starts the same processes directly (same environment), to own their
# pids. meshctl names an agent's files after its script (3.7.1: `mm_agent_b-cert.pem`, whatever
# --agent-name says), so the names are not assumed: each file is found as the one that appeared
# while meshctl started that agent, and the paths go to the harness in bench/.work/mm-certs.json.
MM_TLS="$WORK/mm-home/.mcp-mesh/tls"
MM_MANIFEST="$WORK/mm-certs.json"
mm_manifest_ok() {
  [[ -f "$MM_MANIFEST" ]] && python3 - "$MM_MANIFEST" <<'PY'
import json, os, sys
paths = [p for entry in json.load(open(sys.argv[1])).values() for p in (entry.values() if isinstance(entry, dict) else [entry])]
sys.exit(0 if paths and all(os.path.isfile(p) for p in paths) else 1)
PY
}
# Prints the certificate/key files (relative to $MM_TLS) present now, one a line.
mm_tls_files() { (cd "$MM_TLS" 2>/dev/null && find . -name '*.pem' | sort) || true; }
# The one `*-cert.pem` (and its `*-key.pem`) among the files that appeared between two listings.
mm_new_pair() {  # $1 before, $2 after, $3 what meshctl was starting
  local certs
  certs=$(comm -13 "$1" "$2" | grep -e '-cert\.pem$' | grep -v '/entity-cert\.pem$' || true)
  if [[ $(printf '%s' "$certs" | grep -c .) -ne 1 ]]; then
    echo "bench: meshctl start $3 --tls-auto wrote $(printf '%s' "$certs" | grep -c .) new certificates (expected one) under $MM_TLS:" >&2
    comm -13 "$1" "$2" | sed 's/^/  new: /' >&2
    echo "bench: its output is in $WORK/logs/meshctl.log; the files MCP Mesh keeps are listed in bench/README.md (MCP Mesh certificates)" >&2
    return 1
  fi
  local key="${certs%-cert.pem}-key.pem"
  if [[ ! -f "$MM_TLS/$key" ]]; then
    echo "bench: meshctl wrote $MM_TLS/${certs#./} but no key beside it ($key)" >&2
    return 1
  fi
  printf '{"cert": "%s", "key": "%s"}' "$MM_TLS/${certs#./}" "$MM_TLS/${key#./}"
}
if ! mm_manifest_ok; then
  step "generating MCP Mesh's tls-auto certificates with meshctl (about a minute; log: bench/.work/logs/meshctl.log)"
  # A fresh MCP Mesh home: the files that appear are then the ones each start wrote.
  rm -rf "$WORK/mm-home/.mcp-mesh" "$MM_MANIFEST"
  mkdir -p "$WORK/mm" "$WORK/mm-home"
  ln -sfn ../mm-venv "$WORK/mm/.venv"   # meshctl wants ./.venv
  cp "$ROOT/bench/agents/mm_agent_a.py" "$ROOT/bench/agents/mm_agent_b.py" "$WORK/mm/"
  mm_generate() {
    cd "$WORK/mm"
    export HOME="$WORK/mm-home" PATH="$MM_BIN:$PATH"
    local before="$WORK/mm-tls.before" after="$WORK/mm-tls.after" registry agent_a agent_b port
    # A free port rather than meshctl's default 8000, which something else on the machine may hold.
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mm_tls_files >"$before"
    meshctl start --registry-only --registry-port "$port" --tls-auto -d >>"$WORK/logs/meshctl.log" 2>&1 \
      || { echo "bench: meshctl start --registry-only --tls-auto failed (bench/.work/logs/meshctl.log)" >&2; return 1; }
    mm_tls_files >"$after"
    registry=$(mm_new_pair "$before" "$after" "--registry-only") || return 1
    local agents=()
    for pair in "agent-b mm_agent_b.py" "agent-a mm_agent_a.py"; do
      set -- $pair
      mm_tls_files >"$before"
      meshctl start "$2" --registry-port "$port" --tls-auto -d --env BENCH_PORT=0 --env "BENCH_AGENT_NAME=$1" --env HOST=127.0.0.1 \
        --env MCP_MESH_HTTP_HOST=127.0.0.1 >>"$WORK/logs/meshctl.log" 2>&1 || { echo "bench: meshctl start $2 --tls-auto failed (bench/.work/logs/meshctl.log)" >&2; return 1; }
      mm_tls_files >"$after"
      local found
      found=$(mm_new_pair "$before" "$after" "$2") || return 1
      agents+=("\"$1\": $found")
    done
    [[ -f "$MM_TLS/ca.pem" ]] || { echo "bench: meshctl --tls-auto wrote no CA at $MM_TLS/ca.pem" >&2; return 1; }
    printf '{"ca": "%s", "registry": %s, %s, %s}\n' "$MM_TLS/ca.pem" "$registry" "${agents[0]}" "${agents[1]}" >"$MM_MANIFEST.tmp"
  }
  status=0
  (mm_generate) || status=$?
  (cd "$WORK/mm" && HOME="$WORK/mm-home" PATH="$MM_BIN:$PATH" meshctl stop >>"$WORK/logs/meshctl.log" 2>&1) || true
  if ((status != 0)) || ! python3 -m json.tool "$MM_MANIFEST.tmp" >/dev/null 2>&1; then
    echo "bench: could not make MCP Mesh's certificates (see above and bench/.work/logs/meshctl.log); the MCP Mesh rows would all fail, stopping here" >&2
    exit 1
  fi
  mv "$MM_MANIFEST.tmp" "$MM_MANIFEST"
  mm_manifest_ok || { echo "bench: $MM_MANIFEST names files that do not exist" >&2; exit 1; }
fi
mkdir -p "$WORK/mm"

# Agents of the other languages: used when their examples are built (scripts/*-env.sh).
if [[ -f "$ROOT/examples/c/Makefile" ]]; then
  mkdir -p "$WORK/c"
  make --quiet -C "$ROOT/examples/c" PROFILE=release OUT="$WORK/c" >/dev/null 2>"$WORK/logs/c-build.log" \
    || step "examples/c did not build (see bench/.work/logs/c-build.log); the C rows are skipped"
fi

rm -rf "$WORK/java"
if ((java_ok)); then
  # examples/java's Calc compiled with the binding's sources into bench/.work/java/classes; the
  # binding's dependencies (Jackson) resolved by Maven; the JNI library is the release one above,
  # loaded from java.library.path (harness.py) — what the released jar carries.
  step "compiling the Java agent (examples/java with bindings-java's sources) into bench/.work/java"
  mkdir -p "$WORK/java/classes"
  java_sources=$(find "$ROOT/bindings-java/src/main/java" -name '*.java')
  if mvn -q -B -f "$ROOT/bindings-java/pom.xml" dependency:build-classpath -DincludeScope=runtime \
       -Dmdep.outputFile="$WORK/java/dependencies.txt" >"$WORK/logs/java-build.log" 2>&1 \
     && javac -parameters --release 17 -d "$WORK/java/classes" -cp "$(cat "$WORK/java/dependencies.txt")" \
       $java_sources "$ROOT/examples/java/src/main/java/Calc.java" >>"$WORK/logs/java-build.log" 2>&1; then
    :
  else
    rm -rf "$WORK/java"
    step "the Java agent did not build (see bench/.work/logs/java-build.log); the Java rows are skipped"
  fi
else
  step "no javac or mvn on PATH: the Java rows are skipped (scripts/java-env.sh installs them)"
fi
fi  # needs_others

step "certificates for this run"
rm -rf "$WORK/certs" "$WORK/scale-certs"
"$CARGO_TARGET_DIR/release/toolmesh" certs init --dir "$WORK/certs" \
  --agents bench-a,bench-b,bench-p,bench-q,bench-u,bench-h1,bench-h2,bench-h3,py-a,py-b,py-mem,py-sa,py-sb,py-sc,calc,squares,rust,loadgen >/dev/null

# The registry section's largest row holds one mTLS connection per simulated agent (10,000) open,
# in the registry and in the simulator, where the usual soft open-files limit is 1,024. The
# registry needs 10,000 descriptors and a margin (10,512). The simulator needs two per connection
# (core's client keeps a duplicate of each socket to watch for the peer's close): 20,512 in one
# process, or the harness splits the row over several simulator processes. So: raise the soft
# limit to the hard one (any process may), and the hard one to 20,512 when it is lower and this
# process may (CAP_SYS_RESOURCE). The harness checks each row's need against the limit and fails a
# row that cannot fit, saying so.
OPEN_FILES_WANTED=20512
OPEN_FILES_NEEDED=10512
hard_files=$(ulimit -Hn)
if [[ "$hard_files" != unlimited && "$hard_files" -lt "$OPEN_FILES_WANTED" ]] \
   && ulimit -Hn "$OPEN_FILES_WANTED" 2>/dev/null; then
  step "raised the open-files hard limit from $hard_files to $OPEN_FILES_WANTED"
  hard_files=$OPEN_FILES_WANTED
fi
if [[ "$hard_files" == unlimited ]]; then
  ulimit -Sn "$(cat /proc/sys/fs/nr_open 2>/dev/null || echo 1048576)" 2>/dev/null || true
else
  ulimit -Sn "$hard_files"
fi
step "open files per process: $(ulimit -Sn) (soft, raised to the hard limit $hard_files)"
if [[ ( -z "$only" || ",$only," == *,registry,* ) && " $* " != *" --quick "* && "$(ulimit -Sn)" -lt "$OPEN_FILES_NEEDED" ]]; then
  step "WARNING: the registry row with 10,000 connections needs $OPEN_FILES_NEEDED open files per process and the hard" \
    "limit is $hard_files; that row will fail. Raise the hard limit (/etc/security/limits.conf 'nofile';" \
    "docker run --ulimit nofile=65536:65536; systemd LimitNOFILE=; or run with CAP_SYS_RESOURCE, e.g. as root" \
    "outside a restricted container, and run.sh raises it) and rerun."
fi

exec python3 "$ROOT/bench/harness.py" "$@"
