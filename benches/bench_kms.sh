#!/usr/bin/env bash
# Files per second of `envarc backup` of many small files with the data keys
# from AWS KMS (a local moto server) against the local keyring, in one run:
# one GenerateDataKey round trip per file, overlapped up to --kms-max-in-flight.
#
#   benches/bench_kms.sh [WORKDIR] [FILES]   (default /tmp/envarc-bench-kms, 2000)
#
# moto answers in about 2 ms but is one Python process, so it caps the rate
# whatever the concurrency. To show what overlapping round trips buys against a
# service that is slow to answer but not busy (real KMS: a few ms to tens of
# ms away), a second server answers every request from canned data after
# LATENCY_MS (default 20) milliseconds; it is a stand-in for the network, not
# a KMS (every data key is the same), and is used for nothing else.
#
# Builds nothing: run `cargo build --release` first (or set ENVARC). Needs
# moto_server (`bash .ci/setup-moto.sh` prints it; or set ENVARC_MOTO_SERVER)
# and curl. Deletes WORKDIR at the end unless KEEP=1.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ENVARC=${ENVARC:-$ROOT/target/release/envarc}
MOTO=${ENVARC_MOTO_SERVER:-$(bash "$ROOT/.ci/setup-moto.sh")}
W=${1:-/tmp/envarc-bench-kms}
N=${2:-2000}
rm -rf "$W"
mkdir -p "$W"
cd "$W"

python3 - "$N" <<'EOF'
import os, random, sys
random.seed(1)
for i in range(int(sys.argv[1])):
    d = f"small/d{i % 20:02d}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i:05d}", "wb") as f:
        f.write(os.urandom(random.randint(1, 4) * 1024))
EOF

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
"$MOTO" -H 127.0.0.1 -p "$PORT" > moto.log 2>&1 &
MOTO_PID=$!
cleanup() {
    kill "$MOTO_PID" 2> /dev/null || true
    wait "$MOTO_PID" 2> /dev/null || true
    cd /
    [ "${KEEP:-0}" = 1 ] || rm -rf "$W"
}
trap cleanup EXIT

kms() { # kms ACTION JSON: one KMS request to moto (it routes by the credential scope)
    curl -sf -X POST "$URL/" -H "X-Amz-Target: TrentService.$1" \
        -H 'Content-Type: application/x-amz-json-1.1' \
        -H 'Authorization: AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=00' \
        -d "$2"
}
for _ in $(seq 100); do kms ListKeys '{}' > /dev/null 2>&1 && break; sleep 0.1; done
ARN=$(kms CreateKey '{}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["KeyMetadata"]["Arn"])')

export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent
export ENVARC_KEYRING=$W/keyring ENVARC_PASSPHRASE=bench ENVARC_ARGON2_PARAMS=m=8,t=1,p=1
"$ENVARC" key create --alias alias/bench > /dev/null
tar cf - small > /dev/null # warm the page cache

# run LABEL INIT-ARGS -- BACKUP-ARGS: a fresh repository, one backup, files/s.
run() {
    local label=$1; shift
    local init=() backup=()
    while [ "$1" != -- ]; do init+=("$1"); shift; done
    shift
    backup=("$@")
    rm -rf repo
    "$ENVARC" init -q -r repo "${init[@]}"
    local start end
    start=$(date +%s.%N)
    "$ENVARC" backup -q -r repo "${backup[@]}" small
    end=$(date +%s.%N)
    python3 -c "import sys; t = float(sys.argv[2]) - float(sys.argv[1]); \
print(f'{sys.argv[3]:<44} {t:6.2f} s  {int(sys.argv[4]) / t:7.0f} files/s')" \
        "$start" "$end" "$label" "$N"
}

echo "== $N files of 1-4 KiB; KMS: $MOTO on $URL"
run "keyring" --key alias/bench -- 
run "AWS KMS (moto), 16 in flight" --key "$ARN" --kms-endpoint "$URL" -- --kms-endpoint "$URL"
run "AWS KMS (moto), 4 in flight" --key "$ARN" --kms-endpoint "$URL" -- \
    --kms-endpoint "$URL" --kms-max-in-flight 4
run "AWS KMS (moto), 1 in flight (in series)" --key "$ARN" --kms-endpoint "$URL" -- \
    --kms-endpoint "$URL" --kms-max-in-flight 1
run "keyring + AWS KMS (moto), 16 in flight" --key alias/bench --key "$ARN" --kms-endpoint "$URL" -- \
    --kms-endpoint "$URL"

LATENCY_MS=${LATENCY_MS:-20}
SLOW_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
SLOW=http://127.0.0.1:$SLOW_PORT
cat > slow_kms.py <<'EOF'
import asyncio, base64, json, os, sys
port, delay, arn = int(sys.argv[1]), int(sys.argv[2]) / 1000, sys.argv[3]
key = base64.b64encode(os.urandom(32)).decode()
blob = base64.b64encode(os.urandom(64)).decode()
meta = {"KeyId": arn.rsplit("/", 1)[1], "Arn": arn, "Enabled": True, "KeyState": "Enabled",
        "KeyUsage": "ENCRYPT_DECRYPT", "KeySpec": "SYMMETRIC_DEFAULT"}
answers = {
    "DescribeKey": {"KeyMetadata": meta},
    "GenerateDataKey": {"KeyId": arn, "CiphertextBlob": blob, "Plaintext": key},
    "Decrypt": {"KeyId": arn, "Plaintext": key, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"},
}

async def serve(reader, writer):
    try:
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            fields = {}
            for line in head.split("\r\n")[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    fields[k.strip().lower()] = v.strip()
            await reader.readexactly(int(fields.get("content-length", 0)))
            await asyncio.sleep(delay)
            body = json.dumps(answers[fields["x-amz-target"].split(".")[1]]).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    await server.serve_forever()

asyncio.run(main())
EOF
python3 slow_kms.py "$SLOW_PORT" "$LATENCY_MS" "$ARN" > slow.log 2>&1 &
SLOW_PID=$!
trap 'kill $SLOW_PID 2> /dev/null || true; cleanup' EXIT
for _ in $(seq 50); do (exec 3<> "/dev/tcp/127.0.0.1/$SLOW_PORT") 2> /dev/null && break; sleep 0.1; done
for n in 1 4 16 64; do
    run "KMS stand-in ${LATENCY_MS} ms away, $n in flight" --key "$ARN" --kms-endpoint "$SLOW" -- \
        --kms-endpoint "$SLOW" --kms-max-in-flight "$n"
done
