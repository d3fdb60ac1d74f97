#!/usr/bin/env bash
# The mesh doing its main job on the embedded defaults: a registry and agents in Python, Node and
# Java on mutual TLS, found through the registry and calling each other directly:
#   stats (Python).mean3 → sum3 on a calculator (Python, Node or Java) → add (any language).
#
# With --dashboard, the mesh stays up after that, calling mean3 twice a second, and the registry's
# live dashboard is opened in a browser (its URL is printed either way) until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
dashboard=false
case "${1:-}" in
  "") ;;
  --dashboard) dashboard=true ;;
  *) echo "usage: scripts/demo.sh [--dashboard]" >&2; exit 2 ;;
esac
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/toolmesh/target}"

scripts/setup-system.sh
echo "demo: building the toolmesh CLI"
cargo build --quiet --locked -p toolmesh-cli
scripts/python-env.sh
scripts/node-env.sh
scripts/java-env.sh
toolmesh="$CARGO_TARGET_DIR/debug/toolmesh"
python=.venv/bin/python

work=$(mktemp -d)
pids=()
cleanup() {
  # Agents first (they deregister on SIGTERM), then the registry.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local until=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $until ] || { echo "demo: timed out waiting for $what" >&2; exit 1; }
    sleep 0.2
  done
}

echo; echo "== certificates (dev CA, registry, operator, agents)"
"$toolmesh" certs init --dir "$work/certs" --agents calc-py,calc-node,calc-java,stats
certs="$work/certs"

echo; echo "== registry"
"$toolmesh" registry --port 0 --tls-cert "$certs/registry.pem" --tls-key "$certs/registry.key" \
  --tls-ca "$certs/ca.pem" >"$work/registry.out" 2>"$work/registry.log" &
registry_pid=$!
wait_for 20 "the registry" grep -q "listening on" "$work/registry.out"
export TOOLMESH_REGISTRY_URL=$(grep -o 'https://[^ ]*' "$work/registry.out" | head -1)
echo "registry at $TOOLMESH_REGISTRY_URL"

echo; echo "== agents"
export TOOLMESH_TLS_CA="$certs/ca.pem"
start_agent() { # start_agent NAME COMMAND...: the agent's certificate and name come from the environment
  local name=$1; shift
  TOOLMESH_NAME=$name TOOLMESH_TLS_CERT="$certs/$name.pem" TOOLMESH_TLS_KEY="$certs/$name.key" \
    "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
}
start_agent calc-py "$python" examples/python/calc.py
start_agent calc-node node examples/node/calc.mjs
start_agent calc-java mvn -q -f examples/java/pom.xml exec:java
start_agent stats "$python" examples/python/stats.py
pids+=($registry_pid)

export TOOLMESH_TLS_CERT="$certs/operator.pem" TOOLMESH_TLS_KEY="$certs/operator.key"
listed() {
  local agents; agents=$("$toolmesh" list --json)
  for name in calc-py calc-node calc-java stats; do grep -q "\"name\": *\"$name\"" <<<"$agents" || return 1; done
}
wait_for 90 "all four agents to register" listed
"$toolmesh" list

echo; echo "== one tool, three languages: sum3 on each calculator (its add may run in another language)"
for calc in calc-py calc-node calc-java; do
  echo "$calc:sum3(1, 2, 3) = $("$toolmesh" call "$calc:sum3" '{"a": 1, "b": 2, "c": 3}')"
done

echo; echo "== chained call: stats.mean3 → sum3 (spread across the calculators) → add, all over mTLS"
for _ in 1 2 3; do
  echo "mean3(1, 2, 6) = $("$toolmesh" call mean3 '{"a": 1, "b": 2, "c": 6}')"
done

if $dashboard; then
  # The registry prints the dashboard's URL (its health listener's port) beside its own.
  url=$(grep -o 'http://[^ ]*/dashboard/' "$work/registry.out")
  echo; echo "== dashboard: $url (calls keep going; Ctrl-C stops the mesh)"
  for open in xdg-open chromium firefox; do
    if command -v "$open" >/dev/null && [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then "$open" "$url" >/dev/null 2>&1 & break; fi
  done
  trap 'echo; echo "== stopping (agents deregister, then the registry stops)"; exit 0' INT TERM
  while sleep 0.5; do "$toolmesh" call mean3 '{"a": 1, "b": 2, "c": 6}' >/dev/null || true; done
fi

echo; echo "== stopping (agents deregister, then the registry stops)"
