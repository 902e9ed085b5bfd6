"""Subprocess for the kill tests: backs up a profile (and rotates) in a loop until killed.

    python tests/unit/backup_worker.py BACKUPS_DIR WORK_DIR PROFILE_DIR ORIGIN KEY_HEX [--churn TABLES:KB] [--keep N]

Prints "ready" once set up, then per round: "gc-start" just before rotate(), "gc-done SECONDS"
after it, and "made ID" once the backup is committed. With ``--churn`` every round first acts as
a LevelDB compaction on the profile: writes new tables of fresh bytes and deletes the oldest,
so every backup has new chunks to write and every rotation has chunks to collect.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from linda_desktop.session.backup import BackupStore


def churn(profile: Path, tables: int, size_kb: int) -> None:
    """A LevelDB compaction: ``tables`` new tables of fresh bytes, the oldest ones deleted."""
    store = next((profile / "Default" / "IndexedDB").glob("*.indexeddb.leveldb"))
    old = sorted(store.glob("*.ldb"))
    stamp = time.time_ns() // 1000 % 10**12
    for n in range(tables):
        (store / f"{stamp:012d}{n:04d}.ldb").write_bytes(os.urandom(size_kb * 1024))
    for table in old[: max(0, len(old) - 2 * tables)]:
        table.unlink()


def main() -> None:
    backups, work, profile, origin, key_hex = sys.argv[1:6]
    extra = sys.argv[6:]
    keep = int(extra[extra.index("--keep") + 1]) if "--keep" in extra else 3
    store = BackupStore(Path(backups), bytes.fromhex(key_hex), keep=keep, work_dir=Path(work))
    print("ready", flush=True)
    while True:
        if "--churn" in extra:
            tables, size_kb = extra[extra.index("--churn") + 1].split(":")
            churn(Path(profile), int(tables), int(size_kb))
        info = store.create(Path(profile), origin_url=origin, reason="auto")
        print("made", info.id, flush=True)
        print("gc-start", flush=True)
        started = time.perf_counter()
        store.rotate()
        print("gc-done", f"{time.perf_counter() - started:.6f}", flush=True)


if __name__ == "__main__":
    main()
