#!/usr/bin/env bash
# Installs the system tools the test command needs and a fresh machine may lack:
# promtool (Debian's prometheus package) for the alert-rule tests.
set -euo pipefail
if command -v promtool >/dev/null; then exit 0; fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-tools: installing promtool (Debian package prometheus)" >&2
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# The package starts a service on Debian hosts with systemd; we only want the binaries.
$SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
command -v promtool >/dev/null
