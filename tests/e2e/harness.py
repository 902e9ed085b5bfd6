"""Drive the real `linda-desktop run --json` as a subprocess and read its event lines.

Like qutebrowser's end-to-end tests: the app is a black box that speaks JSON lines on stdout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("LINDA_BROWSER", "/usr/bin/chromium")


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
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


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
        self.started_at = 0.0

    def start(self) -> "AppProcess":
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, cwd=REPO, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        return self

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
