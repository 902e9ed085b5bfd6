"""Fault benchmark (issue 12, Measure): how fast the app leaves on SIGTERM to its process group,
how soon a full disk is told, how soon it recovers once space is back.

    python tests/bench/bench_faults.py [--runs 3]      (root: it mounts a 3 MiB tmpfs)

  (a) SIGTERM to the app process only (the baseline, as `kill PID` sends it) -> exit 0;
  (b) SIGTERM to the whole process group with os.killpg (`systemctl stop`, a closing terminal),
      the browser closed cleanly -> exit 0. Interleaved with (a); prints medians and (b)/(a);
  (c) a 3 MiB tmpfs as --data-dir, linked, filled right after `connected`: seconds from the disk
      being full to the first storage notice (the link backup, ``flush_delay_seconds`` = 1 later);
  (d) the filler removed: seconds until the state file holds the events of the outage, and until
      the next backup succeeds (the retry).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.e2e.harness import AppProcess, can_mount, fill_disk, tmpfs, wait_until, write_settings  # noqa: E402
from tests.whatsapp_sim.control import Simulator  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def link(data: Path, sim: Simulator) -> AppProcess:
    app = AppProcess(data, sim.url).start()
    app.wait_for(lambda e: e.get("event") == "qr", 60)
    sim.link()
    app.wait_state("connected", 60)
    return app


def time_exit(data: Path, url: str, group: bool) -> float:
    """Seconds from SIGTERM to exit 0 with the browser gone, on a linked profile."""
    app = AppProcess(data, url).start()
    try:
        app.wait_state("connected", 60)
        time.sleep(1.0)  # settled: the state is written, the page is live
        assert app.proc is not None
        t0 = time.monotonic()
        if group:
            os.killpg(app.proc.pid, signal.SIGTERM)
        else:
            app.proc.send_signal(signal.SIGTERM)
        code = app.proc.wait(120)
        wait_until(lambda: not app.browser_pids(), 30, 0.02)
        elapsed = time.monotonic() - t0
        assert code == 0, (code, app.stderr_lines[-10:])
        assert any(e.get("reason") == "exit" for e in app.of("backup")), app.summary()
        bad = [line for line in app.stderr_lines if "Traceback" in line or "Future exception" in line]
        assert not bad, bad
        return elapsed
    finally:
        app.close()


def full_disk(root: Path, sim: Simulator) -> tuple[float, float, str, float, float]:
    """(seconds to the first notice, seconds to recover, its kind, seconds to the backup's notice)
    on a real 3 MiB tmpfs."""
    with tmpfs(root / "small", "3m") as disk:
        data = disk / "data"
        write_settings(data, flush_delay_seconds=1)
        app = link(data, sim)
        try:
            mark = len(app.events)
            filler = fill_disk(disk)
            t_full = time.monotonic()
            notice = app.wait_for(lambda e: e.get("event") == "notice" and e.get("kind") in
                                  ("storage_full", "backup_failed", "state_write_failed"), 120, after=mark)
            to_notice = notice["_t"] - (t_full - app.started_at)
            backup_notice = app.wait_for(lambda e: e.get("event") == "notice" and e.get("kind") in
                                         ("storage_full", "backup_failed"), 120, after=mark)
            to_backup_notice = backup_notice["_t"] - (t_full - app.started_at)
            mark = len(app.events)
            filler.unlink()
            t_free = time.monotonic()
            state_file = data / "state" / "session-state.json"

            def outage_written() -> bool:
                try:
                    return any(h["event"] == "backup_failed" for h in json.loads(state_file.read_text())["history"])
                except (OSError, ValueError):
                    return False

            wait_until(outage_written, 60, 0.05)
            to_state = time.monotonic() - t_free
            backup = app.wait_for(lambda e: e.get("event") == "backup", 600, after=mark)
            to_recover = backup["_t"] - (t_free - app.started_at)
            history = json.loads((data / "state" / "session-state.json").read_text())["history"]
            assert any(h["event"] == "backup_failed" for h in history), "the outage's events reached the disk"
            assert app.terminate(120) == 0
            return to_notice, to_recover, str(notice["kind"]), to_backup_notice, to_state
        finally:
            app.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="linda-bench-faults-"))
    sim = Simulator(free_port(), root / "sim", loading_seconds=0.3)
    sim.start()
    try:
        data = root / "data"
        write_settings(data, flush_delay_seconds=1)
        app = link(data, sim)
        app.wait_for(lambda e: e.get("event") == "backup", 60)
        assert app.terminate(120) == 0
        app.close()
        single, group = [], []
        for _ in range(args.runs):
            single.append(time_exit(data, sim.url, group=False))
            group.append(time_exit(data, sim.url, group=True))
        a, b = statistics.median(single), statistics.median(group)
        print(f"runs: {args.runs} each (interleaved), exit backup taken every time, exit code 0")
        print(f"(a) SIGTERM to the app process   median {a:5.2f} s  (min {min(single):.2f}, max {max(single):.2f})")
        print(f"(b) SIGTERM to the process group median {b:5.2f} s  (min {min(group):.2f}, max {max(group):.2f})")
        print(f"ratio (b)/(a) = {b / a:.2f}")
        reason = can_mount()
        if reason:
            print(f"(c)/(d) skipped: {reason}")
            return
        to_notice, to_recover, kind, to_backup_notice, to_state = full_disk(root, sim)
        print(f"(c) disk full -> first notice ({kind})  {to_notice:5.2f} s")
        print(f"    disk full -> the backup's storage notice  {to_backup_notice:5.2f} s"
              "  (the link backup is due 1 s after connected)")
        print(f"(d) space freed -> state file written  {to_state:5.2f} s  (the store retries every 5 s)")
        print(f"    space freed -> backup made         {to_recover:5.2f} s  (the service's first retry)")
    finally:
        sim.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
