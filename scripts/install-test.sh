#!/usr/bin/env bash
# Installs the release artifacts in dist/ as users receive them, outside the repository and with
# no cargo or rustc on PATH, and makes one call through all four languages:
#
#   bash scripts/dist.sh                       # (TOOLMESH_DIST_PROFILE=dist-fast in CI)
#   bash scripts/install-test.sh [DIST_DIR]    # DIST_DIR defaults to dist/
#
# In a fresh temporary directory holding a copy of dist/ (so nothing points into the checkout):
#   python   python3 -m venv + pip install dist/python/toolmesh-*.whl (also gives the `toolmesh` CLI)
#   node     npm init -y + npm install dist/npm/*.tgz (the package and its linux-x64-gnu addon)
#   java     a fresh Maven project depending on dev.toolmesh:toolmesh from the file repository
#            dist/maven (its own local repository, so nothing installed in ~/.m2 stands in)
#   c        an agent compiled with `pkg-config --cflags --libs toolmesh` (PKG_CONFIG_PATH=dist/c/lib/pkgconfig)
# then a registry (`toolmesh registry --tls-auto`, the wheel's CLI) and one agent per language:
#   toolmesh call py_chain {"n": 7}:  Python py_chain → Node node_step → Java java_step → C c_square
#   = ((7 * 7) + 1) * 2 + 3 = 103
# The agents are tests/install/*. Every wait is bounded; every process started here is stopped
# on exit. Needs python3 (with venv), node and npm, a JDK 17+ with Maven, cc and pkg-config;
# PyPI is not needed, Maven Central is (Jackson and Maven's plugins, cached across runs in
# ~/.cache/toolmesh/install-test-m2).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SOURCE_DIST="$(cd "${1:-$ROOT/dist}" 2>/dev/null && pwd)" || { echo "install-test: ${1:-$ROOT/dist} is missing: build it with bash scripts/dist.sh" >&2; exit 1; }
AGENTS="$ROOT/tests/install"
M2_CACHE="${TOOLMESH_INSTALL_TEST_M2:-$HOME/.cache/toolmesh/install-test-m2}"
EXPECTED=103

step() { echo "install-test: $*"; }
fail() { echo "install-test: FAILED: $*" >&2; exit 1; }

for tool in python3 node npm mvn java cc pkg-config; do
  command -v "$tool" >/dev/null || fail "$tool is missing (scripts/setup-system.sh, node-env.sh and java-env.sh install what is needed)"
done
wheels=("$SOURCE_DIST"/python/toolmesh-*.whl)
npm_packages=("$SOURCE_DIST"/npm/toolmesh-linux-x64-gnu-*.tgz "$SOURCE_DIST"/npm/toolmesh-[0-9]*.tgz)
for artifact in "${wheels[0]}" "${npm_packages[@]}" "$SOURCE_DIST/maven/dev/toolmesh/toolmesh" \
  "$SOURCE_DIST/c/lib/pkgconfig/toolmesh.pc" "$SOURCE_DIST/bin/toolmesh"; do
  [[ -e "$artifact" ]] || fail "$artifact is missing: build dist/ with bash scripts/dist.sh"
done

# No cargo or rustc: every directory that has one leaves PATH (rustup's ~/.cargo/bin).
clean_path=""
IFS=: read -ra path_dirs <<<"$PATH"
for dir in "${path_dirs[@]}"; do
  [[ -n "$dir" && ! -e "$dir/cargo" && ! -e "$dir/rustc" ]] || continue
  clean_path="${clean_path:+$clean_path:}$dir"
done
export PATH="$clean_path"
unset CARGO_TARGET_DIR CARGO_HOME RUSTUP_HOME TOOLMESH_BIN
if command -v cargo >/dev/null || command -v rustc >/dev/null; then
  fail "cargo or rustc is still on PATH ($(command -v cargo rustc | tr '\n' ' ')): the install test must run without Rust"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/toolmesh-install-test.XXXXXX")"
case "$work/" in "$ROOT"/*) fail "the temporary directory $work is inside the repository" ;; esac
pids=()
names=()
cleanup() {
  local status=$?
  # Agents first (they deregister on SIGTERM), then the registry (started first).
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ $status -ne 0 ]]; then
    for name in "${names[@]}"; do
      echo "--- $name ($work/$name.log), last lines:" >&2
      tail -n 30 "$work/$name.log" >&2 || true
    done
    echo "install-test: the work directory $work is kept for inspection" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
started=$SECONDS
phase_started=$SECONDS
phase_done() { step "  ($1: $((SECONDS - phase_started)) s)"; phase_started=$SECONDS; }

step "copying $SOURCE_DIST to $work/dist (users get the files, not the checkout)"
cp -r "$SOURCE_DIST" "$work/dist"
DIST="$work/dist"
(cd "$DIST" && sha256sum --quiet -c SHA256SUMS) || fail "dist/SHA256SUMS does not match the files"

step "python: a fresh venv with the wheel"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check "$DIST"/python/toolmesh-*.whl
toolmesh="$work/venv/bin/toolmesh"
[[ -x "$toolmesh" ]] || fail "installing the wheel did not put the toolmesh command in $work/venv/bin"
"$toolmesh" --version | grep '^toolmesh ' >/dev/null || fail "the wheel's toolmesh command does not run: $("$toolmesh" --version 2>&1)"
"$DIST/bin/toolmesh" --version | grep '^toolmesh ' >/dev/null || fail "dist/bin/toolmesh does not run"
mkdir "$work/python"
cp "$AGENTS/python/py_chain.py" "$work/python/"
phase_done python

step "node: a fresh npm project with the two tarballs"
mkdir "$work/node"
(cd "$work/node" && npm init -y >/dev/null && npm install --no-audit --no-fund --loglevel=error \
  "$DIST"/npm/toolmesh-linux-x64-gnu-*.tgz "$DIST"/npm/toolmesh-[0-9]*.tgz >"$work/npm-install.log" 2>&1) \
  || { cat "$work/npm-install.log" >&2; fail "npm install of the tarballs failed (output above)"; }
cp "$AGENTS/node/node_step.mjs" "$work/node/"
phase_done node

step "java: a fresh Maven project using the file repository dist/maven"
mkdir -p "$work/java" "$M2_CACHE"
cp -r "$AGENTS/java/src" "$work/java/"
sed "s|@TOOLMESH_MAVEN_REPOSITORY@|file://$DIST/maven|" "$AGENTS/java/pom.xml" >"$work/java/pom.xml"
# Maven's own local repository caches Jackson and the plugins between runs; toolmesh itself is
# removed from it, so it comes from dist/maven every time.
rm -rf "$M2_CACHE/dev/toolmesh"
mvn_in_project=(mvn -B -ntp -q -Dstyle.color=never -Dmaven.repo.local="$M2_CACHE" -f "$work/java/pom.xml")
"${mvn_in_project[@]}" compile >"$work/mvn-compile.log" 2>&1 \
  || { cat "$work/mvn-compile.log" >&2; fail "the Maven project does not build against dist/maven (output above)"; }
[[ -f "$M2_CACHE/dev/toolmesh/toolmesh/0.1.0/toolmesh-0.1.0.jar" ]] \
  || fail "dev.toolmesh:toolmesh did not come from dist/maven into $M2_CACHE"
phase_done java

step "c: an agent compiled with pkg-config"
export PKG_CONFIG_PATH="$DIST/c/lib/pkgconfig"
mkdir "$work/c"
cflags=(-std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -O1)
# shellcheck disable=SC2046 # pkg-config's output is a list of flags
cc "${cflags[@]}" -o "$work/c/c_square" "$AGENTS/c/c_square.c" $(pkg-config --cflags --libs toolmesh) \
  -Wl,-rpath,"$(pkg-config --variable=libdir toolmesh)" || fail "the C agent does not compile against dist/c"
# shellcheck disable=SC2046
cc "${cflags[@]}" -o "$work/c/c_square_static" "$AGENTS/c/c_square.c" $(pkg-config --cflags --libs toolmesh-static) \
  || fail "the C agent does not link statically against dist/c (pkg-config toolmesh-static)"
if ldd "$work/c/c_square_static" | grep libtoolmesh >/dev/null; then fail "the statically linked C agent still needs libtoolmesh.so"; fi
phase_done c

step "mesh: a registry (--tls-auto) and one agent per language"
state="$work/registry-state"
"$toolmesh" registry --tls-auto --state-dir "$state" --port 0 --heartbeat-interval-ms 1000 >"$work/registry.log" 2>&1 &
pids+=($!); names+=(registry)
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local until=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [[ $SECONDS -lt $until ]] || fail "timed out after $1 s waiting for $what"
    sleep 0.2
  done
}
wait_for 20 "the registry's ready line" grep -q "listening on https://" "$work/registry.log"
registry_url="$(grep -o 'listening on https://[^ ]*' "$work/registry.log" | head -1 | cut -d' ' -f3)"
export TOOLMESH_TLS=auto TOOLMESH_REGISTRY_URL="$registry_url" TOOLMESH_JOIN_TOKEN="$(cat "$state/join-token")"
start_agent() { # start_agent NAME DIRECTORY COMMAND...
  local name=$1 dir=$2; shift 2
  (cd "$dir" && exec "$@") >"$work/$name.log" 2>&1 &
  pids+=($!); names+=("$name")
}
start_agent install-c "$work/c" ./c_square
start_agent install-java "$work/java" "${mvn_in_project[@]}" exec:java
start_agent install-node "$work/node" node node_step.mjs
start_agent install-python "$work/python" "$work/venv/bin/python" py_chain.py
operate=(--tls-auto --state-dir "$state" --registry "$registry_url")
all_registered() {
  local agents; agents="$("$toolmesh" list --json "${operate[@]}")" || return 1
  for name in install-c install-java install-node install-python; do
    grep -q "\"name\": *\"$name\"" <<<"$agents" || return 1
  done
}
wait_for 90 "all four agents to register" all_registered
phase_done "mesh start"

step "the call: py_chain (Python) → node_step (Node) → java_step (Java) → c_square (C)"
result=""
deadline=$((SECONDS + 20))
# The agents' topologies catch up with the registry within a heartbeat; until then a hop may not
# resolve its dependency yet, so the call is retried for a bounded time.
until result="$("$toolmesh" call py_chain '{"n": 7}' "${operate[@]}" 2>"$work/call.err")" && [[ "$result" == "$EXPECTED" ]]; do
  [[ $SECONDS -lt $deadline ]] || fail "toolmesh call py_chain '{\"n\": 7}' gave '${result}' ($(cat "$work/call.err")), expected $EXPECTED"
  sleep 0.5
done
step "py_chain(7) = $result (expected $EXPECTED: ((7 * 7) + 1) * 2 + 3)"
phase_done call
step "passed in $((SECONDS - started)) s"
