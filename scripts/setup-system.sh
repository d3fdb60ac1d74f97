#!/usr/bin/env bash
# Installs the system tools the build and tests use, when they are missing.
set -euo pipefail
missing=()
command -v cargo >/dev/null || { echo "setup: cargo is missing; install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
command -v python3 >/dev/null || missing+=(python3 python3-venv)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
# The install test compiles a C agent with `pkg-config --cflags --libs toolmesh`.
command -v pkg-config >/dev/null || missing+=(pkg-config)
# The PostgreSQL store's tests start a real server from Debian's binaries (cli/tests/common/postgres.rs).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
