#!/usr/bin/env bash
# Directory mode, one run: `envarc encrypt --recursive` against
# `aws-encryption-cli --encrypt --recursive` on 2,000 files of 1–64 KiB and on
# 4 × 256 MiB, both with their data keys from AWS KMS (one local moto server),
# envarc also with the local keyring; and envarc's decrypt of the signed suite
# 0x0578 against the unsigned 0x0478 (what the signature costs).
#
#   benches/dircrypt.sh [WORKDIR]   (default: /dev/shm/envarc-bench-dircrypt,
#                                     tmpfs, as file creation on disk is erratic)
#
# The AWS CLI writes 0x0578 with 4 KiB frames by default; envarc 0x0478 with
# 64 KiB frames. Both envarc suites are measured against KMS, so that 0x0578
# compares like with like. Every output is checked (decrypted, compared).
#
# Builds nothing: run `cargo build --release` first (or set ENVARC). Needs
# moto_server (`bash .ci/setup-moto.sh`, or ENVARC_MOTO_SERVER) and the AWS
# Encryption CLI (`bash .ci/setup-aws-encryption-cli.sh`, or
# ENVARC_AWS_ENCRYPTION_CLI). Deletes WORKDIR at the end unless KEEP=1.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ENVARC=${ENVARC:-$ROOT/target/release/envarc}
MOTO=${ENVARC_MOTO_SERVER:-$(bash "$ROOT/.ci/setup-moto.sh")}
CLI=${ENVARC_AWS_ENCRYPTION_CLI:-$(bash "$ROOT/.ci/setup-aws-encryption-cli.sh")}
W=${1:-/dev/shm/envarc-bench-dircrypt}
rm -rf "$W"
mkdir -p "$W"
cd "$W"

echo "making the trees in $W" >&2
python3 - <<'PYEOF'
import os, random
random.seed(16)
for i in range(2000):
    d = f"small/d{i % 25:02d}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i:05d}", "wb") as f:
        f.write(os.urandom(random.randint(1024, 64 * 1024)))
os.makedirs("large", exist_ok=True)
for i in range(4):
    with open(f"large/part{i}", "wb") as f:
        for _ in range(256):
            f.write(os.urandom(1 << 20))
PYEOF

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent
export AWS_ENDPOINT_URL_KMS=http://127.0.0.1:$PORT
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL HTTP_PROXY HTTPS_PROXY http_proxy https_proxy
"$MOTO" -H 127.0.0.1 -p "$PORT" > moto.log 2>&1 &
MOTO_PID=$!
cleanup() {
    kill "$MOTO_PID" 2> /dev/null || true
    wait "$MOTO_PID" 2> /dev/null || true
    cd /
    [ "${KEEP:-0}" = 1 ] || rm -rf "$W"
}
trap cleanup EXIT
CLI_PY="$(dirname "$CLI")/python"
for _ in $(seq 100); do
    ARN=$("$CLI_PY" -c 'import boto3; print(boto3.client("kms").create_key()["KeyMetadata"]["Arn"])' 2> /dev/null) && break
    sleep 0.2
done

export ENVARC_KEYRING=$W/keyring ENVARC_PASSPHRASE=bench ENVARC_ARGON2_PARAMS=m=8,t=1,p=1
"$ENVARC" -q key create --alias alias/bench

secs() { # secs CMD…: wall-clock seconds of one run
    local t0 t1
    t0=$(date +%s.%N)
    "$@" > /dev/null
    t1=$(date +%s.%N)
    python3 -c "print(f'{$t1 - $t0:.2f}')"
}
same() { # same SRC DST [SUFFIX]: every file of SRC is in DST, named with SUFFIX, same bytes
    (cd "$1" && find . -type f) | while read -r f; do cmp -s "$1/$f" "$2/$f${3:-}" || { echo "MISMATCH $2/$f${3:-}" >&2; exit 1; }; done
}

declare -A T
for set in small large; do
    echo "encrypting $set" >&2
    T[$set,kms78]=$(secs "$ENVARC" -q encrypt -r "$set" -o "$set.kms78" --key "$ARN")
    T[$set,kms58]=$(secs "$ENVARC" -q encrypt -r "$set" -o "$set.kms58" --key "$ARN" --algorithm AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384)
    mkdir "$set.cli"
    T[$set,cli]=$(secs "$CLI" --encrypt --recursive -S -i "$set" -o "$set.cli" -w key="$ARN")
    T[$set,kr78]=$(secs "$ENVARC" -q encrypt -r "$set" -o "$set.kr78" --key alias/bench)
    T[$set,kr58]=$(secs "$ENVARC" -q encrypt -r "$set" -o "$set.kr58" --key alias/bench --algorithm AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384)
    echo "decrypting $set" >&2
    T[$set,dec78]=$(secs "$ENVARC" -q decrypt -r "$set.kr78" -o "$set.dec78")
    T[$set,dec58]=$(secs "$ENVARC" -q decrypt -r "$set.kr58" -o "$set.dec58")
    T[$set,deccli]=$(secs "$ENVARC" -q decrypt -r "$set.cli" -o "$set.deccli")
    mkdir "$set.clidec"
    T[$set,clidec]=$(secs "$CLI" --decrypt --recursive -S -i "$set.kms78" -o "$set.clidec" -w key="$ARN")
    same "$set" "$set.dec78"
    same "$set" "$set.dec58"
    same "$set" "$set.deccli"
    same "$set" "$set.clidec" .encrypted.decrypted
    rm -rf "$set".*
done

ratio() { python3 -c "print(f'{$1 / $2:.1f}×')"; }
echo
echo "envarc $("$ENVARC" --version | cut -d' ' -f2), aws-encryption-cli $("$CLI" --version 2>&1 | head -1), $(nproc) cores, on $(df --output=fstype "$W" | tail -1)"
echo
echo "| seconds (one run) | 2,000 × 1–64 KiB | 4 × 256 MiB |"
echo "|---|---:|---:|"
row() { echo "| $1 | ${T[small,$2]} | ${T[large,$2]} |"; }
row "aws-encryption-cli --encrypt, KMS (0x0578, 4 KiB frames)" cli
row "envarc encrypt, KMS, 0x0478" kms78
row "envarc encrypt, KMS, 0x0578" kms58
row "envarc encrypt, keyring, 0x0478" kr78
row "envarc encrypt, keyring, 0x0578" kr58
row "aws-encryption-cli --decrypt of envarc's 0x0478, KMS" clidec
row "envarc decrypt of the CLI's tree, KMS" deccli
row "envarc decrypt, keyring, 0x0478" dec78
row "envarc decrypt, keyring, 0x0578" dec58
echo
echo "envarc vs aws-encryption-cli (KMS, same suite 0x0578): small $(ratio "${T[small,cli]}" "${T[small,kms58]}"), large $(ratio "${T[large,cli]}" "${T[large,kms58]}") faster"
echo "decrypt 0x0578 / 0x0478 (the signature's cost): small $(ratio "${T[small,dec58]}" "${T[small,dec78]}"), large $(ratio "${T[large,dec58]}" "${T[large,dec78]}")"
