"""Benchmark: deduplicated chunk-store backups against today's one-archive format, on one profile.

    python tests/bench/bench_backup.py [--idb-mb 200] [--caches-mb 60] [--keep DIR]

The profile's IndexedDB is written by real Chromium (the test page stores ~16 KB values, half
random bytes like encrypted keys/media, half chat-like JSON text, and Chromium snappy-compresses
its tables); the caches (Cache/, Code Cache/, Service Worker/) are synthetic files, which no
backup includes. "~2 % changed" = Chromium reopens the profile and rewrites ~2 % of the records
(new values under existing keys, as a day of chats does), so LevelDB writes its log, new tables
and compacts as it would. Both formats back up the same profile states in the same run; first
backups and restores are best of 2 (warm page cache), generations are one run each.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from linda_desktop.session.backup import FORMAT_ARCHIVE, FORMAT_CHUNKED, BackupStore
from linda_desktop.session.profile import session_files
from tests.helpers.chromium_profile import free_port, make_real_profile
from tests.helpers.fake_profile import mixed_bytes

GENERATIONS = 6


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def mb(n: float) -> str:
    return f"{n / 1e6:8.1f} MB"


def add_caches(profile: Path, total_mb: float, seed: int = 7) -> None:
    """Cache/ (HTTP cache entries), Code Cache/ (V8 bytecode), Service Worker/ (CacheStorage)."""
    rng = random.Random(seed)
    default = profile / "Default"
    shares = {"Cache/Cache_Data": 0.45, "Code Cache/js": 0.2, "Service Worker/CacheStorage/0a1b/2c3d": 0.35}
    for folder, share in shares.items():
        left = int(total_mb * share * 1e6)
        n = 0
        while left > 0:
            size = min(left, rng.choice([8_000, 40_000, 150_000, 600_000, 2_000_000]))
            target = default / folder / f"{rng.getrandbits(64):016x}_{n}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(mixed_bytes(size, rng, text_share=0.55))
            left -= size
            n += 1


CPU: dict[int, float] = {}  # id(fn) -> CPU seconds of its fastest run


def timed(fn: Callable[[], Any], repeat: int = 2, before: Callable[[], None] | None = None) -> tuple[float, Any]:
    """Best wall time of ``repeat`` runs (and its process CPU time, in CPU[id(fn)])."""
    best, result = float("inf"), None
    for _ in range(repeat):
        if before is not None:
            before()
        started, cpu = time.perf_counter(), time.process_time()
        result = fn()
        took = time.perf_counter() - started
        if took < best:
            best, CPU[id(fn)] = took, time.process_time() - cpu
    return best, result


def warm(profile: Path) -> None:
    subprocess.run(["sync"], check=False)
    for path in profile.rglob("*"):  # the page cache warm for both formats alike
        if path.is_file() and not path.is_symlink():
            path.read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--idb-mb", type=float, default=200, help="target IndexedDB size on disk")
    parser.add_argument("--caches-mb", type=float, default=60)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    opts = parser.parse_args()

    root = opts.keep or Path(tempfile.mkdtemp(prefix="linda-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    profile = data / "profile"
    work = data / "work"
    try:
        port = free_port()
        origin = f"http://127.0.0.1:{port}/"
        started = time.perf_counter()
        # ~0.77 MB on disk per MB written (half of it is text that snappy compresses).
        make_real_profile(profile, port=port, payload_mb=opts.idb_mb / 0.77)
        chromium_s = time.perf_counter() - started
        add_caches(profile, opts.caches_mb)
        idb = du(profile / "Default" / "IndexedDB")
        session = sum((profile / rel).stat().st_size for rel in session_files(profile, origin))
        warm(profile)
        key = os.urandom(32)

        def fresh(fmt: str, name: str, keep: int = 5) -> BackupStore:
            folder = data / name
            shutil.rmtree(folder, ignore_errors=True)
            return BackupStore(folder, key, keep=keep, work_dir=work, backup_format=fmt)

        # ---- first backup, each format, best of 2 (a fresh, empty store each time)
        stores: dict[str, BackupStore] = {}

        def first(fmt: str) -> Any:
            stores[fmt] = fresh(fmt, f"first-{fmt}")
            return stores[fmt].create(profile, origin_url=origin, reason="manual")

        def first_old() -> Any:
            return first(FORMAT_ARCHIVE)

        def first_new() -> Any:
            return first(FORMAT_CHUNKED)

        old_s, old_info = timed(first_old)
        new_s, new_info = timed(first_new)
        old_store, new_store = stores[FORMAT_ARCHIVE], stores[FORMAT_CHUNKED]

        # ---- a second backup of the unchanged profile
        second_s, second_info = timed(lambda: new_store.create(profile, origin_url=origin, reason="auto"))
        old_second_s, old_second_info = timed(lambda: old_store.create(profile, origin_url=origin, reason="auto"))

        # ---- restore, best of 2 each
        def restore(store: BackupStore, backup_id: str) -> Callable[[], None]:
            def run() -> None:
                store.restore(backup_id, data / "restored")
            return run

        def clear_restored() -> None:
            shutil.rmtree(data / "restored", ignore_errors=True)
            shutil.rmtree(work / "replaced-profiles", ignore_errors=True)

        old_restore, new_restore = restore(old_store, old_info.id), restore(new_store, new_info.id)
        old_restore_s, _ = timed(old_restore, repeat=3, before=clear_restored)
        new_restore_s, _ = timed(new_restore, repeat=3, before=clear_restored)
        old_restore_cpu, new_restore_cpu = CPU[id(old_restore)], CPU[id(new_restore)]
        clear_restored()

        # ---- 6 generations with ~2 % changed between two, as the app keeps them (5 + known-good)
        gen = {fmt: fresh(fmt, f"gen-{fmt}") for fmt in (FORMAT_ARCHIVE, FORMAT_CHUNKED)}
        change_mb = opts.idb_mb * 0.02 / 0.77
        rows: list[tuple[int, dict[str, tuple[float, int]]]] = []
        chromium_change_s = 0.0
        for n in range(GENERATIONS):
            if n:
                t0 = time.perf_counter()
                make_real_profile(profile, port=port, payload_mb=change_mb)
                chromium_change_s += time.perf_counter() - t0
                warm(profile)
            row: dict[str, tuple[float, int]] = {}
            for fmt, store in gen.items():
                t0 = time.perf_counter()
                info = store.create(profile, origin_url=origin, reason="auto")
                row[fmt] = (time.perf_counter() - t0, info.written or info.size)
                if n == 0:
                    store.mark_known_good(info.id)
                store.rotate()
            rows.append((n, row))
        disk = {fmt: du(store.backups_dir) for fmt, store in gen.items()}
        kept = {fmt: len(store.list()) for fmt, store in gen.items()}
        full_new = rows[0][1][FORMAT_CHUNKED][1]
        full_old = rows[0][1][FORMAT_ARCHIVE][1]
        for store in gen.values():
            for info in store.list():
                store.verify(info.id)

        # ---- report
        print(f"profile: IndexedDB {mb(idb)} written by Chromium in {chromium_s:.1f} s; session files "
              f"(what is backed up) {mb(session)}; caches {opts.caches_mb:.0f} MB (never backed up)")
        print(f"{'':46s} {'time':>8s} {'written':>11s}")
        print(f"{'first backup, today (one archive)':46s} {old_s:7.2f}s {mb(old_info.size)}")
        print(f"{'first backup, new (chunk store)':46s} {new_s:7.2f}s {mb(new_info.written)}")
        print(f"{'second backup, unchanged profile, today':46s} {old_second_s:7.2f}s {mb(old_second_info.size)}")
        print(f"{'second backup, unchanged profile, new':46s} {second_s:7.3f}s {mb(second_info.written)}")
        ch_old_s, ch_old_b = rows[1][1][FORMAT_ARCHIVE]
        ch_new_s, ch_new_b = rows[1][1][FORMAT_CHUNKED]
        print(f"{'backup after ~2 % changed, today':46s} {ch_old_s:7.2f}s {mb(ch_old_b)}")
        print(f"{'backup after ~2 % changed, new':46s} {ch_new_s:7.2f}s {mb(ch_new_b)}")
        print(f"{'restore, today (best of 3; its CPU time)':46s} {old_restore_s:7.2f}s  CPU {old_restore_cpu:.2f}s")
        print(f"{'restore, new (best of 3; its CPU time)':46s} {new_restore_s:7.2f}s  CPU {new_restore_cpu:.2f}s")
        print(f"generations ({GENERATIONS}, ~2 % changed between two; Chromium took {chromium_change_s:.1f} s "
              f"for the changes), written per backup, new vs today:")
        for n, row in rows:
            (to, bo), (tn, bn) = row[FORMAT_ARCHIVE], row[FORMAT_CHUNKED]
            print(f"  #{n + 1}: new {tn:6.2f}s {mb(bn)}   today {to:6.2f}s {mb(bo)}")
        print(f"disk for {kept[FORMAT_CHUNKED]} generations: new {mb(disk[FORMAT_CHUNKED])}, "
              f"today ({kept[FORMAT_ARCHIVE]} kept) {mb(disk[FORMAT_ARCHIVE])}")
        ratios = {
            "first backup time, new / today": (new_s / old_s, None),
            "first backup CPU time, new / today": (CPU[id(first_new)] / CPU[id(first_old)], None),
            "first backup bytes, new / today": (new_info.written / old_info.size, None),
            "unchanged 2nd backup bytes / first (target < 5 %)": (second_info.written / new_info.written, 0.05),
            "unchanged 2nd backup time / first (target < 5 %)": (second_s / new_s, 0.05),
            "~2 % changed backup bytes / first": (ch_new_b / full_new, None),
            "~2 % changed backup time / first": (ch_new_s / rows[0][1][FORMAT_CHUNKED][0], None),
            "disk, 6 generations / one full backup (target <= 1.3x)": (disk[FORMAT_CHUNKED] / full_new, 1.3),
            "disk, 6 generations, new / today": (disk[FORMAT_CHUNKED] / disk[FORMAT_ARCHIVE], None),
            "restore time, new / today (target <= 1.1x)": (new_restore_s / old_restore_s, 1.1),
            "restore CPU time, new / today": (new_restore_cpu / old_restore_cpu, None),
        }
        print("ratios:")
        for label, (value, target) in ratios.items():
            verdict = "" if target is None else ("  MET" if value <= target else "  NOT MET")
            shown = f"{value * 100:6.2f} %" if target == 0.05 else f"{value:6.2f}x"
            print(f"  {label:58s} {shown}{verdict}")
        print(f"  (one full backup today: {mb(full_old)}; every backup is fsynced before it counts)")
    finally:
        if opts.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
