#!/usr/bin/env bash
# The one test command: installs what the tests need, builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v node >/dev/null || need_apt+=(nodejs npm)
# PostgreSQL server binaries: the PostgreSQL store tests start their own
# throwaway clusters on loopback (tests/src/lib.rs, PgCluster) and stop them.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_apt[@]}"
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest

# npm packages for the interop tests (stock automerge-repo client), from the lockfile.
if [ -f tests/js/package-lock.json ]; then
    (cd tests/js && npm ci --no-audit --no-fund)
fi

# Binaries the cross-process tests start (sync-server, client test helpers).
cargo build --workspace --bins
# Criterion benches run once each in test mode, so they cannot rot.
cargo test -p sync-server --bench store --quiet
cargo nextest run --workspace --no-fail-fast "$@"
