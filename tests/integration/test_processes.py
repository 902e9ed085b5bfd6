"""psutil finds a real Chromium on our profile: the browser and its helpers, the main process,
its create time, and ends the whole tree. The profile path has a space in it: Chromium rewrites
its process title into one space-joined string, which psutil splits at every space."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from linda_desktop.session.profile import clear_stale_locks, profile_lock_owner
from linda_desktop.system import processes
from tests.helpers.chromium_profile import CHROMIUM

pytestmark = pytest.mark.browser

ARGS = ["--headless", "--no-sandbox", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]


def launch(profile_dir: Path) -> subprocess.Popen[bytes]:
    """Chromium on ``profile_dir`` in its own session; returns once it holds the profile lock and
    has started at least one helper."""
    proc = subprocess.Popen([CHROMIUM, *ARGS, f"--user-data-dir={profile_dir}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        owner = profile_lock_owner(profile_dir)
        if owner is not None and owner.pid == proc.pid and len(processes.find_browser_processes(profile_dir)) > 1:
            return proc
        if proc.poll() is not None:
            raise AssertionError(f"chromium exited early ({proc.returncode})")
        time.sleep(0.05)
    stop(proc)
    raise AssertionError("chromium never took the profile lock")


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


def rewritten(pid: int) -> bool:
    try:
        data = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"\0" not in data.rstrip(b"\0")


def test_psutil_finds_chromium_and_its_helpers_on_our_profile(tmp_path: Path) -> None:
    profile_dir = tmp_path / "my profile"
    proc = launch(profile_dir)
    try:
        pids = processes.find_browser_processes(profile_dir)
        assert proc.pid in pids
        helpers = [pid for pid in pids if pid != proc.pid]
        assert helpers, "Chromium's helpers (renderer, GPU, utility) name the profile too"
        # Helpers rewrite their titles into one space-joined string: they are found all the same.
        deadline = time.monotonic() + 20
        while not any(rewritten(pid) for pid in processes.find_browser_processes(profile_dir)):
            assert time.monotonic() < deadline, "no helper with a rewritten title appeared"
            time.sleep(0.1)
        pids = processes.find_browser_processes(profile_dir)
        assert processes.main_browser_pid(profile_dir) == proc.pid
        for pid in pids:
            assert processes.browser_owns_profile(pid, profile_dir)
            assert processes.pid_alive(pid)
        assert processes.create_time(proc.pid) == psutil.Process(proc.pid).create_time()
        # Another profile, a prefix of ours and this very process are not "our browser".
        assert processes.find_browser_processes(tmp_path / "my") == []
        assert not processes.browser_owns_profile(proc.pid, tmp_path / "my")
        assert not processes.browser_owns_profile(os.getpid(), profile_dir)
        with pytest.raises(Exception) as info:
            clear_stale_locks(profile_dir)
        assert getattr(info.value, "pid", None) == proc.pid
    finally:
        stop(proc)


def test_terminate_tree_ends_chromium_and_every_helper(tmp_path: Path) -> None:
    profile_dir = tmp_path / "profile"
    proc = launch(profile_dir)
    try:
        before = processes.find_browser_processes(profile_dir)
        ended = processes.terminate_tree(proc.pid, timeout=10)
        assert proc.pid in ended and set(before) <= set(ended)
        assert proc.wait(10) is not None
        deadline = time.monotonic() + 5
        while processes.find_browser_processes(profile_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert processes.find_browser_processes(profile_dir) == []
        assert not processes.pid_alive(proc.pid)
        assert processes.main_browser_pid(profile_dir) is None
        assert clear_stale_locks(profile_dir)  # the lock it left is stale now
    finally:
        stop(proc)
