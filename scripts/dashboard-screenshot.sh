#!/usr/bin/env bash
# Remakes docs/img/dashboard.png: runs the dashboard's browser test (tests/cross/test_dashboard.py)
# with a registry, three agents calling each other and headless Chromium, which saves the page
# once it shows the calls. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
export TOOLMESH_BIN="${TOOLMESH_BIN:-$TARGET/debug/toolmesh}"
[[ -x "$TOOLMESH_BIN" ]] || cargo build --locked -p toolmesh-cli
.venv/bin/python -c "import toolmesh" 2>/dev/null || scripts/python-env.sh
TOOLMESH_CHROMIUM="$(scripts/chromium.sh | tail -n 1)"
export TOOLMESH_CHROMIUM
export TOOLMESH_DASHBOARD_SCREENSHOT="$ROOT/docs/img/dashboard.png"
.venv/bin/python -m pytest tests/cross/test_dashboard.py -q -p no:cacheprovider \
  -k test_the_page_shows_the_running_agents_and_the_calls_between_them "$@"
echo "dashboard-screenshot: wrote ${TOOLMESH_DASHBOARD_SCREENSHOT#"$ROOT"/}"
