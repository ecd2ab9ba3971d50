#!/usr/bin/env bash
# Builds every fuzz target (cargo fuzz, libFuzzer, no sanitizer: the code is
# safe Rust, and what is looked for is panics and broken invariants) and
# runs each for SECONDS (default 20) from its committed seed corpus, into a
# scratch corpus so the tree stays clean. Any crash fails the run; libFuzzer
# leaves the input in fuzz/artifacts/<target>/.
#   fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-20}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(wire_message doc_ingest settings_json attendee_csv client_receive ticket_code)
# cargo fuzz wants nightly flags for its sanitizers only; with `-s none` the
# flags it passes are stable ones.
cargo fuzz build -s none
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target" "artifacts/$target"
    echo "fuzz: $target for ${seconds}s"
    # -timeout: one input taking 10 s is a hang, reported as a failure.
    if ! ./target/x86_64-unknown-linux-gnu/release/"$target" "$scratch/$target" "corpus/$target" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="artifacts/$target/" 2> "$scratch/$target.log"; then
        tail -40 "$scratch/$target.log"
        echo "fuzz: $target FAILED (input in fuzz/artifacts/$target/)" >&2
        exit 1
    fi
    grep -E "stat::number_of_executed_units|Done" "$scratch/$target.log" | tr '\n' ' '
    echo
done
