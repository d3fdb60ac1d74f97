#!/usr/bin/env bash
# Sets up the Python toolchain for toolmesh: .venv at the repo root with the build and test
# tools, and the toolmesh wheel built from bindings-python/ and installed into it. Idempotent.
# Then: .venv/bin/python -m pytest bindings-python/tests tests/python -q
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
DIST="$ROOT/bindings-python/dist"
# Pinned: the interop tests speak to agents with this exact MCP SDK client.
PACKAGES=("maturin>=1.9,<2" "pytest>=8" "mcp==2.3.0" "cryptography>=42" "pydantic>=2" "prometheus_client>=0.20")

step() { echo "python-env: $*"; }

if [[ ! -x "$VENV/bin/python" ]]; then
  step "creating $VENV"
  python3 -m venv "$VENV"
fi

step "installing ${PACKAGES[*]}"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]}"

# maturin honours CARGO_TARGET_DIR; without it, the workspace's shared ./target is used.
step "building the toolmesh wheel into ${DIST#"$ROOT"/} (target dir ${CARGO_TARGET_DIR:-target})"
rm -f "$DIST"/toolmesh-*.whl
# maturin and cargo talk a lot even with --quiet: their output is shown only when the build fails.
build_log="$(mktemp)"
if ! (cd "$ROOT/bindings-python" && "$VENV/bin/maturin" build --quiet --profile dev --out "$DIST" \
      --interpreter "$VENV/bin/python") >"$build_log" 2>&1; then
  cat "$build_log" >&2
  rm -f "$build_log"
  exit 1
fi
rm -f "$build_log"

step "installing $(basename "$DIST"/toolmesh-*.whl)"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$DIST"/toolmesh-*.whl
