#!/usr/bin/env bash
# Regenerate the README screenshots under Xvfb + openbox + tint2 (a real X tray).
#   bash tests/screenshots/make.sh            # the full app against the WhatsApp simulator
#   bash tests/screenshots/make.sh preview    # the real UI fed with fixed events (no browser)
# PNGs go to resources/screenshots/ (override with --out DIR).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${DBUS_SESSION_BUS_ADDRESS:-}" ] && command -v dbus-run-session >/dev/null; then
  exec dbus-run-session -- bash "$0" "$@"
fi
exec python3 -m tests.screenshots.shoot "$@"
