#!/usr/bin/env bash
# Builds every release artifact into dist/ (gitignored), as users receive them:
#
#   bash scripts/dist.sh                                   # the release profile (fat LTO: slow)
#   TOOLMESH_DIST_PROFILE=dist-fast bash scripts/dist.sh   # the same artifacts, built faster (CI's install test)
#   bash scripts/install-test.sh                           # then: install them outside the repo, no cargo
#
#   dist/python/toolmesh-VERSION-cp310-abi3-manylinux_2_17_x86_64.whl
#                       the Python package (abi3: CPython >= 3.10); installing it also puts the
#                       `toolmesh` CLI on the environment's PATH
#   dist/npm/toolmesh-VERSION.tgz, dist/npm/toolmesh-linux-x64-gnu-VERSION.tgz
#                       the npm package and its prebuilt addon for linux-x64-gnu
#                       (bindings-node/scripts/dist.mjs)
#   dist/maven/         a Maven file repository with dev.toolmesh:toolmesh:VERSION: the jar carrying
#                       the JNI library, its -sources and -javadoc jars, and its POM (Jackson)
#   dist/c/             include/toolmesh.h, lib/libtoolmesh.so, lib/libtoolmesh.a and
#                       lib/pkgconfig/toolmesh.pc (plus toolmesh-static.pc to link the .a)
#   dist/bin/toolmesh   the CLI: registry, certs, list, call
#   dist/SHA256SUMS     a checksum per file
#
# glibc floor: every native file (the wheel's module and CLI, the npm addon, the JNI library in the
# jar, libtoolmesh and the CLI) is linked by zig against glibc 2.17's symbols (manylinux_2_17 / manylinux2014: any x86-64 Linux distribution
# from 2014 on: RHEL/CentOS 7+, Debian 8+, Ubuntu 14.04+); the summary at the end prints the
# glibc version each native file actually needs, measured from its symbol versions.
#
# Environment:
#   TOOLMESH_DIST_PROFILE  cargo profile: release (default) or dist-fast (Cargo.toml: release
#                          without LTO, parallel codegen; CI uses it to keep the build short)
#   CARGO_TARGET_DIR       cargo's output, shared with the other scripts (~/.cache/toolmesh/target)
#   TOOLMESH_TOOLS_DIR     where maturin and zig are installed (~/.cache/toolmesh/tools)
# Needs cargo, python3, a JDK 17+ with Maven, and Node 18+ with npm (the npm packages).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PROFILE="${TOOLMESH_DIST_PROFILE:-release}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/toolmesh/target}"
DIST="$ROOT/dist"
TOOLS_DIR="${TOOLMESH_TOOLS_DIR:-$HOME/.cache/toolmesh/tools}"
# Pinned: the glibc floor and the wheel's tags depend on them.
MATURIN_VERSION=1.16.0
ZIG_VERSION=0.15.2
GLIBC_FLOOR=2.17
TRIPLE=x86_64-unknown-linux-gnu
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"

step() { echo "dist: $*"; }
fail() { echo "dist: error: $*" >&2; exit 1; }

case "$PROFILE" in
  release | dist-fast) ;;
  *) fail "TOOLMESH_DIST_PROFILE=$PROFILE: use release (what ships) or dist-fast (the same, built faster)" ;;
esac
[[ "$(uname -sm)" == "Linux x86_64" ]] || fail "dist builds linux x86-64 artifacts and must run on linux x86-64 (this is $(uname -sm))"

scripts/setup-system.sh
if ! command -v javac >/dev/null || ! command -v mvn >/dev/null; then
  step "installing a JDK and Maven"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null
fi
command -v node >/dev/null && command -v npm >/dev/null || fail "node and npm are missing: scripts/node-env.sh installs them"

# maturin builds the wheel and, through its `maturin zig` wrappers, lets zig link every native
# artifact against an old glibc's symbols: no manylinux container needed.
TOOLS_VENV="$TOOLS_DIR/dist-venv"
if [[ "$(cat "$TOOLS_VENV/.versions" 2>/dev/null)" != "maturin $MATURIN_VERSION zig $ZIG_VERSION" ]]; then
  step "installing maturin $MATURIN_VERSION and zig $ZIG_VERSION into $TOOLS_VENV"
  rm -rf "$TOOLS_VENV"
  python3 -m venv "$TOOLS_VENV"
  "$TOOLS_VENV/bin/pip" install --quiet --disable-pip-version-check "maturin==$MATURIN_VERSION" "ziglang==$ZIG_VERSION"
  echo "maturin $MATURIN_VERSION zig $ZIG_VERSION" >"$TOOLS_VENV/.versions"
fi
MATURIN="$TOOLS_VENV/bin/maturin"

# The compiler, archiver and linker of the target: zig for x86_64-linux-gnu.$GLIBC_FLOOR. Built
# for an explicit --target, so build scripts and proc macros still use the host's toolchain.
# Exported: bindings-node/scripts/dist.mjs builds the addon for the same --target, so it gets
# the same floor.
ZIG_WRAPPERS="$CARGO_TARGET_DIR/zig-glibc-$GLIBC_FLOOR"
mkdir -p "$ZIG_WRAPPERS"
write_wrapper() { # write_wrapper NAME MATURIN-ZIG-ARGUMENTS...
  local name=$1; shift
  cat >"$ZIG_WRAPPERS/$name.tmp" <<EOF
#!/bin/sh
export CARGO_ZIGBUILD_ZIG_COMMAND="$TOOLS_VENV/bin/python3" CARGO_ZIGBUILD_ZIG_COMMAND_ARGS='-m ziglang'
exec "$MATURIN" zig $* "\$@"
EOF
  chmod +x "$ZIG_WRAPPERS/$name.tmp"
  # Rewritten only when changed: cargo reruns the C builds (ring) when a tool's path or contents change.
  if cmp -s "$ZIG_WRAPPERS/$name.tmp" "$ZIG_WRAPPERS/$name"; then rm "$ZIG_WRAPPERS/$name.tmp"; else mv "$ZIG_WRAPPERS/$name.tmp" "$ZIG_WRAPPERS/$name"; fi
}
write_wrapper cc cc -- -g -fno-sanitize=all -target "x86_64-linux-gnu.$GLIBC_FLOOR"
write_wrapper c++ c++ -- -g -fno-sanitize=all -target "x86_64-linux-gnu.$GLIBC_FLOOR"
write_wrapper ar ar --
write_wrapper ranlib ranlib --
export CC_x86_64_unknown_linux_gnu="$ZIG_WRAPPERS/cc" CXX_x86_64_unknown_linux_gnu="$ZIG_WRAPPERS/c++" \
  AR_x86_64_unknown_linux_gnu="$ZIG_WRAPPERS/ar" RANLIB_x86_64_unknown_linux_gnu="$ZIG_WRAPPERS/ranlib" \
  CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER="$ZIG_WRAPPERS/cc"
OUT="$CARGO_TARGET_DIR/$TRIPLE/$PROFILE"

staged_cli="$ROOT/bindings-python/python/toolmesh/_bin"
cleanup() { rm -rf "$staged_cli"; }
trap cleanup EXIT

rm -rf "$DIST"
mkdir -p "$DIST"/{python,npm,maven,bin,c/include,c/lib/pkgconfig}
started=$SECONDS

step "building the CLI, the C library and the JNI library ($PROFILE profile, glibc $GLIBC_FLOOR symbols; target dir $CARGO_TARGET_DIR)"
cargo build --locked --quiet --target "$TRIPLE" --profile "$PROFILE" -p toolmesh-cli -p toolmesh-ffi -p toolmesh-java

step "bin: the toolmesh CLI"
install -m 0755 "$OUT/toolmesh" "$DIST/bin/toolmesh"

step "c: libtoolmesh.so and .a, toolmesh.h, pkg-config files"
install -m 0644 include/toolmesh.h "$DIST/c/include/toolmesh.h"
install -m 0755 "$OUT/libtoolmesh.so" "$DIST/c/lib/libtoolmesh.so"
install -m 0644 "$OUT/libtoolmesh.a" "$DIST/c/lib/libtoolmesh.a"
# The prefix is found from the .pc file's own place (pcfiledir), so dist/c works wherever it is
# copied. Libs.private: what Rust's standard library needs from the system when libtoolmesh.a is
# linked (rustc --print native-static-libs for this target).
static_libs="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"
write_pc() { # write_pc FILE NAME LIBS [PRIVATE-LIBS]
  cat >"$1" <<EOF
prefix=\${pcfiledir}/../..
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: $2
Description: toolmesh C ABI: MCP agents in a service mesh (mutual TLS, discovery, tracing)
Version: $VERSION
Cflags: -I\${includedir}
Libs: $3
EOF
  [[ -z "${4:-}" ]] || echo "Libs.private: $4" >>"$1"
}
# Shared: -ltoolmesh picks libtoolmesh.so (the program then needs it at run time: an rpath or
# LD_LIBRARY_PATH naming \${libdir}). Static: toolmesh-static names the archive itself, since
# -ltoolmesh would pick the .so even with --static.
write_pc "$DIST/c/lib/pkgconfig/toolmesh.pc" toolmesh '-L${libdir} -ltoolmesh' "$static_libs"
write_pc "$DIST/c/lib/pkgconfig/toolmesh-static.pc" toolmesh-static "\${libdir}/libtoolmesh.a $static_libs"

step "python: the abi3 wheel with the CLI as its \`toolmesh\` command"
mkdir -p "$staged_cli"
install -m 0755 "$OUT/toolmesh" "$staged_cli/toolmesh"
build_log="$(mktemp)"
if ! (cd bindings-python && "$MATURIN" build --locked --target "$TRIPLE" --profile "$PROFILE" \
      --compatibility "manylinux_${GLIBC_FLOOR/./_}" --out "$DIST/python") >"$build_log" 2>&1; then
  cat "$build_log" >&2; rm -f "$build_log"
  fail "maturin could not build the wheel (output above)"
fi
rm -f "$build_log"
cleanup

step "maven: dev.toolmesh:toolmesh:$VERSION (jar with the JNI library, sources, javadoc, POM) into a file repository"
# The JNI library is the one just built (exec.skip: the POM's own cargo step would build another
# without the glibc floor); tests are neither compiled nor run here.
mvn -B -ntp -q -Dstyle.color=never -f bindings-java/pom.xml clean deploy -Prelease-artifacts -Dmaven.test.skip=true -Dexec.skip=true \
  -Dcargo.target.dir="$CARGO_TARGET_DIR/$TRIPLE" -Dtoolmesh.cargoProfile="$PROFILE" \
  -DaltDeploymentRepository="toolmesh-dist::file://$DIST/maven"
jar_file="$DIST/maven/dev/toolmesh/toolmesh/$VERSION/toolmesh-$VERSION.jar"
[[ -f "$jar_file" ]] || fail "$jar_file was not deployed"
# (grep reads all of the listing: with -q, unzip could die of SIGPIPE and fail the pipeline)
unzip -Z1 "$jar_file" | grep -x "native/linux-x86_64/libtoolmesh_jni.so" >/dev/null \
  || fail "$jar_file does not carry native/linux-x86_64/libtoolmesh_jni.so"

step "npm: the toolmesh package and its linux-x64-gnu addon package"
node bindings-node/scripts/dist.mjs --out "$DIST/npm" --profile "$PROFILE"
for package in "toolmesh-$VERSION.tgz" "toolmesh-linux-x64-gnu-$VERSION.tgz"; do
  [[ -f "$DIST/npm/$package" ]] || fail "bindings-node/scripts/dist.mjs did not write dist/npm/$package"
done

(cd "$DIST" && find . -type f ! -name SHA256SUMS -printf '%P\n' | sort | xargs sha256sum >SHA256SUMS)

# The newest glibc symbol version FILE needs (its floor), or "-" for a file that needs none.
glibc_floor() {
  objdump -T "$1" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1 | grep . || echo "-"
}
# Native files inside the archives, unpacked to measure them.
inspect="$(mktemp -d)"
trap 'cleanup; rm -rf "$inspect"' EXIT
for wheel in "$DIST"/python/*.whl; do unzip -q -o "$wheel" -d "$inspect/wheel"; done
unzip -q -o "$jar_file" 'native/*' -d "$inspect/jar"
for tarball in "$DIST"/npm/*.tgz; do [[ -e "$tarball" ]] && tar -xzf "$tarball" -C "$inspect" --one-top-level="npm-$(basename "$tarball" .tgz)"; done
echo
echo "dist: built in $((SECONDS - started)) s ($PROFILE profile) into $DIST"
(cd "$DIST" && find . -type f -printf '%P\n' | sort | while read -r file; do
  printf '  %-80s %8s\n' "$file" "$(numfmt --to=iec --suffix=B "$(stat -c %s "$file")")"
done)
echo "glibc floor (newest glibc symbol version needed) of each native file:"
too_new=0
while read -r file; do
  floor="$(glibc_floor "$file")"
  printf '  %-72s glibc %s\n' "${file#"$inspect"/}" "$floor"
  [[ "$floor" == "-" ]] || [[ "$(printf '%s\n%s\n' "$floor" "$GLIBC_FLOOR" | sort -V | tail -1)" == "$GLIBC_FLOOR" ]] || too_new=1
done < <(find "$DIST/bin" "$DIST/c/lib" "$inspect" -type f \( -name '*.so' -o -name '*.node' -o -name toolmesh \) | sort)
[[ $too_new -eq 0 ]] || fail "a native file needs a glibc newer than $GLIBC_FLOOR (list above)"
