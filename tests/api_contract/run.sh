#!/usr/bin/env bash
# The API contract check: schemathesis (pinned in requirements.txt) runs
# every check against a real server (debug build, fresh data directory,
# rate limits off so it reaches the handlers) with an admin API key, from
# the OpenAPI document the server serves. Any failure fails the run.
#   tests/api_contract/run.sh [extra schemathesis arguments]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target_dir="${CARGO_TARGET_DIR:-$root/target}"
deps="$target_dir/api-contract-pydeps"
python3 -m pip install --quiet --disable-pip-version-check --upgrade \
    --target "$deps" -r "$here/requirements.txt"
server="$target_dir/debug/sync-server"
work=$(mktemp -d)
port=$((18900 + RANDOM % 90))
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
token=$("$server" --data-dir "$work/data" token create --name contract --role admin)
SYNC_HTTP_REQUESTS_PER_SECOND_PER_IP=0 SYNC_HTTP_REQUESTS_PER_SECOND_PER_USER=0 \
    "$server" --data-dir "$work/data" serve --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
pid=$!
python3 - "$port" <<'PY'
import sys, time, urllib.request
for _ in range(200):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=1)
        break
    except OSError:
        time.sleep(0.05)
else:
    sys.exit("the server did not start")
PY
# From the scratch directory: schemathesis keeps a cache where it runs.
cd "$work"
status=0
# One worker: with two, hypothesis (describing a lambda) and schemathesis
# parse Python sources in two threads at once, which CPython 3.11 can fail
# with "SystemError: AST constructor recursion depth mismatch".
PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$deps:$here" SCHEMATHESIS_HOOKS=hooks python3 -m schemathesis.cli run \
    "http://127.0.0.1:$port/api/openapi.json" --url "http://127.0.0.1:$port" \
    -H "Authorization: Bearer $token" --checks all --workers 1 \
    --max-examples "${CONTRACT_EXAMPLES:-50}" --seed "${CONTRACT_SEED:-1}" \
    --no-color "$@" || status=$?
if [ $status -ne 0 ]; then
    echo "--- server log (last 40 lines) ---"
    tail -40 "$work/server.log"
fi
exit $status
