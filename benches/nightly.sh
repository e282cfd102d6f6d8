#!/usr/bin/env bash
# The nightly series of issue 14 with envarc, restic and borg in one run:
# repository size and backup time (and peak RSS) per night, then restore and
# verify --read-data of the last night.
#
#   benches/nightly.sh [--work DIR] [--share DIR]
#
# Night 1: a copy of /usr/share (or --share DIR) plus a 256 MiB
#          disk-image-like file and a 64 MiB mailbox.
# Night 2: the mailbox grows 1 MiB; 4 MiB are rewritten inside the image;
#          a folder is renamed.
# Night 3: a folder is copied and 100 files are edited.
# Night 4: the copy is deleted and 1,000 files are touched.
# Defaults: envarc's (zstd where it pays), restic's (auto compression),
# borg's (lz4). Needs about 6x the tree's size free under the work folder
# (default under /tmp), which is deleted at the end.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${TMPDIR:-/tmp}/envarc-nightly.$$
SHARE=/usr/share
while [ $# -gt 0 ]; do
    case $1 in
        --work) WORK=$2; shift ;;
        --share) SHARE=$2; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "nightly.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
need=()
for p in restic:restic borg:borgbackup /usr/bin/time:time; do
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
TREE=$WORK/tree
mkdir -p "$TREE"
cp -a "$SHARE" "$TREE/share" 2> /dev/null || true
# The image: 1 MiB blocks, a third random, a third zero, a third text-like
# (a file system with binaries, free space and documents); the mailbox:
# email-like text.
python3 - "$TREE" <<'EOF'
import os, random, sys
tree = sys.argv[1]
rnd = random.Random(14)
words = [rnd.randbytes(rnd.randint(2, 9)).hex()[:rnd.randint(2, 9)] for _ in range(5000)]
def text(n):
    out = bytearray()
    while len(out) < n:
        out += (" ".join(rnd.choice(words) for _ in range(12)) + "\n").encode()
    return bytes(out[:n])
with open(f"{tree}/disk.img", "wb") as f:
    for i in range(256):
        k = i % 3
        f.write(rnd.randbytes(1 << 20) if k == 0 else bytes(1 << 20) if k == 1 else text(1 << 20))
with open(f"{tree}/mailbox", "wb") as f:
    for i in range(64):
        f.write(b"From: someone@example.org\nSubject: note %d\n\n" % i + text((1 << 20) - 60))
EOF
night() {
    local n=$1
    case $n in
        2)  python3 - "$TREE" <<'EOF'
import os, random, sys
tree = sys.argv[1]
rnd = random.Random(2)
with open(f"{tree}/mailbox", "ab") as f:
    f.write(b"From: new@example.org\n\n" + rnd.randbytes(1 << 19).hex().encode()[: 1 << 20])
with open(f"{tree}/disk.img", "r+b") as f:
    f.seek(100 << 20)
    f.write(rnd.randbytes(4 << 20))
EOF
            mv "$TREE/share/doc" "$TREE/share/doc-renamed" ;;
        3)  cp -a "$TREE/share/doc-renamed" "$TREE/doc-copy"
            # (process substitution: `head` closing a pipe would trip pipefail)
            mapfile -t edit < <(find "$TREE/share" -type f -size +1k | sort)
            for f in "${edit[@]:0:100}"; do echo "edited on night 3" >> "$f"; done ;;
        4)  rm -rf "$TREE/doc-copy"
            mapfile -t all < <(find "$TREE/share" -type f | sort)
            touch "${all[@]: -1000}" ;;
    esac
}
export ENVARC_KEYRING=$WORK/keyring ENVARC_PINS=$WORK/pins.json
head -c 32 /dev/urandom > keyring.key
KR=(--keyring-key-file "$WORK/keyring.key")
"$ENVARC" key create -q "${KR[@]}" --alias alias/nightly > /dev/null
export RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench BORG_BASE_DIR=$WORK/borgbase
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
"$ENVARC" init -q -r repo-e --key alias/nightly "${KR[@]}"
restic init -q -r repo-r > /dev/null
borg init -e repokey repo-b 2> /dev/null
RAW=$WORK/raw.csv
: > "$RAW"
timed() { # TOOL NIGHT CMD...
    local tool=$1 n=$2; shift 2
    if ! /usr/bin/time -v -o time.txt "$@" > cmd.out 2>&1; then
        echo "FAILED: $tool night $n: $*" >&2; tail -20 cmd.out >&2; exit 1
    fi
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' time.txt)
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' time.txt)
    echo "$tool,$n,$wall,$rss" >> "$RAW"
}
for n in 1 2 3 4; do
    night $n
    tar cf - tree > /dev/null # warm the page cache alike for all
    timed envarc $n "$ENVARC" backup -q -r repo-e "${KR[@]}" "$TREE"
    timed restic $n restic -q -r repo-r backup "$TREE"
    timed borg $n borg create repo-b::n$n "$TREE"
    for t in e r b; do echo "size,$t,$n,$(du -sb repo-$t | cut -f1)" >> "$RAW"; done
    echo "night $n done" >&2
done
rm -rf out; mkdir out
timed envarc restore "$ENVARC" restore -q -r repo-e "${KR[@]}" latest -t "$WORK/out"
rm -rf out; mkdir out
timed restic restore restic -q -r repo-r restore latest --target "$WORK/out"
rm -rf out; mkdir out
timed borg restore sh -c "cd out && borg extract ../repo-b::n4"
rm -rf out
timed envarc verify "$ENVARC" verify -q -r repo-e "${KR[@]}" --read-data
timed restic verify restic -q -r repo-r check --read-data
timed borg verify borg check --verify-data repo-b
python3 - "$RAW" <<'EOF'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
size = {(r[1], r[2]): int(r[3]) for r in rows if r[0] == "size"}
t = {(r[0], r[1]): (float(r[2]), int(r[3])) for r in rows if r[0] != "size"}
names = {"e": "envarc", "r": "restic", "b": "borg"}
print("| repository size after night (MB) | 1 | 2 | 3 | 4 |")
print("|---|---|---|---|---|")
for k, name in names.items():
    print(f"| {name} | " + " | ".join(f"{size[(k, str(n))] / 1e6:,.0f}" for n in range(1, 5)) + " |")
print()
print("| backup time per night (s), peak RSS (MiB) | 1 | 2 | 3 | 4 |")
print("|---|---|---|---|---|")
for name in names.values():
    print(f"| {name} | " + " | ".join(f"{t[(name, str(n))][0]:.1f} ({t[(name, str(n))][1] // 1024})" for n in range(1, 5)) + " |")
print()
print("| after night 4 (s, peak RSS MiB) | restore | verify --read-data |")
print("|---|---|---|")
for name in names.values():
    r, v = t[(name, "restore")], t[(name, "verify")]
    print(f"| {name} | {r[0]:.1f} ({r[1] // 1024}) | {v[0]:.1f} ({v[1] // 1024}) |")
EOF
