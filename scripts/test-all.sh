#!/usr/bin/env bash
# Sets up what the tests need (idempotent) and runs every suite: Rust unit and integration
# tests, the C ABI suite, the Python, Node and Java bindings' suites, and the cross-process and
# cross-language end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# One cargo target directory for the workspace and the bindings, kept outside the clone so a
# fresh clone reuses earlier builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/toolmesh/target}"
export TOOLMESH_BIN="$CARGO_TARGET_DIR/debug/toolmesh"

scripts/setup-system.sh
echo "== docs: the module map in docs/architecture.md names every module there is"
python3 scripts/module-map.py --check
echo "== rust: formatting (rustfmt.toml), as cargo fmt --all writes it"
cargo fmt --all --check
echo "== rust: unit and integration tests"
cargo test --locked
echo "== rust: the Java binding's unit tests (not a default member, so cargo test above skips it)"
cargo test --locked -p toolmesh-java --lib
echo "== rust: clippy over every crate and target (bindings and bench too), warnings are errors"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "== building the toolmesh CLI"
cargo build --locked -p toolmesh-cli
echo "== C: header drift, C99/C++11 compile, the C suite under AddressSanitizer and valgrind"
scripts/c-tests.sh
scripts/python-env.sh
echo "== python: binding suite and end-to-end tests"
.venv/bin/python -m pytest bindings-python/tests tests/python -q -p no:cacheprovider
echo "== MCP conformance: the official suite against core's and the Python fixture agent; any failing check fails"
CONFORMANCE_STRICT=1 scripts/conformance.sh --agent rust
CONFORMANCE_STRICT=1 scripts/conformance.sh --agent python
scripts/node-env.sh
echo "== node: binding suite and cross-language tests (Node <-> Python)"
npm --prefix bindings-node test
echo "== MCP conformance: the same suite against the Node fixture agent"
CONFORMANCE_STRICT=1 scripts/conformance.sh --agent node
scripts/java-env.sh
echo "== java: binding suite and cross-language tests (Java <-> Python, Java <-> Node)"
mvn -B -ntp -f bindings-java/pom.xml test -Dtoolmesh.cargoProfile=debug
echo "== MCP conformance: the same suite against the Java fixture agent"
CONFORMANCE_STRICT=1 scripts/conformance.sh --agent java
echo "== cross-language: one table of cases, every caller/callee pair of Python, Node, Java and C"
scripts/cross-tests.sh
echo "== MCP conformance: the same suite against the C fixture agent (jansson, installed by cross-tests.sh)"
CONFORMANCE_STRICT=1 scripts/conformance.sh --agent c
echo "== demo: the README's demo command, its printed results checked"
demo_log="$(mktemp)"
bash scripts/demo.sh | tee "$demo_log"
for expected in "calc-py:sum3(1, 2, 3) = 6" "calc-node:sum3(1, 2, 3) = 6" "calc-java:sum3(1, 2, 3) = 6" "mean3(1, 2, 6) = 3.0"; do
  grep -qF "$expected" "$demo_log" || { echo "demo: expected '$expected' in its output" >&2; exit 1; }
done
rm -f "$demo_log"
echo "== release artifacts: dist/ built (dist-fast: release without LTO), then installed outside the repo with no cargo and called Python -> Node -> Java -> C"
TOOLMESH_DIST_PROFILE=dist-fast bash scripts/dist.sh
bash scripts/install-test.sh
echo "== README: every command in it, walked in a fresh clone with the dist/ just built"
python3 tests/readme/walk.py
