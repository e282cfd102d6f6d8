#!/usr/bin/env bash
# Finds (or installs) moto's `moto_server`, the local AWS KMS look-alike that
# tests/aws_kms starts on a free loopback port. Idempotent: when a usable
# `moto_server` exists it does nothing. Progress goes to stderr; the only line
# on stdout is the absolute path of the program, so callers can do
#   ENVARC_MOTO_SERVER=$(bash .ci/setup-moto.sh)
#
# Order: $ENVARC_MOTO_SERVER if set and runnable, `moto_server` on PATH, the
# one inside the repository's .venv, and finally a fresh
# `pip install 'moto[server]'` into .venv.
# Override the interpreter that builds the venv with PYTHON=/path/to/python3.
set -euo pipefail

# What the KMS tests were written and run against.
MOTO_VERSION=5.2.1

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
VPY="$VENV/bin/python"

log() { echo "setup-moto: $*" >&2; }

works() { "$1" --help >/dev/null 2>&1; }

# The absolute path of a program found on PATH, through symlinks and shims
# kept as they are (a pyenv shim is a fine program to run).
abs() { (cd "$(dirname "$1")" && printf '%s/%s\n' "$(pwd -P)" "$(basename "$1")"); }

if [ -n "${ENVARC_MOTO_SERVER:-}" ]; then
    if works "$ENVARC_MOTO_SERVER"; then
        log "ok: ENVARC_MOTO_SERVER=$ENVARC_MOTO_SERVER"
        echo "$ENVARC_MOTO_SERVER"
        exit 0
    fi
    log "warning: ENVARC_MOTO_SERVER=$ENVARC_MOTO_SERVER does not run; looking elsewhere"
fi
if p="$(command -v moto_server 2>/dev/null)" && works "$p"; then
    p="$(abs "$p")"
    log "ok: moto_server on PATH at $p"
    echo "$p"
    exit 0
fi
if [ -x "$VENV/bin/moto_server" ] && works "$VENV/bin/moto_server"; then
    log "ok: $VENV/bin/moto_server"
    echo "$VENV/bin/moto_server"
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
log "installing moto[server]==$MOTO_VERSION into $VENV"
PIP_DISABLE_PIP_VERSION_CHECK=1 "$VPY" -m pip install -q --no-input \
    "moto[server]==$MOTO_VERSION" >&2
if works "$VENV/bin/moto_server"; then
    log "installed: $VENV/bin/moto_server"
    echo "$VENV/bin/moto_server"
    exit 0
fi
log "error: moto[server] installed but $VENV/bin/moto_server does not run; see the output above"
exit 1
