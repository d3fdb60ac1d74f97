#!/usr/bin/env bash
# Installs Debian's chromium when it is missing (the dashboard's browser test and screenshot run it
# headless) and prints its path. Idempotent.
set -euo pipefail
if ! command -v chromium >/dev/null; then
  echo "chromium: installing Debian's chromium" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
command -v chromium
