# Shared by the .ci/setup-*.sh scripts, each of which finds or installs one
# peer of the test suite. Source it after setting SETUP (the script's short
# name). A setup script prints progress on stderr and, on success, the
# program's absolute path as its only line on stdout, so that callers can do
#   ENVARC_X=$(bash .ci/setup-x.sh)
# Override the interpreter that builds a virtualenv with PYTHON=/path/to/python3.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

log() { echo "setup-$SETUP: $*" >&2; }

# The absolute path of a program, through symlinks and shims kept as they
# are (a pyenv shim is a fine program to run).
abs() { (cd "$(dirname "$1")" && printf '%s/%s\n' "$(pwd -P)" "$(basename "$1")"); }

# found PATH [HOW]: the script's answer; ends it.
found() {
    log "ok: $1${2:+ ($2)}"
    echo "$1"
    exit 0
}

# use_existing VAR PROGRAM: ends the script with the program $VAR names, or
# else PROGRAM on PATH, whichever `works` (the caller's test) runs first.
use_existing() {
    local var=$1 prog=$2 given=${!1:-} p
    if [ -n "$given" ]; then
        if works "$given"; then found "$given" "from $var"; fi
        log "warning: $var=$given does not run; looking elsewhere"
    fi
    if p="$(command -v "$prog" 2>/dev/null)" && works "$p"; then
        found "$(abs "$p")" "on PATH"
    fi
}

# pip_install VENV SPEC…: installs SPEC into the virtualenv VENV, creating
# it first (and replacing one that no longer runs, say after a Python
# upgrade).
pip_install() {
    local venv=$1 vpy=$1/bin/python
    shift
    if [ -e "$venv" ] && ! "$vpy" -c 'import sys' >/dev/null 2>&1; then
        log "removing broken virtualenv $venv"
        rm -rf "$venv"
    fi
    if [ ! -x "$vpy" ]; then
        log "creating virtualenv $venv"
        "${PYTHON:-python3}" -m venv "$venv" >&2
    fi
    log "installing $* into $venv"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$vpy" -m pip install -q --no-input "$@" >&2
}
