#!/usr/bin/env bash
# Sets up the Java toolchain for toolmesh (idempotent): a JDK 17 and Maven when missing, the JNI
# library and the toolmesh CLI built by cargo in debug (honouring $CARGO_TARGET_DIR, default
# ./target), and the dev.toolmesh:toolmesh:0.1.0 jar, which carries the library, installed into
# ~/.m2; then examples/java is compiled against it, as a user's project would be.
# The jar carries the debug build here (-Dtoolmesh.cargoProfile=debug): a plain `mvn package`
# builds the release one, as shipped, which takes minutes (fat LTO).
# Then: mvn -B -f bindings-java/pom.xml test -Dtoolmesh.cargoProfile=debug
# (the cross-language suite in tests/java also needs .venv from scripts/python-env.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
step() { echo "java-env: $*"; }

if ! command -v javac >/dev/null || ! command -v mvn >/dev/null; then
  step "installing a JDK and Maven"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null
fi

step "building the JNI library and the CLI (target dir ${CARGO_TARGET_DIR:-target})"
(cd "$ROOT" && cargo build --quiet --locked -p toolmesh-java -p toolmesh-cli)

step "installing dev.toolmesh:toolmesh:0.1.0 into the local Maven repository"
mvn -q -B -f "$ROOT/bindings-java/pom.xml" install -DskipTests -Dtoolmesh.cargoProfile=debug
# The jar is what users get: it must carry the library where NativeLibrary looks for it.
JAR="$ROOT/bindings-java/target/toolmesh-0.1.0.jar"
if ! jar tf "$JAR" | grep -x "native/linux-x86_64/libtoolmesh_jni.so" >/dev/null; then
  echo "java-env: $JAR does not contain native/linux-x86_64/libtoolmesh_jni.so" >&2
  exit 1
fi

step "compiling examples/java against it"
mvn -q -B -f "$ROOT/examples/java/pom.xml" compile
