#!/usr/bin/env bash
# Runs the cross-language suite (tests/cross): one table of cases, tests/cross/cases.json, run
# with callers and callees in Python, Node, Java and C, every language pair, and one trace through
# Python -> Node -> Java -> C exported to a real Jaeger (test_tracing.py), and the registry's
# dashboard in a real headless Chromium (test_dashboard.py). Idempotent.
# Expects what scripts/python-env.sh, node-env.sh and java-env.sh and the C build make (and runs
# them when it is missing), builds the C and Java peers into $CARGO_TARGET_DIR/cross-peers, then
# runs the pytest suite; its last line is pytest's summary. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
export TOOLMESH_BIN="${TOOLMESH_BIN:-$TARGET/debug/toolmesh}"
export TOOLMESH_CROSS_PEERS="$TARGET/cross-peers"
step() { echo "== cross: $*"; }

[[ -x "$TOOLMESH_BIN" ]] || { step "building the toolmesh CLI"; cargo build --locked -p toolmesh-cli; }
[[ -f "$TARGET/debug/libtoolmesh.so" ]] || { step "building libtoolmesh"; cargo build --locked -p toolmesh-ffi; }
.venv/bin/python -c "import toolmesh" 2>/dev/null || scripts/python-env.sh
[[ -f bindings-node/dist/index.js && -f bindings-node/toolmesh.node ]] || scripts/node-env.sh
[[ -f "$HOME/.m2/repository/dev/toolmesh/toolmesh/0.1.0/toolmesh-0.1.0.jar" ]] || scripts/java-env.sh

# The C peer reads and writes JSON with jansson.
if ! printf '#include <jansson.h>\n' | cc -E -x c - >/dev/null 2>&1; then
  step "installing libjansson-dev"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libjansson-dev >/dev/null
fi

step "building the C and Java peers into ${TOOLMESH_CROSS_PEERS#"$ROOT"/}"
mkdir -p "$TOOLMESH_CROSS_PEERS/java"
make -s -C tests/cross/peers OUT="$TOOLMESH_CROSS_PEERS"
# The Java peer compiles against the installed jar and its dependencies, as a user's project
# would. Maven's output (terminal escapes even when quiet) is shown only when it fails.
if ! maven_log="$(mvn -q -B -ntp -f tests/cross/peers/pom.xml org.apache.maven.plugins:maven-dependency-plugin:2.8:build-classpath \
      -Dmdep.outputFile="$TOOLMESH_CROSS_PEERS/java.classpath" 2>&1)"; then
  echo "$maven_log" >&2
  exit 1
fi
javac -Xlint:all -Werror -cp "$(cat "$TOOLMESH_CROSS_PEERS/java.classpath")" -d "$TOOLMESH_CROSS_PEERS/java" tests/cross/peers/Peer.java

# The dashboard test opens the registry's page in a real headless Chromium.
step "Chromium for tests/cross/test_dashboard.py"
TOOLMESH_CHROMIUM="$(scripts/chromium.sh | tail -n 1)"
export TOOLMESH_CHROMIUM

# The tracing test's OTLP backend: Jaeger, built from the Go module proxy once (cached outside the clone).
step "Jaeger for tests/cross/test_tracing.py"
TOOLMESH_JAEGER="$(scripts/jaeger.sh | tail -n 1)"
export TOOLMESH_JAEGER

step "running tests/cross"
exec .venv/bin/python -m pytest tests/cross -q -p no:cacheprovider "$@"
