"""kill -9 in the middle of backups: a real subprocess, killed at random moments, many times.
Afterwards every listed backup verifies and restores to exactly what its manifest lists, no
half-written file is ever listed, the known-good backup survives, and the next backup and
rotation clean up the leftovers (temp files, chunks no manifest names)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from linda_desktop.session.backup import SUFFIX, BackupStore
from linda_desktop.session.chunkstore import MANIFEST_SUFFIX
from tests.helpers.fake_profile import make_fake_profile, tree_digest

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("backup_worker.py")
ITERATIONS = 25


def start_worker(store: BackupStore, data: Path, profile: Path, origin: str, key: bytes,
                 *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [str(store.backups_dir), str(data / "work"), str(profile), origin, key.hex(), *extra]
    worker = subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE, text=True, env=env,
                              cwd=REPO)
    assert worker.stdout is not None
    assert worker.stdout.readline().strip() == "ready"
    return worker


def chunk_files(store: BackupStore) -> set[str]:
    return {p.name for p in (store.backups_dir / "chunks").rglob("*") if p.is_file() and not p.name.endswith(".tmp")}


def check_every_backup(store: BackupStore, data: Path, rng: random.Random) -> set[str]:
    """Every listed backup verifies; one of them, at random, restores to exactly its manifest.
    Returns the chunks the listed backups name."""
    names = os.listdir(store.backups_dir)
    listed = store.list()
    assert all(not info.path.name.startswith(".") for info in listed)
    assert {info.path.name for info in listed} == {n for n in names if n.endswith((SUFFIX, MANIFEST_SUFFIX))}
    referenced: set[str] = set()
    manifests = {}
    for info in listed:
        manifest = store.verify(info.id)  # every complete backup is whole and authentic
        manifests[info.id] = manifest
        referenced.update(item[0] for entry in manifest["files"] for item in entry.get("chunks", []))
    assert referenced <= chunk_files(store)
    pick = rng.choice(listed)
    dest = data / f"restored-{time.monotonic_ns()}"
    store.extract(pick.id, dest)
    assert tree_digest(dest) == {f["path"]: f["sha256"] for f in manifests[pick.id]["files"]}
    return referenced


def test_sigkill_mid_backup_never_damages_older_backups(tmp_path: Path) -> None:
    rng = random.Random(os.environ.get("LINDA_KILL_SEED", str(time.time_ns())))
    key = os.urandom(32)
    data = tmp_path / "data"
    profile = data / "profile"
    origin = make_fake_profile(profile, idb_mb=6, table_mb=2, caches_mb=0.1)
    store = BackupStore(data / "backups", key, keep=3, work_dir=data / "work")
    first = store.create(profile, origin_url=origin, reason="manual")
    store.mark_known_good(first.id)

    killed_mid_write = 0
    made_total = 0
    started = time.monotonic()
    for _ in range(ITERATIONS):
        # Each round the worker "compacts" (a new 1 MiB table): every backup has chunks to write.
        worker = start_worker(store, data, profile, origin, key, "--churn", "1:1024")
        time.sleep(rng.uniform(0.0, 0.4))
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        assert worker.stdout is not None
        made_total += sum(1 for line in worker.stdout if line.startswith("made"))
        worker.stdout.close()

        temps = list(store.backups_dir.rglob("*.tmp"))
        referenced = check_every_backup(store, data, rng)
        orphans = chunk_files(store) - referenced
        killed_mid_write += bool(temps or orphans)
        assert first.id in {info.id for info in store.list()}  # known-good never rotated away

    print(f"kills mid-write: {killed_mid_write}/{ITERATIONS}, backups completed by workers: {made_total}")
    assert killed_mid_write >= 3, f"only {killed_mid_write} kills landed while a backup was being written"
    assert made_total >= 1  # the worker did complete backups too (so rotation ran under kills)

    # The next backup and rotation remove what the killed workers left.
    store.create(profile, origin_url=origin)
    store.rotate()
    assert not list(store.backups_dir.rglob("*.tmp"))
    assert not [p for p in (data / "work").iterdir() if p.name.startswith(".linda-")]
    referenced = check_every_backup(store, data, rng)
    assert chunk_files(store) == referenced  # no chunk left that no backup needs
    assert time.monotonic() - started < 90


def test_backing_up_never_writes_to_the_profile(tmp_path: Path) -> None:
    """Killed or not, a backup only reads the profile."""
    key = os.urandom(32)
    data = tmp_path / "data"
    profile = data / "profile"
    origin = make_fake_profile(profile, idb_mb=6, table_mb=2, caches_mb=0.1)
    before = tree_digest(profile)
    store = BackupStore(data / "backups", key, keep=3, work_dir=data / "work")
    rng = random.Random(7)
    for delay in (0.05, 0.15, 0.3):
        worker = start_worker(store, data, profile, origin, key)
        time.sleep(delay)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        assert worker.stdout is not None
        worker.stdout.close()
        if store.list():
            check_every_backup(store, data, rng)
    assert tree_digest(profile) == before
