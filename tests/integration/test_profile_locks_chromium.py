"""Stale locks and orphaned browsers with a real Chromium started as a plain subprocess (the way a
crashed app or a dev server leaves it), killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from linda_desktop.base.errors import ProfileInUse
from linda_desktop.session.profile import (
    clear_stale_locks,
    find_browser_processes,
    profile_lock_owner,
    terminate_orphan_browsers,
)
from tests.helpers.chromium_profile import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(os.name != "posix", reason="POSIX signals and SingletonLock symlinks"),
]

BASE_ARGS = [
    "--headless",
    "--no-sandbox",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


def launch(profile_dir: Path) -> subprocess.Popen:
    """Start Chromium on ``profile_dir`` in its own process group; wait until it holds the lock."""
    proc = subprocess.Popen(
        [CHROMIUM, *BASE_ARGS, f"--user-data-dir={profile_dir}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        owner = profile_lock_owner(profile_dir)
        if owner is not None and owner.pid == proc.pid:
            return proc
        if proc.poll() is not None:
            raise AssertionError(f"chromium exited early ({proc.returncode})")
        time.sleep(0.05)
    kill_group(proc)
    raise AssertionError("chromium never took the profile lock")


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


def relaunch_works(profile_dir: Path) -> tuple[bool, str]:
    """A short real launch on the profile: True when Chromium loads a page and exits cleanly."""
    result = subprocess.run(
        [CHROMIUM, *BASE_ARGS, f"--user-data-dir={profile_dir}", "--dump-dom",
         "data:text/html,<p>relaunched</p>"],
        capture_output=True, text=True, timeout=60,
    )
    return result.returncode == 0 and "relaunched" in result.stdout, result.stderr[-500:]


def singletons(profile_dir: Path) -> list[str]:
    return sorted(p.name for p in profile_dir.iterdir() if p.name.startswith("Singleton"))


def test_lock_of_a_sigkilled_browser_is_cleared_and_relaunch_works(tmp_path):
    profile_dir = tmp_path / "profile"
    proc = launch(profile_dir)
    owner = profile_lock_owner(profile_dir)
    assert owner.local and owner.host == socket.gethostname() and owner.pid == proc.pid
    kill_group(proc)
    assert singletons(profile_dir) == ["SingletonCookie", "SingletonLock", "SingletonSocket"]

    removed = clear_stale_locks(profile_dir)
    assert sorted(removed) == ["SingletonCookie", "SingletonLock", "SingletonSocket"]
    assert singletons(profile_dir) == [] and profile_lock_owner(profile_dir) is None
    ok, err = relaunch_works(profile_dir)
    assert ok, err


def test_live_browser_lock_is_left_alone(tmp_path):
    profile_dir = tmp_path / "profile"
    proc = launch(profile_dir)
    try:
        with pytest.raises(ProfileInUse) as info:
            clear_stale_locks(profile_dir)
        assert info.value.pid == proc.pid
        assert str(proc.pid) in str(info.value)
        assert "SingletonLock" in singletons(profile_dir)
        assert proc.poll() is None
    finally:
        kill_group(proc)


def test_lock_naming_another_host_is_cleared(tmp_path):
    profile_dir = tmp_path / "profile"
    profile_dir.mkdir()
    ok, _ = relaunch_works(profile_dir)  # a real profile, made by Chromium
    assert ok
    os.symlink("otherhost-4242", profile_dir / "SingletonLock")
    os.symlink("1234567890", profile_dir / "SingletonCookie")
    ok, err = relaunch_works(profile_dir)
    assert not ok and "another computer" in err  # Chromium refuses such a profile
    owner = profile_lock_owner(profile_dir)
    assert (owner.host, owner.pid, owner.local) == ("otherhost", 4242, False)

    assert sorted(clear_stale_locks(profile_dir)) == ["SingletonCookie", "SingletonLock"]
    ok, err = relaunch_works(profile_dir)
    assert ok, err


def test_reused_pid_that_is_not_our_browser_is_stale(tmp_path):
    """The lock names a live pid on this host, but that process is not a browser on this profile
    (the pid was reused after a crash): the lock is stale."""
    profile_dir = tmp_path / "profile"
    profile_dir.mkdir()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        os.symlink(f"{socket.gethostname()}-{sleeper.pid}", profile_dir / "SingletonLock")
        assert clear_stale_locks(profile_dir) == ["SingletonLock"]
        assert sleeper.poll() is None  # untouched
    finally:
        sleeper.kill()
        sleeper.wait()


def test_terminate_orphans_only_on_our_profile(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    orphan = launch(ours)
    other = launch(theirs)
    try:
        our_pids = find_browser_processes(ours)
        their_pids = find_browser_processes(theirs)
        assert orphan.pid in our_pids and other.pid in their_pids
        assert not set(our_pids) & set(their_pids)

        ended = terminate_orphan_browsers(ours, timeout=5)
        # Every process seen earlier, plus any helper the browser started meanwhile.
        assert set(our_pids) <= set(ended) and not set(ended) & set(their_pids)
        orphan.wait(10)
        assert find_browser_processes(ours) == []
        assert other.poll() is None
        assert set(their_pids) <= set(find_browser_processes(theirs))
        # The lock it left is now stale and clears; the profile is usable again.
        clear_stale_locks(ours)
        ok, err = relaunch_works(ours)
        assert ok, err
    finally:
        kill_group(orphan)
        kill_group(other)


def test_find_browser_processes_matches_exact_dir(tmp_path):
    """A profile whose path is a prefix of another's does not match it."""
    longer = tmp_path / "profile-2"
    proc = launch(longer)
    try:
        assert find_browser_processes(tmp_path / "profile") == []
        assert proc.pid in find_browser_processes(longer)
        assert terminate_orphan_browsers(tmp_path / "profile") == []
        assert proc.poll() is None
    finally:
        kill_group(proc)
