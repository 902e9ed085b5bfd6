"""Find a Chromium-family browser to drive: the one asked for, an installed Chrome / Edge /
Chromium, or Playwright's own Chromium.

Order: ``--browser`` (``explicit``), ``LINDA_BROWSER``, installed browsers in their usual places
for this OS, Playwright's registry (``PLAYWRIGHT_BROWSERS_PATH`` or its default cache folder).
The candidate lists are plain data (``installed_candidates``) so every OS is testable anywhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

from linda_desktop.base.errors import BrowserNotFound

ENV_VAR = "LINDA_BROWSER"
FIX = "install Google Chrome or Microsoft Edge, or run `playwright install chromium`"
_VERSION_RE = re.compile(r"\b(\d+\.\d+\.\d+\.\d+)\b")


@dataclass(frozen=True)
class BrowserInfo:
    path: str
    kind: str    # chrome | edge | chromium | playwright-chromium | custom
    source: str  # explicit | env | installed | path | playwright


@dataclass(frozen=True)
class Candidate:
    """A place a browser may be: an absolute ``path`` or a command ``name`` looked up on PATH."""

    kind: str
    path: str | None = None
    name: str | None = None


def platform_key(system: str | None = None) -> str:
    system = system or sys.platform
    if system.startswith("win"):
        return "windows"
    if system == "darwin":
        return "macos"
    return "linux"


def installed_candidates(system: str, env: Mapping[str, str], home: str) -> list[Candidate]:
    """Usual install places, best first, for ``system`` in windows | macos | linux."""
    if system == "windows":
        win = PureWindowsPath
        roots = [env.get("PROGRAMFILES", r"C:\Program Files"),
                 env.get("PROGRAMFILES(X86)", r"C:\Program Files (x86)"),
                 env.get("LOCALAPPDATA", str(win(home, "AppData", "Local")))]
        out: list[Candidate] = []
        for kind, parts in (("chrome", ("Google", "Chrome", "Application", "chrome.exe")),
                            ("edge", ("Microsoft", "Edge", "Application", "msedge.exe")),
                            ("chromium", ("Chromium", "Application", "chrome.exe"))):
            out += [Candidate(kind, str(win(root, *parts))) for root in roots if root]
        out += [Candidate("chrome", name="chrome.exe"), Candidate("edge", name="msedge.exe")]
        return out
    if system == "macos":
        apps = [("chrome", "Google Chrome.app", "Google Chrome"),
                ("edge", "Microsoft Edge.app", "Microsoft Edge"),
                ("chromium", "Chromium.app", "Chromium")]
        return [Candidate(kind, str(PurePosixPath(root, app, "Contents", "MacOS", exe)))
                for kind, app, exe in apps
                for root in ("/Applications", str(PurePosixPath(home, "Applications")))]
    names = [("chrome", "google-chrome"), ("chrome", "google-chrome-stable"),
             ("chromium", "chromium"), ("chromium", "chromium-browser"),
             ("edge", "microsoft-edge"), ("edge", "microsoft-edge-stable")]
    out = [Candidate(kind, name=name) for kind, name in names]
    out += [Candidate(kind, f"/usr/bin/{name}") for kind, name in names]
    out += [Candidate("chromium", "/snap/bin/chromium"),
            Candidate("chrome", "/opt/google/chrome/chrome"),
            Candidate("edge", "/opt/microsoft/msedge/msedge")]
    return out


# Where Playwright puts Chromium inside ``chromium-<revision>/`` (its registry's EXECUTABLE_PATHS).
PLAYWRIGHT_SUBPATHS: dict[str, list[tuple[str, ...]]] = {
    "linux": [("chrome-linux64", "chrome"), ("chrome-linux-arm64", "chrome"), ("chrome-linux", "chrome")],
    "macos": [("chrome-mac-arm64", "Google Chrome for Testing.app", "Contents", "MacOS", "Google Chrome for Testing"),
              ("chrome-mac-x64", "Google Chrome for Testing.app", "Contents", "MacOS", "Google Chrome for Testing"),
              ("chrome-mac", "Chromium.app", "Contents", "MacOS", "Chromium")],
    "windows": [("chrome-win64", "chrome.exe"), ("chrome-win", "chrome.exe")],
}


def _playwright_package_dir() -> Path | None:
    try:
        import playwright
    except ImportError:
        return None
    return Path(playwright.__file__).resolve().parent / "driver" / "package"


def playwright_registry(system: str, env: Mapping[str, str], home: str) -> Path | None:
    """Playwright's browser folder, computed as Playwright does (PLAYWRIGHT_BROWSERS_PATH first)."""
    configured = env.get("PLAYWRIGHT_BROWSERS_PATH")
    if configured == "0":
        package = _playwright_package_dir()
        return package / ".local-browsers" if package else None
    if configured:
        return Path(configured)
    if system == "windows":
        return Path(env.get("LOCALAPPDATA") or Path(home, "AppData", "Local")) / "ms-playwright"
    if system == "macos":
        return Path(home, "Library", "Caches", "ms-playwright")
    return Path(env.get("XDG_CACHE_HOME") or Path(home, ".cache")) / "ms-playwright"


def _expected_revision() -> str | None:
    package = _playwright_package_dir()
    try:
        data = json.loads((package / "browsers.json").read_text()) if package else {}
    except (OSError, ValueError):
        return None
    for browser in data.get("browsers", []):
        if browser.get("name") == "chromium":
            return str(browser.get("revision"))
    return None


def playwright_candidates(registry: Path, system: str) -> list[Path]:
    """Chromium executables in a Playwright registry: the revision this Playwright expects first,
    then the others, newest first."""
    if not registry.is_dir():
        return []
    # Playwright writes INSTALLATION_COMPLETE last: a folder without it is a cancelled unpack.
    dirs = [d for d in registry.iterdir() if d.is_dir() and re.fullmatch(r"chromium-\d+", d.name)
            and (d / "INSTALLATION_COMPLETE").is_file()]
    expected = _expected_revision()
    dirs.sort(key=lambda d: (d.name != f"chromium-{expected}", -int(d.name.split("-")[1])))
    return [d.joinpath(*sub) for d in dirs for sub in PLAYWRIGHT_SUBPATHS[system]]


def is_executable(path: Path, system: str | None = None) -> bool:
    if not path.is_file():
        return False
    return platform_key(system) == "windows" or os.access(path, os.X_OK)


def _resolve_app_bundle(path: Path) -> Path:
    """``/Applications/Google Chrome.app`` -> its binary (macOS users pick the bundle)."""
    if path.suffix == ".app" and path.is_dir():
        macos = path / "Contents" / "MacOS"
        exe = macos / path.stem
        if exe.is_file():
            return exe
        found = sorted(p for p in macos.iterdir() if p.is_file()) if macos.is_dir() else []
        if found:
            return found[0]
    return path


def _kind_of(path: str) -> str:
    name = PurePath(path).name.lower()
    if "edge" in name:
        return "edge"
    if "chromium" in name:
        return "chromium"
    if "chrome" in name:
        return "chrome"
    return "custom"


def _check_explicit(value: str, label: str, source: str, system: str) -> BrowserInfo:
    path = _resolve_app_bundle(Path(value).expanduser())
    if not path.exists():
        raise BrowserNotFound(f"browser given by {label} not found: {value}",
                              f"fix the path in {label}, or leave it unset to find one automatically")
    if not is_executable(path, system):
        raise BrowserNotFound(f"browser given by {label} is not an executable file: {value}",
                              f"point {label} at the browser program itself")
    return BrowserInfo(str(path), _kind_of(str(path)), source)


def find_browser(explicit: str | None = None, *, env: Mapping[str, str] | None = None,
                 system: str | None = None, home: str | None = None,
                 extra_playwright_dirs: Sequence[Path] = (), root: Path | None = None) -> BrowserInfo:
    """The browser to drive. ``extra_playwright_dirs``: more Playwright registries to search
    (e.g. the app's own ``AppPaths.browsers``). ``root`` (tests): a folder standing in for the
    file system root under which the fixed install places are looked up.
    Raises BrowserNotFound with a fix."""
    env = os.environ if env is None else env
    key = platform_key(system)
    home = home or str(Path.home())
    if explicit:
        return _check_explicit(explicit, "--browser", "explicit", key)
    if env.get(ENV_VAR):
        return _check_explicit(env[ENV_VAR], ENV_VAR, "env", key)
    search_path = env.get("PATH", "")
    for cand in installed_candidates(key, env, home):
        where = Path(root, cand.path.lstrip("/")) if root is not None and cand.path else cand.path
        if where and is_executable(Path(where), key):
            return BrowserInfo(str(where), cand.kind, "installed")
        if cand.name:
            found = shutil.which(cand.name, path=search_path)
            if found:
                return BrowserInfo(found, cand.kind, "path")
    registries: list[Path] = list(extra_playwright_dirs)
    default = playwright_registry(key, env, home)
    if default is not None:
        registries.append(default)
    for registry in registries:
        for exe in playwright_candidates(registry, key):
            if is_executable(exe, key):
                return BrowserInfo(str(exe), "playwright-chromium", "playwright")
    raise BrowserNotFound("no Chrome, Edge or Chromium found", FIX)


def _version_from_folder(path: Path) -> str | None:
    """Windows Chrome/Edge do not print ``--version``; their folder holds a ``<version>/`` dir."""
    try:
        names = [p.name for p in path.parent.iterdir() if p.is_dir() and _VERSION_RE.fullmatch(p.name)]
    except OSError:
        return None
    return max(names, key=lambda n: tuple(int(x) for x in n.split("."))) if names else None


@lru_cache(maxsize=16)
def _version_cached(path: str, mtime: float) -> str | None:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=15,
                             stdin=subprocess.DEVNULL)
        match = _VERSION_RE.search(out.stdout or "")
        if match:
            return match.group(1)
    except (OSError, subprocess.SubprocessError):
        pass
    return _version_from_folder(Path(path))


def browser_version(path: str) -> str | None:
    """``"156.0.8078.108"`` for a browser executable, or None when it cannot be told.
    Cached per path and modification time (an update changes the answer)."""
    try:
        mtime = Path(path).stat().st_mtime
    except OSError:
        return None
    return _version_cached(str(path), mtime)


def describe(candidates: Iterable[Candidate]) -> list[str]:
    """Human-readable list of places searched (for `doctor`)."""
    return [c.path or f"{c.name} on PATH" for c in candidates]
