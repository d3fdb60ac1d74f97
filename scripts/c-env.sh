#!/usr/bin/env bash
# Sets up the C toolchain for toolmesh's C ABI (idempotent): C and C++ compilers, make and
# valgrind from the system's packages, and cbindgen at the pinned version in a cache directory
# outside the clone.
# Sourced by scripts/c-tests.sh; exports CBINDGEN (the pinned cbindgen binary).
set -euo pipefail

# Pinned: include/toolmesh.h is committed, and a different cbindgen writes a different header.
CBINDGEN_VERSION=0.29.4
TOOLS_DIR="${TOOLMESH_TOOLS_DIR:-$HOME/.cache/toolmesh/tools}"
CBINDGEN_ROOT="$TOOLS_DIR/cbindgen-$CBINDGEN_VERSION"
export CBINDGEN="$CBINDGEN_ROOT/bin/cbindgen"

c_env_step() { echo "c-env: $*"; }

c_env_missing=()
command -v cc >/dev/null || c_env_missing+=(gcc)
command -v c++ >/dev/null || c_env_missing+=(g++)
command -v make >/dev/null || c_env_missing+=(make)
command -v valgrind >/dev/null || c_env_missing+=(valgrind)
if [ ${#c_env_missing[@]} -gt 0 ]; then
  c_env_step "installing ${c_env_missing[*]}"
  c_env_sudo=""; [ "$(id -u)" -eq 0 ] || c_env_sudo="sudo"
  $c_env_sudo apt-get update -qq && $c_env_sudo apt-get install -y -qq "${c_env_missing[@]}" >/dev/null
fi

if [[ ! -x "$CBINDGEN" ]]; then
  c_env_step "installing cbindgen $CBINDGEN_VERSION into $CBINDGEN_ROOT"
  # Built in cargo's own temporary directory: the workspace's target dir stays free for the
  # workspace, and its lock is not held while cbindgen compiles.
  env -u CARGO_TARGET_DIR cargo install --quiet --locked --version "$CBINDGEN_VERSION" \
    --root "$CBINDGEN_ROOT" cbindgen
fi
