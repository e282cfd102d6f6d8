#!/usr/bin/env bash
# Creates (if missing) the virtualenv .venv-esdk-cli at the repository root
# with the official AWS Encryption CLI (PyPI `aws-encryption-sdk-cli`), which
# the directory-mode interop tests (tests/providers/aws_kms/dircrypt.rs) and
# benches/dircrypt.sh drive against moto's KMS.
#
# A virtualenv of its own: the CLI pins `aws-encryption-sdk` to a range that
# pip satisfies by downgrading the SDK (to 3.3.1, which has no keyrings), so
# installing it beside `aws-encryption-sdk[MPL]` in .venv would break the
# other interop tests.
#
# Idempotent: when the venv already has the pinned version it does nothing.
# Prints the `aws-encryption-cli` program's path. Conventions: .ci/lib.sh.
set -euo pipefail
SETUP=aws-encryption-cli
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CLI_VERSION=4.3.0
CLI_VENV="$ROOT/.venv-esdk-cli"
CLI="$CLI_VENV/bin/aws-encryption-cli"

have_pinned() {
    [ -x "$CLI" ] || return 1
    "$CLI_VENV/bin/python" - "$CLI_VERSION" >/dev/null 2>&1 <<'PYEOF'
import sys
from importlib.metadata import version
import aws_encryption_sdk_cli  # noqa: F401
sys.exit(0 if version("aws-encryption-sdk-cli") == sys.argv[1] else 1)
PYEOF
}

if have_pinned; then found "$CLI" "aws-encryption-sdk-cli $CLI_VERSION"; fi
pip_install "$CLI_VENV" "aws-encryption-sdk-cli==$CLI_VERSION"
if have_pinned; then found "$CLI" "installed, $("$CLI" --version 2>&1 | head -1)"; fi
log "error: aws-encryption-cli does not run from $CLI_VENV after installing"
exit 1
