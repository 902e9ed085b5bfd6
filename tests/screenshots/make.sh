#!/usr/bin/env bash
# Regenerate the README screenshots under Xvfb + openbox + tint2 (a real X tray).
#   bash tests/screenshots/make.sh            # the full app against the WhatsApp simulator
#   bash tests/screenshots/make.sh preview    # the real UI fed with fixed events (no browser)
# PNGs go to resources/screenshots/ (override with --out DIR). Runs in a private D-Bus session
# with an unlocked throw-away keyring, like tests/run.sh, so backups work in the app shots.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -z "${LINDA_SHOTS_SESSION:-}" ]; then
  exec env LINDA_SHOTS_SESSION=1 dbus-run-session -- bash "$0" "$@"
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export XDG_RUNTIME_DIR="$scratch/runtime" XDG_DATA_HOME="$scratch/data" XDG_CONFIG_HOME="$scratch/config"
mkdir -p "$XDG_RUNTIME_DIR" "$XDG_DATA_HOME" "$XDG_CONFIG_HOME"
chmod 700 "$XDG_RUNTIME_DIR"
printf %s screenshot-keyring | gnome-keyring-daemon --unlock --components=secrets >/dev/null
export LINDA_BROWSER="${LINDA_BROWSER:-/usr/bin/chromium}"
export PYTHONDONTWRITEBYTECODE=1

python3 -m tests.screenshots.shoot "$@"
