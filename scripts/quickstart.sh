#!/usr/bin/env bash
# Builds Plexus and starts `plexus demo`: the Kubernetes DaemonSet tutorial on this
# machine, as a simulated three-node cluster on loopback (node N on 127.0.N.0/24) with
# one Plexus per node and the tutorial's hello, world-v1, world-v2 and api apps. It
# prints the walk-through, then runs until Ctrl-C, which stops everything it started.
# Extra arguments go to `plexus demo` (see `plexus demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

# The walk-through uses curl.
if ! command -v curl >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl
fi
cargo build --release --locked -q -p plexus -p plexus-examples
exec target/release/plexus demo "$@"
