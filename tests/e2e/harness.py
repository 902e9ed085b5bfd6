"""Drive the real `linda-desktop run --json` as a subprocess and read its event lines.

Like qutebrowser's end-to-end tests: the app is a black box that speaks JSON lines on stdout.

Every app process started here (``AppProcess``, ``cli``) is remembered for the running test:
tests/e2e/conftest.py fails the test when one of them wrote a traceback, "Future exception was
never retrieved" or "Logging error" to stderr, and prints the app's log file when a test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("LINDA_BROWSER", "/usr/bin/chromium")

# What must never reach an app's stderr (issue 12): each is a failure someone did not handle.
STDERR_PROBLEMS = ("Traceback (most recent call last)", "Future exception was never retrieved", "Logging error")


class Watch:
    """The app processes (and one-shot commands) the current test started, for the shared checks."""

    def __init__(self) -> None:
        self.apps: list[AppProcess] = []
        self.commands: list[tuple[list[str], str, Path | None]] = []  # (argv, stderr, data dir)

    def problems(self) -> list[str]:
        """Every forbidden line, with the command that wrote it."""
        found = []
        for app in self.apps:
            app.finish_reading()
            found += _problems(app.cmd, "\n".join(app.stderr_lines))
        for argv, err, _ in self.commands:
            found += _problems(argv, err)
        return found

    def data_dirs(self) -> list[Path]:
        dirs = [a.data_dir for a in self.apps] + [d for _, _, d in self.commands if d is not None]
        return list(dict.fromkeys(dirs))

    def close(self) -> None:
        for app in reversed(self.apps):
            app.close()


def _problems(argv: list[str], err: str) -> list[str]:
    name = " ".join(argv[2:5])
    if not any(p in err for p in STDERR_PROBLEMS):
        return []
    return [f"{name}: stderr holds a forbidden line ({', '.join(p for p in STDERR_PROBLEMS if p in err)}):\n"
            + "\n".join(err.splitlines()[-40:])]


WATCH = Watch()


def app_log(data_dir: Path, limit: int = 30_000) -> str:
    """The tail of an app's log file (for a failing test's report)."""
    path = Path(data_dir) / "logs" / "linda-desktop.log"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(no log file at {path}: {exc.strerror})"
    return text[-limit:]


def write_settings(data_dir: Path, **values: Any) -> None:
    """Settings for a test run (e.g. a shorter flush delay); the app reads settings.json at start."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / "settings.json"
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(values)
    path.write_text(json.dumps(current))


def cli(data_dir: Path, *args: str, wa_url: str | None = None, timeout: float = 120,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run one CLI command to completion."""
    cmd = [sys.executable, "-m", "linda_desktop", *args, "--data-dir", str(data_dir), "--browser", CHROMIUM]
    if wa_url:
        cmd += ["--wa-url", wa_url]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, **(env or {})})
    WATCH.commands.append((cmd, out.stderr, Path(data_dir)))
    return out


class AppProcess:
    """One `linda-desktop run --json` process and everything it printed."""

    def __init__(self, data_dir: Path, wa_url: str, *extra: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.cmd = [sys.executable, "-m", "linda_desktop", "run", "--json", "--data-dir", str(data_dir),
                    "--wa-url", wa_url, "--browser", CHROMIUM, *extra]
        self.env = {**os.environ, **(env or {})}
        self.events: list[dict[str, Any]] = []
        self.stderr_lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._cond = threading.Condition()
        self._readers: list[threading.Thread] = []
        self.started_at = 0.0

    def start(self) -> AppProcess:
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, cwd=REPO, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        self._readers = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for reader in self._readers:
            reader.start()
        WATCH.apps.append(self)
        return self

    def finish_reading(self, timeout: float = 5) -> None:
        """Once the process has ended: wait until everything it printed has been read."""
        if self.proc is None or self.proc.poll() is None:
            return
        for reader in self._readers:
            reader.join(timeout)

    def _read_stdout(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            event = json.loads(line)  # every stdout line must be JSON: a broken line fails the test
            event["_t"] = time.monotonic() - self.started_at
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc and self.proc.stderr
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip())

    # -- waiting ---------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60,
                 after: int = 0) -> dict[str, Any]:
        """The first event (from index ``after``) matching ``predicate``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events[after:]:
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc and self.proc.poll() is not None and not self._pending()):
                    raise AssertionError(
                        f"no matching event within {timeout}s; events: {self.summary()}; "
                        f"stderr: {self.stderr_lines[-15:]}")
                self._cond.wait(min(remaining, 0.2))

    def _pending(self) -> bool:
        return False

    def wait_state(self, state: str, timeout: float = 60, after: int = 0) -> dict[str, Any]:
        return self.wait_for(lambda e: e.get("event") == "state" and e.get("state") == state, timeout, after)

    def states(self) -> list[str]:
        return [e["state"] for e in self.events if e.get("event") == "state"]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == kind]

    def summary(self) -> list[str]:
        out = []
        for e in self.events:
            if e.get("event") == "state":
                out.append(f"state:{e['state']}" + (f"({e.get('reason')})" if e.get("reason") else ""))
            elif e.get("event") == "qr":
                out.append("qr" + ("(idle)" if e.get("idle") else ""))
            else:
                out.append(str(e.get("event")))
        return out

    # -- ending ----------------------------------------------------------------------------

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM and wait: the app flushes, backs up and exits 0."""
        assert self.proc
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def terminate_group(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """``sig`` to the app's whole process group, as `systemctl stop` and terminals send it."""
        assert self.proc
        os.killpg(self.proc.pid, sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the app process only (its browser is in another process group)."""
        assert self.proc
        self.proc.kill()
        self.proc.wait(10)

    def browser_pids(self) -> list[int]:
        """Chromium processes running on this app's profile."""
        from linda_desktop.session.profile import find_browser_processes

        return find_browser_processes(self.data_dir / "profile")

    def kill_browser_tree(self) -> list[int]:
        pids = self.browser_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return pids

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        wait_until(lambda: not self.browser_pids(), 15)


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


# ---------------------------------------------------------------------- real faults (root only)

def can_mount() -> str | None:
    """None when this process may mount (root, mount available); else the reason to skip."""
    if os.name != "posix" or os.geteuid() != 0:
        return "needs root to mount a tmpfs / a read-only bind mount"
    if shutil.which("mount") is None:
        return "no mount command"
    probe = Path(f"/tmp/linda-mount-probe-{os.getpid()}")
    probe.mkdir(exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            return f"mount is not allowed here: {done.stderr.strip()}"
        subprocess.run(["umount", str(probe)], check=True)
        return None
    finally:
        probe.rmdir()


def _umount(point: Path) -> None:
    for _ in range(50):
        if subprocess.run(["umount", str(point)], capture_output=True).returncode == 0:
            return
        time.sleep(0.2)  # busy: a process is still leaving
    subprocess.run(["umount", "-l", str(point)], check=False)


@contextlib.contextmanager
def tmpfs(point: Path, size: str = "3m") -> Iterator[Path]:
    """A real, small tmpfs at ``point``: a disk that really fills up (ENOSPC)."""
    point.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(point)], check=True)
    try:
        yield point
    finally:
        _umount(point)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """``folder`` bind-mounted read-only over itself (EROFS for every write, root included)."""
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True)
        yield folder
    finally:
        _umount(folder)


def fill_disk(folder: Path, name: str = "filler") -> Path:
    """Write zeros into ``folder`` until its filesystem is full (ENOSPC). Returns the filler file."""
    filler = folder / name
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 16, 512, 1):
            block = b"\0" * size
            try:
                while True:
                    os.write(fd, block)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def tree_digest(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Path -> sha256 of every regular file under ``folder`` (byte-for-byte comparisons)."""
    import hashlib

    out: dict[str, str] = {}
    if not folder.exists():
        return out
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_file() and not path.is_symlink() and not any(rel.startswith(s) for s in skip):
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out
