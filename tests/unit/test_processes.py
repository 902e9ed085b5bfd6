"""system.processes with real processes (no browser): the same psutil calls on every OS.

Stand-in "browsers" are real Python processes whose command line carries ``--user-data-dir``,
which is all the lookups read; tests/integration/test_processes.py runs them on a real Chromium."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from linda_desktop.system import processes

SLEEP = "import time; time.sleep(120)"
IGNORE_TERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(120)"
)
TREE = (
    "import subprocess, sys, time; "
    "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']) for _ in range(2)]; "
    "print(' '.join(str(k.pid) for k in kids), flush=True); time.sleep(120)"
)


Started = list[subprocess.Popen[str]]


@pytest.fixture
def spawn() -> Iterator[Started]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def start(started: Started, code: str, *args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, stdout=subprocess.PIPE, text=True)
    started.append(proc)
    return proc


def wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while processes.pid_alive(pid):
        assert time.monotonic() < deadline, f"{pid} still alive"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("args", "profile", "expected"),
    [
        (["chrome", "--user-data-dir=/x/profile", "about:blank"], "/x/profile", True),
        (["chrome", "--user-data-dir", "/x/profile"], "/x/profile", True),
        (["chrome", "--user-data-dir=/x/profile-2"], "/x/profile", False),
        (["chrome", "--user-data-dir=/x/profile"], "/x/profile-2", False),
        # A rewritten title, split by psutil at every space, also inside the path.
        (["chrome", "--type=renderer", "--user-data-dir=/x/my", "profile", "--lang=en"], "/x/my profile", True),
        (["chrome", "--type=renderer", "--user-data-dir=/x/my", "profile", "--lang=en"], "/x/my", False),
        (["chrome", "--user-data-dir=/x/my", "profile"], "/x/my", False),
        # A real argv: the page the browser opened follows the path.
        (["chrome", "--user-data-dir=/x/my", "https://web.whatsapp.com/"], "/x/my", True),
        (["chrome", "--user-data-dir=/x/my profile", "about:blank"], "/x/my profile", True),
        (["chrome", "--user-data-dir=/x/../x/profile"], "/x/profile", True),
        (["chrome", "--profile-directory=Default"], "/x/profile", False),
    ],
)
def test_cmdline_names_profile(args: list[str], profile: str, expected: bool) -> None:
    assert processes.cmdline_names_profile(args, Path(profile)) is expected


def test_relative_profile_dir_is_taken_against_the_process_cwd(tmp_path: Path, spawn: Started) -> None:
    (tmp_path / "profile").mkdir()
    proc = start(spawn, SLEEP, "--user-data-dir=profile", cwd=tmp_path)
    assert processes.browser_owns_profile(proc.pid, tmp_path / "profile")
    assert not processes.browser_owns_profile(proc.pid, Path.cwd() / "profile")


def test_pid_alive_and_create_time(spawn: Started) -> None:
    proc = start(spawn, SLEEP)
    assert processes.pid_alive(proc.pid)
    assert processes.create_time(proc.pid) == psutil.Process(proc.pid).create_time()
    assert processes.create_time(proc.pid) != processes.create_time(psutil.Process().pid)
    proc.kill()
    deadline = time.monotonic() + 10
    while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE:  # exited, not reaped yet
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert not processes.pid_alive(proc.pid)
    proc.wait()
    assert not processes.pid_alive(proc.pid)
    assert processes.create_time(proc.pid) is None
    assert not processes.pid_alive(0) and not processes.pid_alive(-1)


def test_find_browser_processes_and_main_browser_pid(tmp_path: Path, spawn: Started) -> None:
    ours, other = tmp_path / "profile", tmp_path / "profile-2"
    main = start(spawn, SLEEP, f"--user-data-dir={ours}", "about:blank")
    helper = start(spawn, SLEEP, "--type=renderer", f"--user-data-dir={ours}")
    stranger = start(spawn, SLEEP, f"--user-data-dir={other}")
    assert processes.find_browser_processes(ours) == sorted([main.pid, helper.pid])
    assert processes.find_browser_processes(other) == [stranger.pid]
    assert processes.main_browser_pid(ours) == main.pid
    assert processes.browser_owns_profile(helper.pid, ours)
    assert not processes.browser_owns_profile(stranger.pid, ours)
    assert processes.find_browser_processes(tmp_path / "nothing") == []
    assert processes.main_browser_pid(tmp_path / "nothing") is None


def test_end_processes_kills_what_ignores_terminate(spawn: Started) -> None:
    stubborn = start(spawn, IGNORE_TERM)
    assert stubborn.stdout is not None and stubborn.stdout.readline().strip() == "ready"
    polite = start(spawn, SLEEP)
    t0 = time.monotonic()
    assert processes.end_processes([stubborn.pid, polite.pid], timeout=0.5) == []
    assert time.monotonic() - t0 >= 0.5  # it waited for the graceful end first
    # psutil reaped them (so Popen sees no exit code): both are gone.
    assert not processes.pid_alive(stubborn.pid) and not processes.pid_alive(polite.pid)


def test_terminate_tree_ends_the_children_too(spawn: Started) -> None:
    parent = start(spawn, TREE)
    assert parent.stdout is not None
    kids = [int(pid) for pid in parent.stdout.readline().split()]
    assert len(kids) == 2 and all(processes.pid_alive(pid) for pid in kids)
    ended = processes.terminate_tree(parent.pid, timeout=5)
    assert sorted(ended) == sorted([parent.pid, *kids])
    parent.wait(5)
    for pid in kids:
        wait_gone(pid)
    assert processes.terminate_tree(parent.pid) == []


def test_terminate_orphan_browsers_only_on_our_profile(tmp_path: Path, spawn: Started) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    orphan = start(spawn, SLEEP, f"--user-data-dir={ours}")
    stubborn = start(spawn, IGNORE_TERM, "--type=gpu-process", f"--user-data-dir={ours}")
    assert stubborn.stdout is not None and stubborn.stdout.readline().strip() == "ready"
    other = start(spawn, SLEEP, f"--user-data-dir={theirs}")
    ended = processes.terminate_orphan_browsers(ours, timeout=0.5)
    assert sorted(ended) == sorted([orphan.pid, stubborn.pid])
    assert not processes.pid_alive(orphan.pid) and not processes.pid_alive(stubborn.pid)
    assert other.poll() is None
    assert processes.terminate_orphan_browsers(ours) == []
