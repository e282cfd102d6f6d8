#!/usr/bin/env bash
# Finds (or installs) OpenSSH's server `sshd` and client `ssh`/`ssh-keygen`
# for the SFTP tests (tests/storage starts its own sshd on a free loopback
# port with throw-away keys and config in a temporary folder; no system
# configuration is read or changed, and no system service is started).
# Progress goes to stderr; the only line on stdout is the absolute path of
# sshd, so callers can do
#   ENVARC_SSHD=$(bash .ci/setup-sshd.sh)
set -euo pipefail

log() { echo "setup-sshd: $*" >&2; }

have() { [ -x /usr/sbin/sshd ] && command -v ssh >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1; }

if [ -n "${ENVARC_SSHD:-}" ] && [ -x "$ENVARC_SSHD" ] && command -v ssh >/dev/null 2>&1; then
    log "ok: ENVARC_SSHD=$ENVARC_SSHD"
    echo "$ENVARC_SSHD"
    exit 0
fi
if ! have; then
    if [ "$(id -u)" != 0 ]; then
        log "error: sshd/ssh missing and not root: run 'apt-get install openssh-server openssh-client'"
        exit 1
    fi
    log "installing openssh-server openssh-client (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d: install the package without starting the system service.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends openssh-server openssh-client >&2
fi
# As root, sshd needs its (empty) privilege separation folder; the system
# service would make it at boot.
if [ "$(id -u)" = 0 ]; then
    mkdir -p /run/sshd
    chmod 0755 /run/sshd
fi
log "ok: /usr/sbin/sshd ($(ssh -V 2>&1))"
echo /usr/sbin/sshd
