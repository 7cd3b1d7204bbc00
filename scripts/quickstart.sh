#!/usr/bin/env bash
# Builds Plexus and runs the first tutorial on this machine: the hello and world apps
# find each other through one Plexus router with file-based discovery. Prints the
# walk-through, then keeps running until Ctrl-C, which stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
cargo build --release -q -p plexus -p plexus-examples
bin=target/release

work=$(mktemp -d -t plexus-quickstart.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

for port in 4140 9990 7777 7778 7779; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port on 127.0.0.1 is already in use; stop what uses it and try again" >&2
    exit 1
  fi
done

mkdir -p "$work/disco"
echo "127.0.0.1 7777" > "$work/disco/hello"
echo "127.0.0.1 7778" > "$work/disco/world-v1"
echo "127.0.0.1 7779" > "$work/disco/world-v2"
cat > "$work/plexus.yaml" <<YAML
admin:
  ip: 127.0.0.1
  port: 9990
namers:
- kind: io.l5d.fs
  rootDir: $work/disco
routers:
- protocol: http
  label: outgoing
  dtab: |
    /srv         => /#/io.l5d.fs ;
    /host        => /srv ;
    /svc         => /host ;
    /host/world  => /srv/world-v1 ;
  servers:
  - ip: 127.0.0.1
    port: 4140
YAML

POD_IP=127.0.0.1 http_proxy=127.0.0.1:4140 "$bin/helloworld" -addr 127.0.0.1:7777 -text Hello -target world 2>"$work/hello.log" & pids+=($!)
POD_IP=127.0.0.1 TARGET_WORLD=world "$bin/helloworld" -addr 127.0.0.1:7778 2>"$work/world.log" & pids+=($!)
POD_IP=127.0.0.1 TARGET_WORLD=earth "$bin/helloworld" -addr 127.0.0.1:7779 2>"$work/earth.log" & pids+=($!)
"$bin/plexus" run "$work/plexus.yaml" 2>"$work/plexus.log" & pids+=($!)

for _ in $(seq 100); do
  curl -s -o /dev/null http://127.0.0.1:9990/admin/ping && curl -s -o /dev/null http://127.0.0.1:7777 && break
  sleep 0.1
done

run() { echo "\$ $*"; "$@"; echo; echo; }
echo "Plexus is routing on 127.0.0.1:4140 (admin on http://127.0.0.1:9990/)."
echo
run curl -s -x http://127.0.0.1:4140 http://hello
echo "# A per-request override, propagated by hello to its own call to world:"
run curl -s -x http://127.0.0.1:4140 -H 'l5d-dtab: /host/world => /srv/world-v2' http://hello
echo "# How /svc/world resolves:"
run "$bin/plexus" dtab delegate --config "$work/plexus.yaml" --router outgoing '' /svc/world
echo "# Metrics:"
echo "\$ curl -s 'http://127.0.0.1:9990/admin/metrics.json?q=rt/outgoing/service/svc/hello'"
curl -s 'http://127.0.0.1:9990/admin/metrics.json?q=rt/outgoing/service/svc/hello'; echo; echo
echo "Try it yourself: http_proxy=127.0.0.1:4140 curl -s http://hello"
echo "Service files are in $work/disco (edit one and traffic moves within a second)."
echo "Press Ctrl-C to stop."
wait "${pids[3]}"
