#!/usr/bin/env bash
# Sets up the Node toolchain for toolmesh, idempotently: bindings-node's pinned dev dependencies
# (from its package-lock.json), the native addon built in debug into the workspace's cargo target
# dir ($CARGO_TARGET_DIR, else ./target), the TypeScript API, and examples/node's link to the
# package. Then: npm --prefix bindings-node test
# (the binding's suite and tests/node, which also need the CLI and scripts/python-env.sh's .venv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGE="$ROOT/bindings-node"

step() { echo "node-env: $*"; }

command -v node >/dev/null && command -v npm >/dev/null || {
  echo "node-env: node and npm are missing; install Node.js 20.17 or later" >&2
  exit 1
}
node -e 'const [major, minor] = process.versions.node.split(".").map(Number);
  if (major < 20 || (major === 20 && minor < 17)) { console.error(`node-env: Node ${process.version} is too old; toolmesh needs 20.17 or later`); process.exit(1); }'

# Installs exactly what package-lock.json pins; skipped while that lock file is the one installed.
# Not `npm ci`: this npm writes lock files that record only this platform's optional packages,
# and its `npm ci` then refuses them.
STAMP="$PACKAGE/node_modules/.toolmesh-lock.sha256"
LOCK_SUM="$(sha256sum "$PACKAGE/package-lock.json" | cut -d' ' -f1)"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$LOCK_SUM" ]]; then
  step "installing bindings-node's dev dependencies"
  # --ignore-scripts: the package's own install script would build the addon in release mode.
  (cd "$PACKAGE" && npm install --no-save --ignore-scripts --include=dev --no-audit --no-fund --loglevel=error)
  echo "$LOCK_SUM" > "$STAMP"
fi

step "building the addon (debug, target dir ${CARGO_TARGET_DIR:-target}) and the TypeScript API"
(cd "$PACKAGE" && node scripts/build.mjs)

step "linking examples/node to the package"
(cd "$ROOT/examples/node" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
