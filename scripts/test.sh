#!/usr/bin/env bash
# Runs the whole Plexus test suite on a fresh machine: installs what the tests need,
# then builds once and runs every test (unit, property, conformance, CLI end to end).
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests use. None are needed by the naming core yet; end-to-end
# suites add theirs here (curl, nginx, promtool, chromium, ...), installed only if missing.
packages=()
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

cargo test --workspace --locked
