#!/usr/bin/env bash
# Creates (if missing) the virtualenv .venv at the repository root with the
# official AWS Encryption SDK for Python and its Material Providers Library,
# which the interop tests drive through tests/interop/esdk_tool.py.
# Idempotent: when .venv already has the pinned versions it does nothing (well
# under a second). Prints the venv's python. Conventions: .ci/lib.sh.
set -euo pipefail
SETUP=python
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Pinned and verified together: the SDK 4.0.7 wrote the vectors in
# fixtures/esdk-vectors/python-4.0.7, and 4.0.7's MPL extra allows MPL <= 1.11.3.
ESDK_VERSION=4.0.7
MPL_VERSION=1.11.3
VPY="$VENV/bin/python"

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

if have_pinned; then found "$VPY" "aws-encryption-sdk $ESDK_VERSION, MPL $MPL_VERSION"; fi
pip_install "$VENV" "aws-encryption-sdk[MPL]==$ESDK_VERSION" \
    "aws-cryptographic-material-providers==$MPL_VERSION"
if have_pinned; then found "$VPY" "installed"; fi
log "error: the SDK still does not import from $VPY after installing"
exit 1
