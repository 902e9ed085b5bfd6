"""Benchmark: our encrypted backup vs the old system's copy and vs tar.gz, on one profile.

    python tests/bench/bench_backup.py [--idb-mb 200] [--caches-mb 60] [--keep DIR]

The profile's IndexedDB is written by real Chromium (the test page stores ~16 KB values, half
random bytes like encrypted keys/media, half chat-like JSON text, and Chromium snappy-compresses
its tables); the caches (Cache/, Code Cache/, Service Worker/) are synthetic files of realistic
sizes and content (JS-like text and incompressible media), because a local page cannot make
Chromium fill them. All timings in the same run, warm page cache, best of 2.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from linda_desktop.session.backup import BackupStore  # noqa: E402
from linda_desktop.session.profile import session_files  # noqa: E402
from tests.helpers.chromium_profile import free_port, make_real_profile  # noqa: E402
from tests.helpers.fake_profile import mixed_bytes  # noqa: E402


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


def timed(fn, repeat: int = 2) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idb-mb", type=float, default=200, help="target IndexedDB size on disk")
    parser.add_argument("--caches-mb", type=float, default=60)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    opts = parser.parse_args()

    root = opts.keep or Path(tempfile.mkdtemp(prefix="linda-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    profile = root / "data" / "profile"
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
        whole = du(profile)
        subprocess.run(["sync"], check=False)
        for path in profile.rglob("*"):  # warm the page cache for everyone alike
            if path.is_file() and not path.is_symlink():
                path.read_bytes()

        key = os.urandom(32)
        results: dict[str, tuple[float, int]] = {}
        for label, compress in (("ours (adaptive deflate)", True), ("ours (no compression)", False)):
            store = BackupStore(root / "data" / f"backups-{compress}", key, work_dir=root / "data" / "work", compress=compress)
            seconds, info = timed(lambda: store.create(profile, origin_url=origin, reason="manual"))
            results[label] = (seconds, info.size)
            if compress:
                ours_store, ours_info = store, info
        verify_s, _ = timed(lambda: ours_store.verify(ours_info.id))

        def restore() -> None:
            target = root / "data" / "restored"
            shutil.rmtree(target, ignore_errors=True)
            ours_store.restore(ours_info.id, target)

        restore_s, _ = timed(restore)

        def copytree() -> int:
            target = root / "copy"
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(profile, target, symlinks=True)
            return du(target)

        copy_s, copy_size = timed(copytree)
        results["old system: copytree of the profile"] = (copy_s, copy_size)

        def targz() -> int:
            out = root / "profile.tar.gz"
            subprocess.run(["tar", "czf", str(out), "-C", str(profile.parent), profile.name], check=True)
            return out.stat().st_size

        tar_s, tar_size = timed(targz)
        results["tar czf of the profile"] = (tar_s, tar_size)

        print(f"profile: {mb(whole)} in all, IndexedDB {mb(idb)} (written by Chromium in {chromium_s:.1f} s),")
        caches = sum(du(profile / "Default" / name) for name in ("Cache", "Code Cache", "Service Worker", "GPUCache"))
        print(f"         caches {mb(caches)}, session files (what we back up) {mb(session)}")
        print(f"{'':40s} {'time':>9s} {'size':>11s}")
        for label, (seconds, size) in results.items():
            print(f"{label:40s} {seconds:8.2f}s {mb(size)}")
        print(f"{'ours: verify (decrypt + SHA-256 all)':40s} {verify_s:8.2f}s")
        print(f"{'ours: restore (extract, verify, swap)':40s} {restore_s:8.2f}s")
        ours_s, ours_size = results["ours (adaptive deflate)"]
        raw_s, raw_size = results["ours (no compression)"]
        print("ratios (ours with adaptive deflate):")
        print(f"  size vs tar.gz      {ours_size / tar_size:6.2f}x   time vs tar czf   {ours_s / tar_s:6.2f}x")
        print(f"  size vs copytree    {ours_size / copy_size:6.2f}x   time vs copytree  {ours_s / copy_s:6.2f}x")
        print(f"  deflate saves       {(raw_size - ours_size) / raw_size * 100:5.1f} %   and costs {ours_s - raw_s:+.2f} s")
        print("  (copytree/tar do not fsync; our backup fsyncs its file before it counts)")
        ok = ours_size < tar_size and ours_s <= tar_s
        print("target (smaller than tar.gz and not slower):", "MET" if ok else "NOT MET")
    finally:
        if opts.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
