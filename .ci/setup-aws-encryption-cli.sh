#!/usr/bin/env bash
# Creates (if missing) the virtualenv .venv-esdk-cli at the repository root
# with the official AWS Encryption CLI (PyPI `aws-encryption-sdk-cli`), which
# the directory-mode interop tests (tests/aws_kms/dircrypt.rs) and
# benches/dircrypt.sh drive against moto's KMS.
#
# A virtualenv of its own: the CLI pins `aws-encryption-sdk` to a range that
# pip satisfies by downgrading the SDK (to 3.3.1, which has no keyrings), so
# installing it beside `aws-encryption-sdk[MPL]` in .venv would break the
# other interop tests.
#
# Idempotent: when the venv already has the pinned version it does nothing.
# Progress goes to stderr; the only line on stdout is the absolute path of the
# `aws-encryption-cli` program, so callers can do
#   ENVARC_AWS_ENCRYPTION_CLI=$(bash .ci/setup-aws-encryption-cli.sh)
# Override the interpreter that builds the venv with PYTHON=/path/to/python3.
set -euo pipefail

CLI_VERSION=4.3.0

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-esdk-cli"
VPY="$VENV/bin/python"
CLI="$VENV/bin/aws-encryption-cli"

log() { echo "setup-aws-encryption-cli: $*" >&2; }

have_pinned() {
    [ -x "$CLI" ] || return 1
    "$VPY" - "$CLI_VERSION" >/dev/null 2>&1 <<'PYEOF'
import sys
from importlib.metadata import version
import aws_encryption_sdk_cli  # noqa: F401
sys.exit(0 if version("aws-encryption-sdk-cli") == sys.argv[1] else 1)
PYEOF
}

if have_pinned; then
    log "ok: $VENV has aws-encryption-sdk-cli $CLI_VERSION"
else
    if [ -e "$VENV" ] && ! "$VPY" -c 'import sys' >/dev/null 2>&1; then
        log "removing broken virtualenv $VENV"
        rm -rf "$VENV"
    fi
    if [ ! -x "$VPY" ]; then
        log "creating virtualenv $VENV"
        "${PYTHON:-python3}" -m venv "$VENV" >&2
    fi
    log "installing aws-encryption-sdk-cli==$CLI_VERSION"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$VPY" -m pip install -q --no-input \
        "aws-encryption-sdk-cli==$CLI_VERSION" >&2
    if ! have_pinned; then
        log "error: aws-encryption-cli does not run from $VENV after installing"
        exit 1
    fi
fi

"$CLI" --version >&2
echo "$CLI"
