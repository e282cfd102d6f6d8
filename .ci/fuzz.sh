#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of outside bytes, on the stable
# toolchain: libFuzzer (from the libfuzzer-sys crate) with LLVM
# SanitizerCoverage instrumentation (stable -C flags; no sanitizer runtime).
#
#   bash .ci/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   bash .ci/fuzz.sh --build     (only build the harness; .ci/run does this
#                                 early, at low priority, beside the tests)
#
# Defaults: 15 s for each of the targets listed in tests/fuzz/targets.rs.
# The corpus lives in target/fuzz/corpus/<target> (seeded from the library
# and fixtures/esdk-vectors, grown by each run); a crash is copied to
# fixtures/fuzz/<target>/ and fails the script: fix it, keep the file (the
# normal test suite replays it), commit both. Figures per target are printed
# at the end (executions, rate, coverage, corpus size).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_ONLY=0
if [ "${1:-}" = "--build" ]; then BUILD_ONLY=1; shift; fi
SECS="${1:-15}"
shift || true
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
OUT="$ROOT/target/fuzz"
BIN="$OUT/$TRIPLE/release"
CORPUS="$OUT/corpus"

# Instrumentation for libFuzzer's coverage feedback; the target triple keeps
# these flags off build scripts and proc macros.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
export CARGO_TERM_COLOR=never

echo "fuzz: building the harness (release, instrumented)"
cargo build --release --manifest-path "$ROOT/tests/fuzz/Cargo.toml" \
    --target "$TRIPLE" --target-dir "$OUT" --bins
[ "$BUILD_ONLY" -eq 0 ] || exit 0

if [ "$#" -eq 0 ]; then
    set -- $(sed -n 's/^    ("\([a-z_]*\)", [a-z_]*),$/\1/p' "$ROOT/tests/fuzz/targets.rs")
fi
[ "$#" -gt 0 ] || { echo "fuzz: no targets found" >&2; exit 1; }

mkdir -p "$CORPUS"
ENVARC_FUZZ_WRITE_SEEDS="$CORPUS" ENVARC_ESDK_VECTORS="$ROOT/fixtures/esdk-vectors" "$BIN/fuzz"

# fuzz_one TARGET: one libFuzzer run; its log in $OUT/TARGET.log, its exit
# status in $OUT/TARGET.rc.
fuzz_one() {
    local t=$1 rc=0
    mkdir -p "$CORPUS/$t" "$OUT/artifacts/$t"
    # Saved crashes join the corpus so their neighbourhood is explored too.
    if [ -d "$ROOT/fixtures/fuzz/$t" ]; then
        cp -n "$ROOT/fixtures/fuzz/$t/"* "$CORPUS/$t/" 2>/dev/null || true
    fi
    ENVARC_FUZZ_TARGET="$t" "$BIN/fuzz" "$CORPUS/$t" \
        -max_total_time="$SECS" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$t/" >"$OUT/$t.log" 2>&1 || rc=$?
    echo "$rc" >"$OUT/$t.rc"
}

# One libFuzzer process per core at a time (each is single-threaded).
JOBS="$(nproc 2>/dev/null || echo 1)"
running=0
for t in "$@"; do
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    echo "fuzz: $t for ${SECS}s"
    fuzz_one "$t" &
    running=$((running + 1))
done
wait

status=0
summary=""
for t in "$@"; do
    log="$OUT/$t.log"
    rc="$(cat "$OUT/$t.rc" 2>/dev/null || echo 1)"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    units=$(ls "$CORPUS/$t" | wc -l)
    line=$(printf '%-17s %10s execs %8s/s  cov %6s  corpus %5s' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$units")
    if [ "$rc" -ne 0 ]; then
        status=1
        line="$line  FAILED (exit $rc)"
        mkdir -p "$ROOT/fixtures/fuzz/$t"
        for a in "$OUT/artifacts/$t/"*; do
            [ -f "$a" ] && cp "$a" "$ROOT/fixtures/fuzz/$t/" && echo "fuzz: saved $(basename "$a") to fixtures/fuzz/$t/"
        done
        tail -40 "$log"
    fi
    summary="$summary$line"$'\n'
done
echo
echo "fuzz: ${SECS}s per target, $JOBS at a time, libFuzzer (coverage-guided), $(rustc --version)"
printf '%s' "$summary"
exit "$status"
