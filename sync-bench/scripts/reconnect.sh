#!/usr/bin/env bash
# The reconnect bench (20 tablets x 2,000 offline scans come back while a
# door tablet scans), with a fresh server and data directory each run.
#   sync-bench/scripts/reconnect.sh BIN_DIR NAME          everything unpinned
#   DOOR_CPU=1 sync-bench/scripts/reconnect.sh BIN_DIR NAME
#       the door tablet on CPU 1, the server and the other replicas on CPU 0
#       (a real door tablet has a CPU of its own), the 20 tablets' stores on
#       tmpfs (/dev/shm).
# BIN_DIR holds release builds of sync-server and sync-bench. Prints the
# bench's JSON report to stdout and keeps logs in /tmp/reconnect-NAME/.
set -euo pipefail
bin=$1 name=$2
work=/tmp/reconnect-$name
rm -rf "$work" && mkdir -p "$work"
pin=()
bench_args=(--mode offline-tablets --clients 20 --scans 2000 --timeout-secs 1800)
if [ -n "${DOOR_CPU:-}" ]; then
    pin=(taskset -c 0)
    bench_args+=(--door-cpu "$DOOR_CPU" --tablet-dir /dev/shm/reconnect-$name)
    rm -rf /dev/shm/reconnect-$name && mkdir -p /dev/shm/reconnect-$name
fi
port=$((18100 + RANDOM % 800))
token=$("$bin/sync-server" --data-dir "$work/server" token create --name bench --role admin)
SYNC_HTTP_REQUESTS_PER_SECOND_PER_IP=0 "${pin[@]}" "$bin/sync-server" --data-dir "$work/server" \
    serve --listen 127.0.0.1:$port >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf /dev/shm/reconnect-$name' EXIT
for _ in $(seq 1 50); do
    curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.2
done
"${pin[@]}" "$bin/sync-bench" --url "ws://127.0.0.1:$port/sync" --token "$token" \
    --server-pid $server "${bench_args[@]}" 2>"$work/bench.log"
