#!/usr/bin/env bash
# System packages the test suite needs: Debian's Chromium for the browser tests and a CJK font
# so Chinese renders in screenshots. Skipped when already present.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -e /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || need+=(fonts-wqy-zenhei)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
# PostgreSQL refuses to run as root, and CI runs as root: the storage tests start the PostgreSQL that the
# `pgserver` wheel ships as this unprivileged user (Debian's own postgresql package creates it too).
if ! id -u postgres >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO useradd --system --no-create-home --shell /usr/sbin/nologin postgres
fi
