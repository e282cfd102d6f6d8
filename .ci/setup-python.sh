#!/usr/bin/env bash
# Creates (if missing) the virtualenv .venv at the repository root with the
# official AWS Encryption SDK for Python and its Material Providers Library,
# which the interop tests drive through tests/interop/esdk_tool.py.
#
# Idempotent: when .venv already has the pinned versions it does nothing (well
# under a second). Progress goes to stderr; the only line on stdout is the
# absolute path of the venv's python, so callers can do
#   PY=$(bash .ci/setup-python.sh)
#
# Override the interpreter that builds the venv with PYTHON=/path/to/python3.
set -euo pipefail

# Pinned and verified together: the SDK 4.0.7 wrote the vectors in
# ../shared/vectors/esdk/python-4.0.7, and 4.0.7's MPL extra allows MPL <= 1.11.3.
ESDK_VERSION=4.0.7
MPL_VERSION=1.11.3

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
VPY="$VENV/bin/python"

log() { echo "setup-python: $*" >&2; }

have_pinned() {
    [ -x "$VPY" ] || return 1
    "$VPY" - "$ESDK_VERSION" "$MPL_VERSION" >/dev/null 2>&1 <<'PYEOF'
import sys
from importlib.metadata import version
import aws_encryption_sdk  # noqa: F401
from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders  # noqa: F401
ok = (version("aws-encryption-sdk") == sys.argv[1]
      and version("aws-cryptographic-material-providers") == sys.argv[2])
sys.exit(0 if ok else 1)
PYEOF
}

if have_pinned; then
    log "ok: $VENV has aws-encryption-sdk $ESDK_VERSION (MPL $MPL_VERSION)"
else
    if [ -e "$VENV" ] && ! "$VPY" -c 'import sys' >/dev/null 2>&1; then
        log "removing broken virtualenv $VENV"
        rm -rf "$VENV"
    fi
    if [ ! -x "$VPY" ]; then
        log "creating virtualenv $VENV"
        "${PYTHON:-python3}" -m venv "$VENV" >&2
    fi
    log "installing aws-encryption-sdk[MPL]==$ESDK_VERSION (MPL $MPL_VERSION)"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$VPY" -m pip install -q --no-input \
        "aws-encryption-sdk[MPL]==$ESDK_VERSION" \
        "aws-cryptographic-material-providers==$MPL_VERSION" >&2
    if ! have_pinned; then
        log "error: the SDK still does not import from $VPY after installing"
        exit 1
    fi
fi

echo "$VPY"
