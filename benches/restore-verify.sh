#!/bin/bash
# Verify and restore speed: envarc against restic (uncompressed) and cp -r,
# on a 2 GiB tree of 4 large files and a tree of 20,000 files of 1-64 KiB.
# Prints wall and CPU (user+sys) seconds; on a shared machine the CPU figure
# is the steadier one. Restores to disk are timed with a final sync for
# restic and cp (envarc's restore ends with its own syncfs), and again on
# tmpfs (/dev/shm), where no disk is involved.
#
#   cargo build --release && benches/restore-verify.sh [WORKDIR]
#
# Needs about 9 GiB in WORKDIR (default /tmp/envarc-bench) and 2.5 GiB of
# /dev/shm; removes everything it made at the end.
set -euo pipefail
B=${1:-/tmp/envarc-bench}
E=${ENVARC:-$(cd "$(dirname "$0")/.." && pwd)/target/release/envarc}
S=/dev/shm/envarc-bench
export RESTIC_PASSWORD=bench
TIMEFORMAT='%R %U %S'
t() {
  local r
  r=$( { time bash -c "$1" >/dev/null 2>"$B/last.err"; } 2>&1 ) || { echo "FAILED: $1"; cat "$B/last.err"; exit 1; }
  set -- $r "$2"
  printf "%8.2f wall %6.2f cpu  %s\n" "$1" "$(echo "$2 + $3" | bc)" "$4"
}
trap 'rm -rf "$B" "$S"' EXIT
mkdir -p "$B/big" "$B/small"
for i in 0 1 2 3; do head -c 512M /dev/urandom > "$B/big/large$i"; done
python3 - "$B/small" <<'PY'
import os, random, sys
random.seed(1)
for i in range(20000):
    d = os.path.join(sys.argv[1], f"d{i % 50:02d}", f"s{(i // 50) % 8}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}"), "wb") as f:
        f.write(os.urandom(random.randint(1024, 64 * 1024)))
PY
head -c 32 /dev/urandom > "$B/key"
for tree in big small; do
  echo "== $tree: $(find "$B/$tree" -type f | wc -l) files, $(du -sb "$B/$tree" | cut -f1) bytes"
  "$E" init -q -r "$B/er-$tree" --raw-key-file "$B/key" --key-name bench
  restic -q -r "$B/rr-$tree" init >/dev/null
  t "$E backup -q -r $B/er-$tree --raw-key-file $B/key $B/$tree" "envarc backup"
  t "restic -q -r $B/rr-$tree backup --compression off $B/$tree" "restic backup --compression off"
  find "$B/$tree" "$B/er-$tree" "$B/rr-$tree" -type f -print0 | xargs -0 cat > /dev/null
  for rep in 1 2; do
    echo "-- $tree, round $rep (load $(cut -d' ' -f1 /proc/loadavg))"
    t "$E verify -q -r $B/er-$tree --raw-key-file $B/key" "envarc verify (structural)"
    t "$E verify -q -r $B/er-$tree --raw-key-file $B/key --read-data" "envarc verify --read-data"
    t "restic -q -r $B/rr-$tree check --read-data" "restic check --read-data"
    rm -rf "$B"/out-*; sync
    t "$E restore -q -r $B/er-$tree --raw-key-file $B/key latest --target $B/out-e" "disk: envarc restore (ends with syncfs)"
    rm -rf "$B"/out-*; sync
    t "restic -q -r $B/rr-$tree restore latest --target $B/out-r && sync" "disk: restic restore + sync"
    rm -rf "$B"/out-*; sync
    t "cp -r $B/$tree $B/out-c && sync" "disk: cp -r + sync"
    rm -rf "$B"/out-*; sync
    rm -rf "$S"; mkdir -p "$S"
    t "$E restore -q -r $B/er-$tree --raw-key-file $B/key latest --target $S/e" "tmpfs: envarc restore"
    rm -rf "$S"; mkdir -p "$S"
    t "restic -q -r $B/rr-$tree restore latest --target $S/r" "tmpfs: restic restore"
    rm -rf "$S"; mkdir -p "$S"
    t "cp -r $B/$tree $S/c" "tmpfs: cp -r"
    rm -rf "$S"
  done
done
