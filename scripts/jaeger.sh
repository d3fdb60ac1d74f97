#!/usr/bin/env bash
# Builds Jaeger (the all-in-one `jaeger` binary, v1.75.0) from the Go module proxy for the
# tracing test (tests/cross/test_tracing.py), once: it is kept outside the clone, in
# $HOME/.cache/toolmesh/jaeger, and reused while its version does not change. Idempotent; prints
# the binary's path on its last line. Needs Go 1.24 or later (Jaeger's go.mod asks for it).
set -euo pipefail
VERSION=1.75.0
DIR="${TOOLMESH_JAEGER_DIR:-$HOME/.cache/toolmesh/jaeger}"
BIN="$DIR/jaeger-$VERSION"
if [[ -x "$BIN" ]]; then
  echo "$BIN"
  exit 0
fi
# Go's own installer puts it in /usr/local/go, which a non-login shell may not have on PATH.
command -v go >/dev/null || [[ ! -x /usr/local/go/bin/go ]] || export PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "jaeger: Go is missing; install Go 1.24 or later (https://go.dev/dl) to build Jaeger for the tracing test" >&2; exit 1; }
echo "== jaeger: building v$VERSION with $(go version | cut -d' ' -f3) (minutes, once)" >&2
# A scratch module whose only tool is Jaeger: go get resolves Jaeger's whole dependency graph
# from the module proxy, then go build makes the binary.
module="$DIR/module"
mkdir -p "$module"
cd "$module"
[[ -f go.mod ]] || go mod init toolmesh.dev/jaeger-build >/dev/null 2>&1
go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@v$VERSION" >&2
# Written under a temporary name first: an interrupted build never leaves a binary that looks done.
go build -o "$BIN.partial" github.com/jaegertracing/jaeger/cmd/jaeger >&2
mv "$BIN.partial" "$BIN"
echo "$BIN"
