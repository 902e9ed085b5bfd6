"""Subprocess for test_backup_kill: backs up a profile (and rotates) in a loop until killed.

    python tests/unit/backup_worker.py BACKUPS_DIR WORK_DIR PROFILE_DIR ORIGIN KEY_HEX
Prints "ready" once set up, then one line per finished backup.
"""

from __future__ import annotations

import sys
from pathlib import Path

from linda_desktop.session.backup import BackupStore


def main() -> None:
    backups, work, profile, origin, key_hex = sys.argv[1:6]
    store = BackupStore(Path(backups), bytes.fromhex(key_hex), keep=3, work_dir=Path(work))
    print("ready", flush=True)
    while True:
        info = store.create(Path(profile), origin_url=origin, reason="auto")
        store.rotate()
        print("made", info.id, flush=True)


if __name__ == "__main__":
    main()
