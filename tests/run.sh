#!/usr/bin/env bash
# The one test command: installs what the tests need, builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# Builds here start clean or from a cache: incremental state only costs disk.
export CARGO_INCREMENTAL=0

# Formatting first: it takes seconds, and no build is spent on a tree
# rustfmt would change.
cargo fmt --all --check
cargo fmt --manifest-path fuzz/Cargo.toml --check

need_apt=()
command -v node >/dev/null || need_apt+=(nodejs npm)
# PostgreSQL server binaries: the PostgreSQL store tests start their own
# throwaway clusters on loopback (tests/src/lib.rs, PgCluster) and stop them.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
# The mobile binding tests: Python runs the generated module; Kotlin runs on
# the JVM through JNA (Debian's libjna-java); the Swift check needs gcc and nm.
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
[ -f /usr/share/java/jna.jar ] || need_apt+=(libjna-java)
command -v nm >/dev/null || need_apt+=(binutils)
# promtool (Debian's prometheus package) checks a real scrape of /metrics.
command -v promtool >/dev/null || need_apt+=(prometheus)
# The desktop app (Tauri 2 on WebKitGTK) and its end-to-end test: a virtual
# display, the WebKit WebDriver that tauri-driver drives.
for pkg in libwebkit2gtk-4.1-dev libgtk-3-dev librsvg2-dev libsoup-3.0-dev webkit2gtk-driver xvfb; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_apt[@]}"
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
command -v tauri-driver >/dev/null || cargo install --locked tauri-driver --version "^2.1"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz --version 0.13.2
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb --version 3.6.0

# npm packages for the interop tests (stock automerge-repo client), from the lockfile.
if [ -f tests/js/package-lock.json ]; then
    (cd tests/js && npm ci --no-audit --no-fund)
fi

# The desktop app's web UI (npm lockfile), checked and unit-tested, then
# built into desktop/dist, which the Tauri binary embeds.
(cd desktop && npm ci --no-audit --no-fund && npx tsc --noEmit && npx vitest run && npx vite build)

# Lints on every crate and its tests (after the desktop's web UI is built:
# the Tauri crate embeds it).
cargo clippy --workspace --all-targets --quiet -- -D warnings

# Binaries the cross-process tests start (sync-server, client test helpers, the desktop app).
cargo build --workspace --bins
# The REST API against its own OpenAPI document: schemathesis, every check,
# an admin key, a fixed seed; any failure fails the run (about 20 s).
tests/api_contract/run.sh
# The mobile library, its generated Python/Kotlin/Swift sources and the
# compiled Kotlin test (kotlinc from the npm lockfile above), and the pinned
# Python packages of the Swift check.
tests/mobile/build.sh
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
python3 -m pip install --quiet --disable-pip-version-check --upgrade \
    --target "$target_dir/mobile-pydeps" -r tests/mobile/requirements.txt
# Criterion benches run once each in test mode, so they cannot rot.
cargo test -p sync-server --bench store --quiet
cargo nextest run --workspace --no-fail-fast "$@"
# The Debian packages of the server (cargo-deb) and the desktop app (Tauri's
# bundler), unpacked and the installed server started (about 2 min). After
# the tests: the bundler rebuilds the desktop binary in its release mode.
tests/packages/check.sh
# Coverage-guided fuzzing (fuzz/, a workspace of its own): every target for
# 20 s from its committed seeds; about 4 min with the instrumented build.
fuzz/run.sh "${FUZZ_SECONDS:-20}"
