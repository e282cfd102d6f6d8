#!/usr/bin/env bash
# Finds (or installs) moto's `moto_server`, the local AWS KMS and S3 that
# tests/providers/aws_kms and tests/storage start on free loopback ports. Idempotent.
#
# Order: $ENVARC_MOTO_SERVER if set and runnable, `moto_server` on PATH, the
# one inside the repository's .venv, and finally a fresh
# `pip install 'moto[server]'` into .venv. Conventions: .ci/lib.sh.
set -euo pipefail
SETUP=moto
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# What the KMS tests were written and run against.
MOTO_VERSION=5.2.1

works() { "$1" --help >/dev/null 2>&1; }

use_existing ENVARC_MOTO_SERVER moto_server
if works "$VENV/bin/moto_server"; then found "$VENV/bin/moto_server"; fi

pip_install "$VENV" "moto[server]==$MOTO_VERSION"
if works "$VENV/bin/moto_server"; then found "$VENV/bin/moto_server" "installed"; fi
log "error: moto[server] installed but $VENV/bin/moto_server does not run; see the output above"
exit 1
