"""First-run browser install: Playwright's Chromium into the app's own folder (no Qt here).

Used only when no Chrome, Edge or Chromium is installed (``discovery.find_browser`` raised
``BrowserNotFound``). It runs Playwright's own installer through the driver that ships inside
the app (``node cli.js install --no-shell chromium``) with ``PLAYWRIGHT_BROWSERS_PATH`` set to
``AppPaths.browsers``, reads the installer's output line by line, turns it into
``InstallProgress`` for a callback, and maps a failure to a typed error: ``InstallOffline``
(no connection), ``InstallDiskFull`` (no space left), ``InstallCancelled``, or ``InstallFailed``.

Output of the installer when its stdout is a pipe (Playwright's "basic" progress, one line per
10 %, real lines recorded in tests/unit/test_browser_install.py)::

    Downloading Chrome for Testing 159.0.8154.6 (playwright chromium v1255) from https://…
    |■■■■■■■■                                                        |  10% of 170.2 MiB
    Chrome for Testing 159.0.8154.6 (playwright chromium v1255) downloaded to /…/chromium-1255

``--no-shell``: the app drives full Chromium (headless, and a visible window for "finish
linking"), so the separate headless shell is not needed. FFmpeg comes along with Chromium
(Playwright's choice); it is about 2 MB.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linda_desktop.base.errors import LindaError
from linda_desktop.base.paths import ensure_private_dir
from linda_desktop.browser.discovery import PLAYWRIGHT_SUBPATHS, platform_key

log = logging.getLogger(__name__)

INSTALL_ARGS = ("install", "--no-shell", "chromium")
MARKER = "INSTALLATION_COMPLETE"  # Playwright writes it last, once a browser is fully unpacked
# The Chromium download plus unpacked files need roughly this much; used in the disk-full words.
SPACE_NEEDED_MB = 600

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_DOWNLOADING = re.compile(r"^Downloading (?P<title>.+?)(?: from (?P<url>\S+))?\s*$")
_BASIC_BAR = re.compile(r"^\|[^|]*\|\s*(?P<pct>\d{1,3})% of (?P<size>[\d.]+) MiB\s*$")
# Playwright's animated bar (when stdout is a terminal): "170.2 MiB [====    ] 45% 10.3s".
_TTY_BAR = re.compile(r"^(?P<size>[\d.]+) MiB \[[^\]]*\]\s*(?P<pct>\d{1,3})%")
_DONE = re.compile(r"^(?P<title>.+?) downloaded to (?P<dir>.+?)\s*$")
_PLAN_TITLE = re.compile(r"^(?P<title>\S.*\(playwright [\w-]+ v\d+\))\s*$")

_OFFLINE_CODES = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENETUNREACH",
                  "EHOSTUNREACH", "ENETDOWN", "EPROTO", "CERT_", "UNABLE_TO_GET_ISSUER_CERT",
                  "SELF_SIGNED_CERT", "server closed connection", "socket hang up", "getaddrinfo",
                  "Download failed: timeout", "network timeout")
_DISK_FULL = ("ENOSPC", "no space left on device", "not enough space on the disk", "EDQUOT",
              "disk quota exceeded")
_NOT_WRITABLE = ("EACCES", "EPERM", "EROFS", "permission denied", "read-only file system")


# --------------------------------------------------------------------------- errors


class BrowserInstallError(LindaError):
    """The first-run browser download did not finish."""


class InstallOffline(BrowserInstallError):
    """The download server could not be reached (no internet, proxy, firewall, DNS)."""


class InstallDiskFull(BrowserInstallError):
    """The disk ran out of space while downloading or unpacking."""


class InstallNotWritable(BrowserInstallError):
    """The browsers folder (or the temp folder) cannot be written."""


class InstallCancelled(BrowserInstallError):
    """The owner cancelled the download."""


class InstallFailed(BrowserInstallError):
    """Anything else: the installer's last error line is the message."""


def offline_error() -> InstallOffline:
    return InstallOffline("Could not reach the download server: this computer seems to be offline",
                          "connect to the internet (or install Google Chrome or Microsoft Edge), then press Retry")


def disk_full_error(where: Path | None = None) -> InstallDiskFull:
    place = f" ({where})" if where else ""
    return InstallDiskFull(f"The disk is full: the browser needs about {SPACE_NEEDED_MB} MB{place}",
                           "free some space, then press Retry")


def classify_failure(output: str, returncode: int | None = None, *, target: Path | None = None) -> BrowserInstallError:
    """The typed error for a failed ``playwright install`` from everything it printed."""
    text = strip_ansi(output)
    lowered = text.lower()
    if any(code.lower() in lowered for code in _DISK_FULL):
        return disk_full_error(target)
    if any(code.lower() in lowered for code in _OFFLINE_CODES):
        return offline_error()
    if any(code.lower() in lowered for code in _NOT_WRITABLE):
        return InstallNotWritable(f"Cannot write the browser folder{f' {target}' if target else ''}",
                                  "check that your user can write there (or free the folder), then press Retry")
    status = re.search(r"server returned code (\d{3})", text)
    if status:
        return InstallFailed(f"The download server answered HTTP {status.group(1)}",
                             "try again later; if it keeps failing, update Linda Desktop")
    return InstallFailed(f"The browser download failed: {last_error_line(text) or f'exit code {returncode}'}",
                         "press Retry; if it keeps failing, install Google Chrome or Microsoft Edge")


def last_error_line(text: str) -> str | None:
    """The most telling line: the deepest ``Error: …`` that is not a stack frame."""
    errors = [ln.strip() for ln in text.splitlines() if re.match(r"^\s*(\[?Error|Error:)", ln)]
    for line in reversed(errors):
        if "Download failure, code=" not in line and not line.startswith("Error: Failed to download"):
            return line[:300]
    return errors[-1][:300] if errors else None


# --------------------------------------------------------------------------- progress


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


@dataclass(frozen=True)
class InstallProgress:
    """Where the install is. ``overall`` (0..1) spreads over every component, weighted by size."""

    component: str          # "Chrome for Testing 159.0.8154.6 (playwright chromium v1255)"
    index: int              # 1-based position of ``component`` in the plan
    count: int              # how many components the plan has (at least ``index``)
    percent: int            # 0..100 of this component
    size_mib: float | None  # this component's download size, once known
    attempt: int            # Playwright retries a failed download (5 tries); 1 = the first
    done: bool = False      # this component is unpacked and in place
    overall: float = 0.0

    @property
    def friendly_name(self) -> str:
        """"Chrome for Testing 159.0.8154.6" without Playwright's build label."""
        return re.sub(r"\s*\(playwright [^)]*\)\s*$", "", self.component)


def component_weight(title: str) -> float:
    """Share of the progress bar: the browser is ~170 MB, FFmpeg and friends ~2 MB."""
    lowered = title.lower()
    return 0.02 if ("ffmpeg" in lowered or "winldd" in lowered) else 1.0


def parse_plan(dry_run_output: str) -> list[str]:
    """Component titles from ``playwright install --dry-run`` (one title line per component)."""
    titles: list[str] = []
    for raw in strip_ansi(dry_run_output).splitlines():
        match = _PLAN_TITLE.match(raw.rstrip())
        if match and not raw.startswith(" "):
            titles.append(match.group("title"))
    return titles


class ProgressParser:
    """Feed it the installer's lines; it returns an ``InstallProgress`` whenever one changed."""

    def __init__(self, plan: Sequence[str] = ()) -> None:
        self.plan = list(plan)
        self.component: str | None = None
        self.attempts: dict[str, int] = {}
        self.finished: list[str] = []
        self.installed_dirs: list[Path] = []
        self.last: InstallProgress | None = None

    def _index(self, title: str) -> int:
        if title not in self.plan:
            self.plan.append(title)
        return self.plan.index(title) + 1

    def _overall(self, index: int, percent: int, done: bool) -> float:
        weights = [component_weight(t) for t in self.plan]
        part = 1.0 if done else percent / 100
        return min(1.0, (sum(weights[:index - 1]) + part * weights[index - 1]) / sum(weights))

    def _make(self, title: str, percent: int, size: float | None, done: bool = False) -> InstallProgress:
        index = self._index(title)
        percent = max(0, min(100, percent))
        progress = InstallProgress(component=title, index=index, count=len(self.plan), percent=percent,
                                   size_mib=size, attempt=self.attempts.get(title, 1), done=done,
                                   overall=self._overall(index, percent, done))
        self.last = progress
        return progress

    def feed(self, line: str) -> InstallProgress | None:
        text = strip_ansi(line).strip()
        if not text:
            return None
        match = _DOWNLOADING.match(text)
        if match:
            title = match.group("title")
            self.component = title
            self.attempts[title] = self.attempts.get(title, 0) + 1
            return self._make(title, 0, None)
        match = _BASIC_BAR.match(text) or _TTY_BAR.match(text)
        if match and self.component is not None:
            return self._make(self.component, int(match.group("pct")), float(match.group("size")))
        match = _DONE.match(text)
        if match:
            title = match.group("title")
            self.finished.append(title)
            self.installed_dirs.append(Path(match.group("dir")))
            size = self.last.size_mib if self.last and self.last.component == title else None
            return self._make(title, 100, size, done=True)
        return None


# --------------------------------------------------------------------------- where it lands


def installed_chromium(browsers_dir: Path, system: str | None = None) -> Path | None:
    """The Chromium executable a finished install left in ``browsers_dir``, newest first.
    Only folders with Playwright's completion marker count: a cancelled unpack never does."""
    key = platform_key(system)
    try:
        dirs = [d for d in Path(browsers_dir).iterdir() if re.fullmatch(r"chromium-\d+", d.name) and d.is_dir()]
    except OSError:
        return None
    for folder in sorted(dirs, key=lambda d: -int(d.name.split("-")[1])):
        if not (folder / MARKER).is_file():
            continue
        for sub in PLAYWRIGHT_SUBPATHS[key]:
            exe = folder.joinpath(*sub)
            if exe.is_file():
                return exe
    return None


def driver_command() -> list[str]:
    """``[node, cli.js]`` of the Playwright driver bundled with this app (or this Python)."""
    from playwright._impl._driver import compute_driver_executable

    node, cli = compute_driver_executable()
    return [str(node), str(cli)]


def installer_env(browsers_dir: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The driver's environment with the browsers folder set, colours and TTY bars off."""
    from playwright._impl._driver import get_driver_env

    env = dict(get_driver_env()) if base is None else dict(base)
    env["PLAYWRIGHT_BROWSERS_PATH"] = str(browsers_dir)
    env["FORCE_COLOR"] = "0"
    env["NO_COLOR"] = "1"
    env.pop("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", None)
    return env


# --------------------------------------------------------------------------- the run


ProgressCallback = Callable[[InstallProgress], None]


class ChromiumInstall:
    """One run of the installer. ``run()`` blocks (call it on a worker thread);
    ``cancel()`` is thread-safe and ends the installer and its download child."""

    def __init__(self, browsers_dir: Path, *, on_progress: ProgressCallback | None = None,
                 on_line: Callable[[str], None] | None = None, command: Sequence[str] | None = None,
                 env: Mapping[str, str] | None = None, extra_env: Mapping[str, str] | None = None) -> None:
        self.browsers_dir = Path(browsers_dir)
        self.on_progress = on_progress
        self.on_line = on_line
        self._command = list(command) if command is not None else None
        self._env = dict(env) if env is not None else None
        self._extra_env = dict(extra_env or {})
        self._proc: subprocess.Popen[str] | None = None
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self.output: list[str] = []

    def command(self, *args: str) -> list[str]:
        return [*(self._command if self._command is not None else driver_command()), *args]

    def env(self) -> dict[str, str]:
        env = installer_env(self.browsers_dir, self._env)
        env.update(self._extra_env)
        return env

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def plan(self) -> list[str]:
        """What will be downloaded (``--dry-run``: no network, about a second)."""
        try:
            out = subprocess.run(self.command(*INSTALL_ARGS[:1], "--dry-run", *INSTALL_ARGS[1:]),
                                 env=self.env(), capture_output=True, text=True, encoding="utf-8",
                                 errors="replace", timeout=60, stdin=subprocess.DEVNULL,
                                 **_no_window())
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("installer dry run failed: %s", exc)
            return []
        return parse_plan(out.stdout)

    def run(self) -> Path:
        """Download and unpack; the Chromium executable on success, else a BrowserInstallError."""
        try:
            ensure_private_dir(self.browsers_dir)
        except OSError as exc:
            raise _os_error(exc, self.browsers_dir) from exc
        parser = ProgressParser(self.plan())
        if self.cancelled:
            raise InstallCancelled("The browser download was cancelled", "press Retry to start it again")
        cmd = self.command(*INSTALL_ARGS)
        log.info("installing Chromium into %s", self.browsers_dir)
        try:
            with self._lock:
                self._proc = subprocess.Popen(cmd, env=self.env(), stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                              text=True, encoding="utf-8", errors="replace", bufsize=1,
                                              **_own_group())
        except OSError as exc:
            raise InstallFailed(f"Could not start the browser installer: {exc.strerror or exc}",
                                "reinstall Linda Desktop") from exc
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            line = line.rstrip("\r\n")
            self.output.append(line)
            if self.on_line is not None:
                self.on_line(line)
            progress = parser.feed(line)
            if progress is not None and self.on_progress is not None:
                self.on_progress(progress)
        code = self._proc.wait()
        if self.cancelled:
            raise InstallCancelled("The browser download was cancelled", "press Retry to start it again")
        text = "\n".join(self.output)
        if code != 0:
            error = classify_failure(text, code, target=self.browsers_dir)
            log.warning("browser install failed (%s): %s", type(error).__name__, error.message)
            raise error
        exe = installed_chromium(self.browsers_dir)
        if exe is None:
            raise InstallFailed("The browser installer finished but left no Chromium behind",
                                "press Retry; if it keeps failing, install Google Chrome or Microsoft Edge")
        log.info("Chromium installed: %s", exe)
        return exe

    def cancel(self) -> None:
        self._cancelled.set()
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            _kill_tree(proc)


def install_chromium(browsers_dir: Path, on_progress: ProgressCallback | None = None, **kwargs: object) -> Path:
    """Install Playwright's Chromium into ``browsers_dir``; returns its executable."""
    return ChromiumInstall(browsers_dir, on_progress=on_progress, **kwargs).run()  # type: ignore[arg-type]


# --------------------------------------------------------------------------- process helpers


def _no_window() -> dict[str, Any]:
    if os.name == "nt":
        return {"creationflags": getattr(subprocess, "CREATE_NO_WINDOW", 0)}
    return {}


def _own_group() -> dict[str, Any]:
    """Start the installer in its own process group, so cancel ends its download child too."""
    if os.name == "nt":
        flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        return {"creationflags": flags}
    return {"start_new_session": True}


def _kill_tree(proc: subprocess.Popen[str]) -> None:
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True, **_no_window())
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _os_error(exc: OSError, where: Path) -> BrowserInstallError:
    import errno

    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return disk_full_error(where)
    return InstallNotWritable(f"Cannot create the browser folder {where}: {exc.strerror or exc}",
                              "check that your user can write there, then press Retry")


def describe(error: BaseException) -> str:
    """Plain words for a person (the dialog shows this)."""
    if isinstance(error, LindaError):
        return error.message + (f". {error.fix[0].upper()}{error.fix[1:]}." if error.fix else "")
    return str(error)


__all__ = [
    "BrowserInstallError",
    "ChromiumInstall",
    "InstallCancelled",
    "InstallDiskFull",
    "InstallFailed",
    "InstallNotWritable",
    "InstallOffline",
    "InstallProgress",
    "ProgressParser",
    "classify_failure",
    "describe",
    "driver_command",
    "install_chromium",
    "installed_chromium",
    "installer_env",
    "parse_plan",
]
