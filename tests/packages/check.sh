#!/usr/bin/env bash
# The Debian packages, built and checked (about 2 min warm):
# - the server's (cargo-deb, `[package.metadata.deb]` in sync-server/Cargo.toml)
#   from the debug build already made (a release package is
#   `cargo deb -p sync-server`; the packaging is the same), unpacked into a
#   scratch root (`dpkg-deb -x`): the installed binary's `--version`,
#   `migrate status` and a short `serve` with the packaged configuration, the
#   configuration kept as a conffile, the systemd unit's hardening scored
#   by `systemd-analyze security` (exposure at most 2.5 of 10);
# - the desktop app's (Tauri's bundler, the CLI from desktop/package.json,
#   a debug build): its binary, desktop entry and WebKitGTK dependency.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
out="$target_dir/packages"
rm -rf "$out" && mkdir -p "$out"
scratch=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$scratch"' EXIT
fail() { echo "packages: $*" >&2; exit 1; }

# ---- the server ----
# cargo-deb warns that a dev-profile package is not for release: it is not.
cargo deb -p sync-server --no-build --profile dev -o "$out/" 2>&1 | grep -v "dev profile\|enable debug symbols" || true
deb=$(ls "$out"/sync-server_*_amd64.deb)
[ "$(dpkg-deb --field "$deb" Package)" = sync-server ] || fail "package name"
dpkg-deb --field "$deb" Depends | grep -q libc6 || fail "no computed Depends: $(dpkg-deb --field "$deb" Depends)"
dpkg-deb --ctrl-tarfile "$deb" | tar -xO conffiles | grep -qx /etc/sync-server/sync.toml \
    || fail "the configuration is not a conffile"
dpkg-deb -x "$deb" "$scratch/root"
bin="$scratch/root/usr/bin/sync-server"
config="$scratch/root/etc/sync-server/sync.toml"
unit="$scratch/root/lib/systemd/system/sync-server.service"
[ -x "$bin" ] && [ -f "$config" ] && [ -f "$unit" ] || fail "missing files: $(dpkg-deb -c "$deb")"
version=$("$bin" --version)
[ "$version" = "sync-server $(cargo metadata --no-deps --format-version 1 | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "sync-server"))')" ] \
    || fail "--version says: $version"
data="$scratch/data"
status=$("$bin" --config "$config" --data-dir "$data" migrate status)
echo "$status" | grep -q "^0001 " || fail "migrate status: $status"
# The packaged configuration serves (on another port, JSON logs).
port=$((18700 + RANDOM % 90))
SYNC_LISTEN="127.0.0.1:$port" "$bin" --config "$config" --data-dir "$data" serve >"$scratch/serve.log" 2>&1 &
pid=$!
python3 - "$port" <<'PY' || fail "the installed server did not answer: $(tail -5 "$scratch/serve.log")"
import sys, time, urllib.request
for _ in range(200):
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=1).read()
        assert b"ready" in body, body
        break
    except OSError:
        time.sleep(0.05)
else:
    sys.exit(1)
PY
kill "$pid" && wait "$pid" 2>/dev/null || true
pid=
head -1 "$scratch/serve.log" | python3 -c 'import json,sys; json.loads(sys.stdin.readline())' \
    || fail "the packaged configuration's log_format = json: $(head -1 "$scratch/serve.log")"
for setting in DynamicUser=yes StateDirectory=sync-server ProtectSystem=strict NoNewPrivileges=yes \
    "ExecStart=/usr/bin/sync-server --config /etc/sync-server/sync.toml --data-dir /var/lib/sync-server serve"; do
    grep -qx "$setting" "$unit" || fail "the unit lacks $setting"
done
if command -v systemd-analyze >/dev/null; then
    systemd-analyze security --offline=yes --root="$scratch/root" --threshold=25 sync-server.service \
        >"$scratch/security.txt" 2>&1 || fail "unit exposure: $(grep Overall "$scratch/security.txt")"
    grep Overall "$scratch/security.txt"
else
    echo "packages: systemd-analyze not here, the unit's exposure is not scored"
fi
echo "packages: $(basename "$deb") ok"

# ---- the desktop app ----
(cd desktop && npx tauri build --debug --bundles deb) >"$scratch/tauri.log" 2>&1 \
    || fail "tauri build: $(tail -20 "$scratch/tauri.log")"
ddeb=$(ls "$target_dir"/debug/bundle/deb/*.deb)
cp "$ddeb" "$out/"
[ "$(dpkg-deb --field "$ddeb" Package)" = sync-admin ] || fail "desktop package name"
dpkg-deb --field "$ddeb" Depends | grep -q libwebkit2gtk-4.1-0 || fail "desktop Depends: $(dpkg-deb --field "$ddeb" Depends)"
contents=$(dpkg-deb -c "$ddeb")
echo "$contents" | grep -q "usr/bin/sync-admin$" || fail "desktop binary: $contents"
echo "$contents" | grep -q "usr/share/applications/.*\.desktop$" || fail "desktop entry: $contents"
echo "packages: $(basename "$ddeb") ok"
