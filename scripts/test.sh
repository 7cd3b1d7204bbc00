#!/usr/bin/env bash
# Runs the whole Plexus test suite on a fresh machine: installs what the tests need,
# then builds once and runs every test (unit, property, conformance, CLI end to end).
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests use, installed only if missing: curl drives the
# end-to-end tests as a user would; promtool (package prometheus) checks the
# Prometheus exposition, and is required rather than skipped here; headless
# Chromium and chromedriver load the dashboard (tests/dashboard).
packages=(curl prometheus chromium chromium-driver)
export PLEXUS_REQUIRE_PROMTOOL=1
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

cargo test --workspace --locked
