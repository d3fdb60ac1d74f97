#!/usr/bin/env bash
# Profiles of the transport row (section 1), for FINDINGS.md. Run `bash bench/run.sh --only
# transport --quick` once first: it builds the release binaries and the certificates used here.
#
#   bash bench/profile.sh instructions toolmesh|raw_h1|bare_mcp   # callgrind: instructions per call, c=1
#   bash bench/profile.sh cpu toolmesh|raw_h1|bare_mcp [CONCURRENCY] [CALLS]   # perf stat: CPU per call
#
# `instructions` runs 200 and then 1,200 calls with the server (and the driver) under valgrind and
# prints (big − small) / 1,000 per process, so start-up cancels out; the profiles stay in
# bench/.work/prof/ for callgrind_annotate. `cpu` prints each process's CPU time and context
# switches per call from `perf stat`, the registry's too: it receives the spans the agents export
# by default (OTEL_TRACES_EXPORTER=none in the environment turns that off for all three). Needs
# apt-get install valgrind / linux-perf.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$ROOT/bench/.work"
CERTS="$WORK/certs"
LOGS="$WORK/logs"
PROF="$WORK/prof"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"
BENCH="$TARGET/toolmesh-bench"
mkdir -p "$LOGS" "$PROF"
[[ -x "$BENCH" && -f "$CERTS/bench-a.pem" ]] || { echo "profile: run 'bash bench/run.sh --only transport --quick' first" >&2; exit 1; }

MODE="${1:?instructions or cpu}"
SYSTEM="${2:?toolmesh, raw_h1 or bare_mcp}"
CONCURRENCY="${3:-1}"
CALLS="${4:-100000}"
pids=()
# Stops the processes with SIGINT (valgrind writes its profile then), waiting up to 20 s.
cleanup() {
  kill -INT "${pids[@]}" 2>/dev/null || true
  local pid
  for pid in "${pids[@]}"; do
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  pids=()
}
trap cleanup EXIT

# One run: a registry, the Rust agent and the raw echo server (the measured one under $wrap, or
# watched by $attach followed by its pid), then the driver (under $driver_wrap) for $calls calls.
run() {
  local calls=$1 wrap=$2 driver_wrap=$3 attach=${4:-}
  pids=()
  "$TARGET/toolmesh" registry --port 0 --health-port off --tls-cert "$CERTS/registry.pem" \
    --tls-key "$CERTS/registry.key" --tls-ca "$CERTS/ca.pem" >"$LOGS/profile-registry.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do grep -q "https://" "$LOGS/profile-registry.log" && break; sleep 0.1; done
  local registry registry_pid=${pids[0]}
  registry=$(grep -o "https://[0-9.:]*" "$LOGS/profile-registry.log" | head -1)
  local agent_wrap="" raw_wrap=""
  if [[ $SYSTEM == toolmesh ]]; then agent_wrap=$wrap; else raw_wrap=$wrap; fi
  TOOLMESH_REGISTRY_URL=$registry TOOLMESH_TLS_CERT="$CERTS/bench-b.pem" TOOLMESH_TLS_KEY="$CERTS/bench-b.key" \
    TOOLMESH_TLS_CA="$CERTS/ca.pem" TOOLMESH_HEALTH_PORT=off \
    $agent_wrap "$BENCH" serve-agent --name bench-b --capability bench-add >"$LOGS/profile-agent.log" 2>&1 &
  local agent=$!
  $raw_wrap "$BENCH" serve-raw --cert "$CERTS/bench-b.pem" --key "$CERTS/bench-b.key" --ca "$CERTS/ca.pem" \
    >"$LOGS/profile-raw.log" 2>&1 &
  local raw=$!
  pids+=("$agent" "$raw")
  for _ in $(seq 300); do
    grep -q READY "$LOGS/profile-raw.log" && grep -q READY "$LOGS/profile-agent.log" && break
    sleep 0.2
  done
  local watcher="" registry_watcher=""
  if [[ -n $attach ]]; then
    if [[ $SYSTEM == toolmesh ]]; then $attach "$agent" & else $attach "$raw" & fi
    watcher=$!
    # The registry receives the agents' spans (tracing is on by default) on the same cores.
    perf stat -e task-clock,context-switches -x, -o "$PROF/registry-$SYSTEM.csv" -p "$registry_pid" &
    registry_watcher=$!
  fi
  $driver_wrap "$BENCH" transport --cert "$CERTS/bench-a.pem" --key "$CERTS/bench-a.key" --ca "$CERTS/ca.pem" \
    --registry-url "$registry" --raw-addr "$(grep -o '127.0.0.1:[0-9]*' "$LOGS/profile-raw.log")" \
    --capability bench-add --rounds 1 --seconds 120 --warmup 0 --concurrency "$CONCURRENCY" \
    --max-calls "$calls" --systems "$SYSTEM" >"$LOGS/profile-driver.json" 2>"$LOGS/profile-driver.log"
  if [[ -n $watcher ]]; then kill -INT "$watcher" "$registry_watcher"; wait "$watcher" "$registry_watcher" || true; fi
  grep -h "transport round" "$LOGS/profile-driver.log" | tail -1
  cleanup
}

total() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'; }

case "$MODE" in
  instructions)
    for calls in 200 1200; do
      run "$calls" "valgrind --tool=callgrind --callgrind-out-file=$PROF/server-$SYSTEM-$calls.out" \
        "valgrind --tool=callgrind --callgrind-out-file=$PROF/client-$SYSTEM-$calls.out"
    done
    for side in server client; do
      echo "$SYSTEM $side: $(( ($(total "$PROF/$side-$SYSTEM-1200.out") - $(total "$PROF/$side-$SYSTEM-200.out")) / 1000 )) instructions per call"
    done
    ;;
  cpu)
    run "$CALLS" "" "perf stat -e task-clock,context-switches -x, -o $PROF/client-$SYSTEM.csv" \
      "perf stat -e task-clock,context-switches -x, -o $PROF/server-$SYSTEM.csv -p"
    for side in server client registry; do
      awk -F, -v calls="$CALLS" -v side="$side" -v measured="$SYSTEM" '
        $3 == "task-clock" { cpu = $1 } $3 == "context-switches" { switches = $1 }
        END { printf "%s %s: %.1f us CPU and %.2f context switches per call\n", measured, side, cpu * 1000 / calls, switches / calls }' \
        "$PROF/$side-$SYSTEM.csv"
    done
    ;;
  *) echo "profile: unknown mode '$MODE' (instructions or cpu)" >&2; exit 2 ;;
esac
