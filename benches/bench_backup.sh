#!/usr/bin/env bash
# Measures `envarc backup` against `cp -r` and `restic backup` on the same
# trees, in one run, warm cache: a 2 GiB tree of 4 large files and a tree of
# 20,000 small files (1-64 KiB). Prints wall time and peak RSS of each.
#
#   benches/bench_backup.sh [WORKDIR]     (default /tmp/envarc-bench; needs ~6 GiB)
#
# Builds nothing: run `cargo build --release` first. Deletes WORKDIR at the end
# unless KEEP=1.
set -euo pipefail

ENVARC=${ENVARC:-$(cd "$(dirname "$0")/.." && pwd)/target/release/envarc}
W=${1:-/tmp/envarc-bench}
mkdir -p "$W"
cd "$W"

if [ ! -d large ]; then
    mkdir large
    for i in 1 2 3 4; do head -c $((512 << 20)) /dev/urandom > large/f$i; done
fi
if [ ! -d small ]; then
    python3 - <<'EOF'
import os, random
random.seed(1)
for i in range(20000):
    d = f"small/d{i % 100:02d}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i:05d}", "wb") as f:
        f.write(os.urandom(random.randint(1, 64) * 1024))
EOF
fi
head -c 32 /dev/urandom > key
export RESTIC_PASSWORD=bench

# time_it LABEL CMD...: wall seconds and peak RSS from /usr/bin/time -v.
time_it() {
    local label=$1; shift
    /usr/bin/time -v "$@" > /dev/null 2> time.txt || { cat time.txt; exit 1; }
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' time.txt)
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' time.txt)
    printf '%-34s %10s  peak RSS %7d MiB\n' "$label" "$wall" $((rss / 1024))
}

for tree in large small; do
    echo "== $tree: $(du -sh --apparent-size $tree | cut -f1), $(find $tree -type f | wc -l) files"
    tar cf - "$tree" > /dev/null # warm the page cache
    rm -rf copy repo-e repo-r
    time_it "cp -r" cp -r "$tree" copy
    rm -rf copy
    time_it "cp -r + sync" sh -c "cp -r $tree copy && sync"
    rm -rf copy
    "$ENVARC" init -q -r repo-e --raw-key-file key --key-name bench
    time_it "envarc backup" "$ENVARC" backup -q -r repo-e --raw-key-file key "$tree"
    time_it "envarc backup (no change)" "$ENVARC" backup -q -r repo-e --raw-key-file key "$tree"
    if command -v restic > /dev/null; then
        restic init -q -r repo-r > /dev/null
        time_it "restic backup --compression off" restic -q -r repo-r --compression off backup "$tree"
        time_it "restic backup (no change)" restic -q -r repo-r --compression off backup "$tree"
    fi
    echo "repository sizes: envarc $(du -sh repo-e | cut -f1), restic $(du -sh repo-r 2>/dev/null | cut -f1)"
    rm -rf repo-e repo-r
done
cd /
[ "${KEEP:-0}" = 1 ] || rm -rf "$W"
