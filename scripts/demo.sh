#!/usr/bin/env bash
# The mesh doing its main job on the embedded defaults: a registry and two Python agents on
# mutual TLS, and a chained call — stats.mean3 → calc.sum3 → calc.add — made from the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/toolmesh/target}"

scripts/setup-system.sh
echo "demo: building the toolmesh CLI"
cargo build --quiet --locked -p toolmesh-cli
scripts/python-env.sh
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
"$toolmesh" certs init --dir "$work/certs" --agents calc,stats
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
for agent in calc stats; do
  TOOLMESH_TLS_CERT="$certs/$agent.pem" TOOLMESH_TLS_KEY="$certs/$agent.key" \
    "$python" "examples/python/$agent.py" >"$work/$agent.log" 2>&1 &
  pids+=($!)
done
pids+=($registry_pid)

export TOOLMESH_TLS_CERT="$certs/operator.pem" TOOLMESH_TLS_KEY="$certs/operator.key"
listed() { "$toolmesh" list --json | grep -q '"name": *"calc"' && "$toolmesh" list --json | grep -q '"name": *"stats"'; }
wait_for 30 "both agents to register" listed
"$toolmesh" list

echo; echo "== chained call: mean3(1, 2, 6) on stats → sum3 on calc → add on calc, all over mTLS"
result=$("$toolmesh" call mean3 '{"a": 1, "b": 2, "c": 6}')
echo "mean3(1, 2, 6) = $result"

echo; echo "== stopping (agents deregister, then the registry stops)"
