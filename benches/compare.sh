#!/usr/bin/env bash
# Side-by-side performance of envarc against the I/O floor (cp -r + sync, tar),
# restic, borg and tar|age, on the same machine in one run, warm cache.
# envarc writes repository format 2 (chunked, deduplicated, zstd where it
# pays: random data is stored uncompressed); restic and borg run without
# compression, as the data does not compress.
#
#   benches/compare.sh [--quick] [--reps N] [--csv FILE] [--work DIR] [--only large|small]
#
#   full:    large = 4 x 512 MiB random files; small = 20,000 files of 1-64 KiB in 200 folders
#   --quick: large = 4 x 64 MiB;               small = 4,000 files
#   LARGE_MIB, LARGE_FILES, SMALL_FILES, SMALL_DIRS override the sizes (env).
#
# Every operation runs --reps times (default 3), tools interleaved within each
# repetition so that load from other processes hits all of them alike; the
# table shows the median wall time, min-max, the peers' time divided by
# envarc's (>1 = envarc faster), files/s for the small tree and the highest
# peak RSS (GNU time -v). The CSV has one row per (tree, operation, tool).
# Needs about 5x the corpus size free under the work folder (default under
# /tmp), which is deleted at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPS=3 QUICK=0 ONLY="" CSV=/tmp/envarc-compare.csv
WORK=${TMPDIR:-/tmp}/envarc-compare.$$
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1 ;;
        --reps) REPS=$2; shift ;;
        --csv) CSV=$2; shift ;;
        --work) WORK=$2; shift ;;
        --only) ONLY=$2; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "compare.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ $QUICK = 1 ]; then
    : "${LARGE_MIB:=64}" "${SMALL_FILES:=4000}" "${SMALL_DIRS:=40}"
fi
: "${LARGE_MIB:=512}" "${LARGE_FILES:=4}" "${SMALL_FILES:=20000}" "${SMALL_DIRS:=200}"

# Peers, for a fresh Debian/Ubuntu machine.
need=()
for p in restic:restic borg:borgbackup age:age /usr/bin/time:time; do
    command -v "${p%%:*}" > /dev/null || need+=("${p#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}" >&2
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}" > /dev/null
fi

echo "building envarc (release)" >&2
(cd "$ROOT" && cargo build --release --quiet --bin envarc)
ENVARC=$ROOT/target/release/envarc

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
trap 'cd /; rm -rf "$WORK"' EXIT
cd "$WORK"
RAW=$WORK/raw.csv
: > "$RAW"

# Corpora: deterministic (seeded) sizes, names and contents.
python3 - "$LARGE_FILES" "$LARGE_MIB" "$SMALL_FILES" "$SMALL_DIRS" <<'EOF'
import os, random, sys
nl, mib, ns, nd = map(int, sys.argv[1:])
rnd = random.Random(7)
os.makedirs("large")
for i in range(nl):
    with open(f"large/f{i}", "wb") as f:
        for _ in range(mib):
            f.write(rnd.randbytes(1 << 20))
os.makedirs("small")
for i in range(ns):
    d = f"small/d{i % nd:03d}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i:05d}", "wb") as f:
        f.write(rnd.randbytes(rnd.randint(1024, 64 * 1024)))
EOF
# The corpora on disk before anything is timed: otherwise the first `sync`
# measured (cp's) would also write out the 2.7 GB just generated.
sync

# Credentials: a keyring opened with a key file (no Argon2 cost), restic and
# borg passphrases, an age X25519 identity (age -p needs a tty).
head -c 32 /dev/urandom > keyring.key
export ENVARC_KEYRING=$WORK/keyring ENVARC_PINS=$WORK/pins.json
KR=(--keyring-key-file "$WORK/keyring.key")
"$ENVARC" key create -q "${KR[@]}" --alias alias/bench > /dev/null
export RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_BASE_DIR=$WORK/borgbase
age-keygen -o age.key 2> /dev/null
AGE_RCPT=$(age-keygen -y age.key)

# run TREE OP TOOL REP CMD...: time one command, append to the raw CSV.
run() {
    local tree=$1 op=$2 tool=$3 rep=$4; shift 4
    if ! /usr/bin/time -v -o time.txt "$@" > cmd.out 2>&1; then
        echo "FAILED: $tool $op on $tree: $*" >&2; cat cmd.out time.txt >&2; exit 1
    fi
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' time.txt)
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' time.txt)
    echo "$tree,$op,$tool,$rep,$wall,$rss" >> "$RAW"
    printf '  %-6s %-18s %-7s rep %s  %7.2f s  %6d MiB\n' "$tree" "$op" "$tool" "$rep" "$wall" $((rss / 1024)) >&2
}

# fresh DIR: an empty target folder.
fresh() { rm -rf "$1"; mkdir -p "$1"; }

for tree in large small; do
    [ -n "$ONLY" ] && [ "$ONLY" != "$tree" ] && continue
    src=$WORK/$tree
    echo "== $tree: $(du -sh --apparent-size "$tree" | cut -f1), $(find "$tree" -type f | wc -l) files" >&2
    tar cf - "$tree" > /dev/null # warm the page cache
    for rep in $(seq 1 "$REPS"); do
        # I/O floor.
        rm -rf copy
        run $tree backup cp $rep sh -c "cp -r '$src' copy && sync"
        rm -rf copy
        run $tree backup tar $rep sh -c "tar -cf - $tree | cat > tarball"
        rm -f tarball

        # First backups into new repositories; then unchanged re-backups.
        rm -rf repo-e repo-r repo-b
        "$ENVARC" init -q -r repo-e --key alias/bench "${KR[@]}"
        restic init -q -r repo-r > /dev/null
        borg init -e repokey repo-b 2> /dev/null
        run $tree backup envarc $rep "$ENVARC" backup -q -r repo-e "${KR[@]}" "$src"
        run $tree backup restic $rep restic -q -r repo-r --compression off backup "$src"
        run $tree backup borg $rep borg create --compression none repo-b::s1 "$src"
        run $tree backup age $rep sh -c "tar -cf - $tree | age -r $AGE_RCPT > tarball.age"
        run $tree backup-unchanged envarc $rep "$ENVARC" backup -q -r repo-e "${KR[@]}" "$src"
        run $tree backup-unchanged restic $rep restic -q -r repo-r --compression off backup "$src"
        run $tree backup-unchanged borg $rep borg create --compression none repo-b::s2 "$src"

        # Reading everything back with authentication.
        run $tree verify-read-data envarc $rep "$ENVARC" verify -q -r repo-e "${KR[@]}" --read-data
        run $tree verify-read-data restic $rep restic -q -r repo-r check --read-data
        run $tree verify-read-data borg $rep borg check --verify-data repo-b
        run $tree verify-read-data age $rep sh -c "age -d -i age.key tarball.age > /dev/null"

        fresh out; run $tree restore envarc $rep "$ENVARC" restore -q -r repo-e "${KR[@]}" latest -t "$WORK/out"
        fresh out; run $tree restore restic $rep restic -q -r repo-r restore latest --target "$WORK/out"
        fresh out; run $tree restore borg $rep sh -c "cd out && borg extract ../repo-b::s1"
        fresh out; run $tree restore age $rep sh -c "age -d -i age.key tarball.age | tar -xf - -C out"
        fresh out; run $tree restore tar $rep sh -c "tar -cf - $tree | tar -xf - -C out"
        fresh out; run $tree restore cp $rep sh -c "cp -r '$src' out/ && sync"
        rm -rf out tarball.age
    done
    echo "repository sizes: envarc $(du -sh repo-e | cut -f1), restic $(du -sh repo-r | cut -f1), borg $(du -sh repo-b | cut -f1)" >&2
    rm -rf repo-e repo-r repo-b
done

# Summary table (markdown) and CSV.
python3 - "$RAW" "$CSV" "$SMALL_FILES" <<'EOF'
import csv, statistics, sys
raw, out, nsmall = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = {}
for tree, op, tool, rep, wall, rss in csv.reader(open(raw)):
    rows.setdefault((tree, op, tool), []).append((float(wall), int(rss)))
order = ["cp", "tar", "envarc", "restic", "borg", "age"]
ops = ["backup", "backup-unchanged", "verify-read-data", "restore"]
table = []
for tree in ["large", "small"]:
    for op in ops:
        e = rows.get((tree, op, "envarc"))
        emed = statistics.median(w for w, _ in e) if e else None
        for tool in order:
            r = rows.get((tree, op, tool))
            if not r:
                continue
            ws = [w for w, _ in r]
            med = statistics.median(ws)
            ratio = med / emed if emed and med else None
            fps = nsmall / med if tree == "small" and med else None
            table.append(dict(tree=tree, operation=op, tool=tool, runs=len(ws),
                              median_s=f"{med:.2f}", min_s=f"{min(ws):.2f}", max_s=f"{max(ws):.2f}",
                              time_vs_envarc=f"{ratio:.2f}" if ratio else "",
                              files_per_s=f"{fps:.0f}" if fps else "",
                              peak_rss_mib=f"{max(x for _, x in r) / 1024:.0f}"))
with open(out, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(table[0]))
    w.writeheader()
    w.writerows(table)
print("| tree | operation | tool | median s | min–max s | time ÷ envarc | files/s | peak RSS MiB |")
print("|---|---|---|---:|---:|---:|---:|---:|")
for t in table:
    print(f"| {t['tree']} | {t['operation']} | {t['tool']} | {t['median_s']} | {t['min_s']}–{t['max_s']} | "
          f"{t['time_vs_envarc']} | {t['files_per_s']} | {t['peak_rss_mib']} |")
print(f"\nCSV: {out}")
EOF
