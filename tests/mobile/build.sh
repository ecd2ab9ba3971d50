#!/usr/bin/env bash
# Builds the mobile library (cdylib + staticlib), generates its Python, Kotlin
# and Swift sources with the workspace's uniffi-bindgen, and compiles the
# Kotlin test against them. Everything lands in $TARGET/mobile (not committed).
# Kotlin needs KOTLINC (tests/js/node_modules/kotlin-compiler) and Debian's
# libjna-java; tests/run.sh installs both.
set -euo pipefail
cd "$(dirname "$0")/../.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
out="$target/mobile"

cargo build -p mobile-bindings -p uniffi-bindgen
lib="$target/debug/libmobile_bindings.so"
rm -rf "$out"
for lang in python kotlin swift; do
    "$target/debug/uniffi-bindgen" generate "$lib" --language "$lang" --no-format \
        --config uniffi.toml --out-dir "$out/$lang" >/dev/null
done
# The generated Python module loads the library from its own directory.
cp "$lib" "$out/python/"
ls "$target/debug/libmobile_bindings.a" >/dev/null

kotlinc="${KOTLINC:-tests/js/node_modules/kotlin-compiler/bin/kotlinc}"
jna=/usr/share/java/jna.jar
if [ -x "$kotlinc" ] && [ -f "$jna" ]; then
    coroutines="$(dirname "$kotlinc")/../lib/kotlinx-coroutines-core-jvm.jar"
    "$kotlinc" -nowarn -language-version 2.0 \
        -cp "$jna:$coroutines" \
        "$out/kotlin/events/sync/core/sync_core.kt" tests/mobile/TabletDay.kt \
        -d "$out/kotlin/tablet-day.jar" 2>&1 | grep -v "^warning" || true
    test -f "$out/kotlin/tablet-day.jar"
else
    echo "kotlinc ($kotlinc) or $jna missing: the Kotlin test cannot be compiled" >&2
    exit 1
fi
echo "bindings in $out"
