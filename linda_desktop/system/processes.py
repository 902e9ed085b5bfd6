"""Processes, on psutil on every OS: is a pid alive, which browser processes run on our profile,
and ending them gracefully.

One code path for Linux, macOS and Windows, so the path Windows takes is the one the Linux tests
run. Every lookup tolerates processes that vanish or deny access mid-scan (they are skipped).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

_FLAG = "--user-data-dir"
_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied)
_DEAD_STATUSES = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        return psutil.Process(pid).status() not in _DEAD_STATUSES
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:  # it exists; we may just not look at it
        return True


def create_time(pid: int) -> float | None:
    """When ``pid`` started (seconds since the epoch), or None when it is gone or hidden.
    Together with the pid it names one process: a reused pid has another create time."""
    try:
        return psutil.Process(pid).create_time()
    except _GONE:
        return None


def _same_dir(candidate: str, profile_dir: Path, cwd: str | None) -> bool:
    path = Path(candidate.strip('"')).expanduser()
    if not path.is_absolute() and cwd:
        path = Path(cwd) / path
    try:
        return os.path.realpath(path) == os.path.realpath(profile_dir)
    except (OSError, ValueError):
        return False


def _is_url(arg: str) -> bool:
    return "://" in arg or arg.startswith(("about:", "data:", "chrome:"))


def _dir_values(args: Sequence[str]) -> list[str]:
    """Every value the command line could give ``--user-data-dir``.

    Chromium rewrites its helpers' process titles into one space-joined string, which psutil
    splits at every space, also inside our path: ``--user-data-dir=/x/my profile --type=renderer``
    arrives as ``["--user-data-dir=/x/my", "profile", "--type=renderer"]``. So the value runs on
    over the following words up to the next ``-`` flag, and stops early only before a URL (the
    page a browser was started on). "/x/my" therefore never matches a browser on "/x/my profile"."""
    values: list[str] = []
    for i, arg in enumerate(args):
        if arg.startswith(_FLAG + "="):
            value, rest = arg.split("=", 1)[1], list(args[i + 1:])
        elif arg == _FLAG and i + 1 < len(args):
            value, rest = args[i + 1], list(args[i + 2:])
        else:
            continue
        for word in rest:
            if word.startswith("-"):
                break
            if _is_url(word):
                values.append(value)
            value = f"{value} {word}"
        values.append(value)
    return values


def cmdline_names_profile(args: Sequence[str], profile_dir: Path, cwd: str | None = None) -> bool:
    """Whether a command line passes ``--user-data-dir`` naming ``profile_dir`` (relative values
    are taken against the process's ``cwd``)."""
    return any(_same_dir(value, Path(profile_dir), cwd) for value in _dir_values(args))


def _cwd(proc: psutil.Process) -> str | None:
    try:
        return proc.cwd()
    except (*_GONE, OSError):
        return None


def _names_profile(proc: psutil.Process, args: Sequence[str], profile_dir: Path) -> bool:
    if not any(_FLAG in arg for arg in args):
        return False
    needs_cwd = any(arg.startswith(_FLAG) and not _looks_absolute(arg) for arg in args)
    return cmdline_names_profile(args, profile_dir, _cwd(proc) if needs_cwd else None)


def _looks_absolute(arg: str) -> bool:
    value = arg.split("=", 1)[1] if "=" in arg else ""
    return bool(value) and Path(value.strip('"')).expanduser().is_absolute()


def _browser_procs(profile_dir: Path) -> list[psutil.Process]:
    me = os.getpid()
    found: list[psutil.Process] = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.pid == me:
            continue
        args = proc.info.get("cmdline") or []
        if proc.info.get("status") in _DEAD_STATUSES or not args:
            continue
        if _names_profile(proc, args, profile_dir):
            found.append(proc)
    return sorted(found, key=lambda p: p.pid)


def find_browser_processes(profile_dir: Path) -> list[int]:
    """Pids whose command line passes ``--user-data-dir=<profile_dir>`` (the browser and its
    helpers), sorted; never this process."""
    return [proc.pid for proc in _browser_procs(Path(profile_dir))]


def main_browser_pid(profile_dir: Path) -> int | None:
    """The browser's own process on ``profile_dir`` (the one without ``--type=``, which every
    renderer, GPU and utility helper has), or None when no browser runs on it."""
    for proc in _browser_procs(Path(profile_dir)):
        try:
            args = proc.cmdline()
        except _GONE:
            continue
        if not any(arg.startswith("--type=") or " --type=" in arg for arg in args):
            return proc.pid
    return None


def browser_owns_profile(pid: int, profile_dir: Path) -> bool:
    """Is live ``pid`` a browser (or helper) whose command line names ``profile_dir``? Answered
    from the real command line on every OS, never assumed."""
    try:
        proc = psutil.Process(pid)
        if proc.status() in _DEAD_STATUSES:
            return False
        args = proc.cmdline()
    except _GONE:
        return False
    return _names_profile(proc, args, Path(profile_dir))


def _processes(pids: Iterable[int]) -> list[psutil.Process]:
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except _GONE:
            continue
    return procs


def _signal_all(procs: Iterable[psutil.Process], kill: bool) -> None:
    for proc in procs:
        try:
            proc.kill() if kill else proc.terminate()
        except _GONE:  # gone already, or a reused pid psutil refuses to signal
            continue


def end_processes(pids: Iterable[int], timeout: float = 5.0) -> list[int]:
    """Terminate the given processes (SIGTERM / TerminateProcess), wait up to ``timeout`` for
    them, then kill the ones left. Returns the pids that are still alive (normally none).
    psutil remembers each process's create time, so a pid reused meanwhile is never signalled."""
    procs = _processes(pids)
    _signal_all(procs, kill=False)
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    if alive:
        _signal_all(alive, kill=True)
        _, alive = psutil.wait_procs(alive, timeout=2)
    return [proc.pid for proc in alive]


def terminate_tree(pid: int, timeout: float = 5.0) -> list[int]:
    """End ``pid`` and all its descendants gracefully (terminate, wait, then kill). Returns the
    pids that were signalled."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except _GONE:
        return []
    end_processes([proc.pid for proc in tree], timeout)
    return [proc.pid for proc in tree]


def terminate_orphan_browsers(profile_dir: Path, timeout: float = 5.0) -> list[int]:
    """End every browser process running on *our* profile (terminate, then kill after
    ``timeout``); never any other browser. Call it only when the app itself runs no browser on
    this profile (e.g. at start-up). Returns the pids signalled."""
    profile_dir = Path(profile_dir)
    pids = find_browser_processes(profile_dir)
    if not pids:
        return []
    log.warning("Ending %d orphaned browser process(es) on our profile: %s", len(pids), pids)
    procs = _processes(pids)
    _signal_all(procs, kill=False)
    _, remaining = psutil.wait_procs(procs, timeout=timeout)
    # Helpers the browser spawned meanwhile are ended too; each one is re-checked right before the
    # hard kill, so a reused pid that is not a browser on our profile is never touched.
    late = [pid for pid in find_browser_processes(profile_dir) if pid not in pids]
    hard = [proc for proc in remaining + _processes(late) if browser_owns_profile(proc.pid, profile_dir)]
    _signal_all(hard, kill=True)
    psutil.wait_procs(hard, timeout=2)
    return pids + late
