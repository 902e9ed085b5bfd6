#!/usr/bin/env bash
# Runs the whole test suite the way CI does: inside a private D-Bus session with a real,
# unlocked Secret Service (gnome-keyring) that lives only as long as this run.
# Extra arguments go to pytest, e.g.  bash tests/run.sh tests/unit -k backup
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${LINDA_TEST_SESSION:-}" ]; then
  exec env LINDA_TEST_SESSION=1 dbus-run-session -- bash "$0" "$@"
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export XDG_RUNTIME_DIR="$scratch/runtime" XDG_DATA_HOME="$scratch/data" XDG_CONFIG_HOME="$scratch/config"
mkdir -p "$XDG_RUNTIME_DIR" "$XDG_DATA_HOME" "$XDG_CONFIG_HOME"
chmod 700 "$XDG_RUNTIME_DIR"
printf %s test-keyring-password | gnome-keyring-daemon --unlock --components=secrets >/dev/null

export QT_QPA_PLATFORM=offscreen
export LINDA_BROWSER="${LINDA_BROWSER:-/usr/bin/chromium}"
export PYTHONDONTWRITEBYTECODE=1

python3 -m pytest -p no:cacheprovider "$@"
