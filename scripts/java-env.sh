#!/usr/bin/env bash
# Sets up the Java toolchain for toolmesh (idempotent): a JDK 17 and Maven when missing, the JNI
# library and the toolmesh CLI built by cargo in debug (honouring $CARGO_TARGET_DIR, default
# ./target), and the dev.toolmesh:toolmesh:0.1.0 jar, which carries the library, installed into
# ~/.m2; then examples/java is compiled against it, as a user's project would be.
# Then: mvn -B -f bindings-java/pom.xml test
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
(cd "$ROOT" && cargo build --quiet -p toolmesh-java -p toolmesh-cli)

step "installing dev.toolmesh:toolmesh:0.1.0 into the local Maven repository"
mvn -q -B -f "$ROOT/bindings-java/pom.xml" install -DskipTests

step "compiling examples/java against it"
mvn -q -B -f "$ROOT/examples/java/pom.xml" compile
