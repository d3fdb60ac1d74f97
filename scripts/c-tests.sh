#!/usr/bin/env bash
# Builds and tests toolmesh's C ABI: checks that include/toolmesh.h matches what cbindgen
# generates from ffi/src, then runs the C suite (tests/c, which also runs the C example as a
# child process) under AddressSanitizer and under valgrind; any leak or memory error fails.
#   scripts/c-tests.sh                  everything
#   scripts/c-tests.sh --update-header  rewrite include/toolmesh.h, then everything
# Respects CARGO_TARGET_DIR; TOOLMESH_BIN overrides the CLI the suite runs (default: the debug
# build in the target dir).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/c-env.sh

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
export TOOLMESH_BIN="${TOOLMESH_BIN:-$TARGET/debug/toolmesh}"
BUILD="$TARGET/c-tests"
step() { echo "== c: $*"; }

step "building libtoolmesh and the toolmesh CLI"
cargo build --locked -p toolmesh-ffi -p toolmesh-cli

step "checking include/toolmesh.h against cbindgen $CBINDGEN_VERSION"
generated="$(mktemp)"
trap 'rm -f "$generated"' EXIT
"$CBINDGEN" --quiet --config ffi/cbindgen.toml --crate toolmesh-ffi --output "$generated" ffi
if [[ "${1:-}" == "--update-header" ]]; then
  cp "$generated" include/toolmesh.h
elif ! diff -u include/toolmesh.h "$generated"; then
  echo "c-tests: include/toolmesh.h is out of date with ffi/src; run scripts/c-tests.sh --update-header and commit it" >&2
  exit 1
fi

step "compiling the header alone as C99 and as C++11"
for compiler in "cc -std=c99 -x c" "c++ -std=c++11 -x c++"; do
  printf '#include "toolmesh.h"\nint main(void) { return toolmesh_result_name(TOOLMESH_OK) == 0; }\n' |
    $compiler -Wall -Wextra -Werror -pedantic -fsyntax-only -Iinclude -
done

# Both checkers must see the same suite pass; each gets its own build of the C code.
step "AddressSanitizer"
mkdir -p "$BUILD/asan"
make -s -C examples/c OUT="$BUILD/asan" LINK=static CFLAGS_EXTRA="-fsanitize=address -fno-omit-frame-pointer" LDFLAGS_EXTRA=-fsanitize=address
make -s -C tests/c OUT="$BUILD/asan" SANITIZE=address
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 TOOLMESH_EXAMPLE="$BUILD/asan/squares" "$BUILD/asan/test_toolmesh"

step "valgrind"
mkdir -p "$BUILD/valgrind"
make -s -C examples/c OUT="$BUILD/valgrind" LINK=static
make -s -C tests/c OUT="$BUILD/valgrind"
VALGRIND="valgrind --quiet --error-exitcode=1 --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite --suppressions=$ROOT/tests/c/valgrind.supp"
TOOLMESH_EXAMPLE="$BUILD/valgrind/squares" TOOLMESH_EXAMPLE_WRAPPER="$VALGRIND" $VALGRIND "$BUILD/valgrind/test_toolmesh"
