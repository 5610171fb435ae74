#!/usr/bin/env bash
# Fuzzing in CI: builds every fuzz target once, replays each target's
# committed corpus (the seeds and every input that once crashed), then fuzzes
# each target for a bounded time, two at once. Fails on any crash (a panic,
# an abort, a timeout, running out of memory) or a corpus input that no
# longer passes. Prints, per target, libFuzzer's executions per second and
# total executions.
#
# Environment:
#   FUZZ_SECONDS     seconds of fuzzing per target (default 20; 0: replay only)
#   FUZZ_JOBS        targets fuzzed at once (default 2: the CI machine's cores)
#   FUZZ_TARGET_DIR  cargo's target dir for the instrumented build
#                    (default fuzz/target, which is gitignored)
#   FUZZ_TARGETS     space-separated subset of targets (default: all)
#   FUZZ_BUILD_ONLY  1: build the targets and stop (CI builds them beside
#                    its other builds, and runs them after the tests)
#
# Stable Rust only: `--sanitizer none` builds with libFuzzer's coverage
# instrumentation and no -Z flag (AddressSanitizer needs a nightly compiler;
# README.md says how to use one). Debug assertions and overflow checks are on.
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
seconds="${FUZZ_SECONDS:-20}"
jobs="${FUZZ_JOBS:-2}"
target_dir="${FUZZ_TARGET_DIR:-$here/target}"
start=$(date +%s)

host="$(rustc -vV | sed -n 's/^host: //p')"
all_targets="$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -vx chorus-fuzz)"
targets="${FUZZ_TARGETS:-$all_targets}"
echo "fuzz: building $(echo $targets | wc -w) targets"
if cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
    cargo fuzz build --sanitizer none --target-dir "$target_dir"
else
    # Without cargo-fuzz (CI): the same build it makes with --sanitizer none,
    # by plain cargo, which saves installing it. `--target` keeps the
    # instrumentation out of build scripts and proc macros, as cargo-fuzz does.
    RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cdebug-assertions -Coverflow-checks" \
        cargo build --release --locked --bins --target "$host" --target-dir "$target_dir"
fi
built=$(date +%s)
echo "fuzz: built in $((built - start)) s"
if [ "${FUZZ_BUILD_ONLY:-0}" = 1 ]; then
    exit 0
fi

bin_dir="$target_dir/$host/release"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# One target: replay its corpus, then fuzz it into a scratch corpus (the
# committed corpus is read, never written). Writes a status line to $work/$t.status.
run_one() {
    local t="$1" bin="$bin_dir/$1" log="$work/$1.log"
    mkdir -p "$work/$t.corpus" "$here/artifacts/$t"
    if ! "$bin" -runs=0 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$here/artifacts/$t/" "corpus/$t" >"$log" 2>&1; then
        echo "FAIL replay" >"$work/$t.status"
        return
    fi
    if [ "$seconds" -gt 0 ]; then
        if ! "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
            -print_final_stats=1 -artifact_prefix="$here/artifacts/$t/" \
            "$work/$t.corpus" "corpus/$t" >>"$log" 2>&1; then
            echo "FAIL fuzz" >"$work/$t.status"
            return
        fi
    fi
    echo "ok" >"$work/$t.status"
}

running=0
for t in $targets; do
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait

failed=0
printf '%-10s %-12s %10s %14s %8s\n' target result exec/s executions rss_mb
for t in $targets; do
    log="$work/$t.log"
    status="$(cat "$work/$t.status" 2>/dev/null || echo "FAIL (no status)")"
    per_sec="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
    total="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
    rss="$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)"
    printf '%-10s %-12s %10s %14s %8s\n' "$t" "$status" "${per_sec:--}" "${total:--}" "${rss:--}"
    if [ "$status" != ok ]; then
        failed=1
        echo "---- $t: the end of libFuzzer's log ----"
        tail -40 "$log"
        echo "---- crashing inputs, if any, are in fuzz/artifacts/$t/ ----"
    fi
done
echo "fuzz: done in $(($(date +%s) - start)) s (build $((built - start)) s)"
if [ "$failed" -ne 0 ]; then
    echo "fuzz: FAILED"
    exit 1
fi
