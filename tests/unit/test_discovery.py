"""Browser discovery with real executables (small shell scripts) in temp folders."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from linda_desktop.base.errors import BrowserNotFound
from linda_desktop.browser import discovery
from linda_desktop.browser.discovery import (
    BrowserInfo,
    browser_version,
    find_browser,
    installed_candidates,
    playwright_registry,
)

pytestmark = pytest.mark.skipif(sys.platform.startswith("win"), reason="uses shell scripts")


def make_exe(path: Path, version: str = "156.0.8078.108", label: str = "Chromium") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho '{label} {version} built for tests'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP)
    return path


@pytest.fixture
def empty_env(tmp_path: Path) -> dict[str, str]:
    """An environment where nothing is installed: PATH and HOME point at empty folders."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "home").mkdir()
    return {"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path / "home"),
            "PLAYWRIGHT_BROWSERS_PATH": str(tmp_path / "no-playwright")}


def find(env: dict[str, str], tmp_path: Path, system: str = "linux", **kw) -> BrowserInfo:
    """Discovery with the fixed install places looked up under tmp_path/fs (empty unless a
    test puts a browser there), so a browser installed on this machine does not interfere."""
    return find_browser(env=env, system=system, home=str(tmp_path / "home"), root=tmp_path / "fs", **kw)


# ------------------------------------------------------------------ explicit choice
def test_explicit_browser_wins_over_everything(tmp_path, empty_env):
    chosen = make_exe(tmp_path / "custom" / "my-chrome")
    make_exe(tmp_path / "bin" / "google-chrome")
    env = {**empty_env, "LINDA_BROWSER": str(make_exe(tmp_path / "env-chromium"))}
    info = find(env, tmp_path, explicit=str(chosen))
    assert info == BrowserInfo(str(chosen), "chrome", "explicit")


def test_env_variable_is_used_when_no_flag(tmp_path, empty_env):
    exe = make_exe(tmp_path / "env" / "chromium")
    info = find({**empty_env, "LINDA_BROWSER": str(exe)}, tmp_path)
    assert info == BrowserInfo(str(exe), "chromium", "env")


@pytest.mark.parametrize("how", ["flag", "env"])
def test_missing_or_not_executable_choice_names_it(tmp_path, empty_env, how):
    missing = tmp_path / "nope" / "chrome"
    plain = tmp_path / "plain-file"
    plain.write_text("not a program")
    for bad, words in ((missing, "not found"), (plain, "not an executable")):
        env = dict(empty_env)
        if how == "env":
            env["LINDA_BROWSER"] = str(bad)
        with pytest.raises(BrowserNotFound) as info:
            find(env, tmp_path, explicit=str(bad) if how == "flag" else None)
        label = "--browser" if how == "flag" else "LINDA_BROWSER"
        assert words in str(info.value) and str(bad) in str(info.value) and label in str(info.value)
    # A wrong explicit choice is an error even when another browser is installed.
    make_exe(tmp_path / "bin" / "chromium")
    with pytest.raises(BrowserNotFound):
        find(empty_env, tmp_path, explicit=str(missing))


def test_macos_app_bundle_resolves_to_its_binary(tmp_path, empty_env):
    exe = make_exe(tmp_path / "Google Chrome.app" / "Contents" / "MacOS" / "Google Chrome")
    info = find(empty_env, tmp_path, explicit=str(tmp_path / "Google Chrome.app"))
    assert info.path == str(exe) and info.kind == "chrome"


# ------------------------------------------------------------------ installed browsers
def test_nothing_installed_is_browser_not_found_with_fix(tmp_path, empty_env):
    with pytest.raises(BrowserNotFound) as info:
        find(empty_env, tmp_path)
    assert info.value.fix and "playwright install chromium" in info.value.fix
    assert "Google Chrome" in info.value.fix


def test_linux_finds_browsers_on_path_in_preference_order(tmp_path, empty_env):
    make_exe(tmp_path / "bin" / "microsoft-edge")
    assert find(empty_env, tmp_path) == BrowserInfo(str(tmp_path / "bin" / "microsoft-edge"), "edge", "path")
    make_exe(tmp_path / "bin" / "chromium-browser")
    assert find(empty_env, tmp_path).kind == "chromium"
    make_exe(tmp_path / "bin" / "google-chrome-stable")
    assert find(empty_env, tmp_path) == BrowserInfo(str(tmp_path / "bin" / "google-chrome-stable"),
                                                    "chrome", "path")
    # A non-executable file of the right name is skipped.
    (tmp_path / "bin" / "google-chrome").write_text("")
    assert find(empty_env, tmp_path).path.endswith("google-chrome-stable")


def test_linux_fixed_places_when_path_has_nothing(tmp_path, empty_env):
    snap = make_exe(tmp_path / "fs" / "snap" / "bin" / "chromium")
    assert find(empty_env, tmp_path) == BrowserInfo(str(snap), "chromium", "installed")
    usr = make_exe(tmp_path / "fs" / "usr" / "bin" / "google-chrome")
    assert find(empty_env, tmp_path) == BrowserInfo(str(usr), "chrome", "installed")
    # PATH is asked first: the user's own PATH order is respected.
    on_path = make_exe(tmp_path / "bin" / "chromium")
    assert find(empty_env, tmp_path).path == str(on_path)


def test_macos_finds_user_applications(tmp_path, empty_env):
    home = tmp_path / "home"
    exe = make_exe(tmp_path / "fs" / str(home).lstrip("/") / "Applications" / "Microsoft Edge.app"
                   / "Contents" / "MacOS" / "Microsoft Edge")
    assert find(empty_env, tmp_path, system="darwin") == BrowserInfo(str(exe), "edge", "installed")
    chrome = make_exe(tmp_path / "fs" / "Applications" / "Google Chrome.app" / "Contents" / "MacOS"
                      / "Google Chrome")
    assert find(empty_env, tmp_path, system="darwin").path == str(chrome)


def test_candidate_lists_per_os_as_data():
    env = {"PROGRAMFILES": r"C:\Program Files", "PROGRAMFILES(X86)": r"C:\Program Files (x86)",
           "LOCALAPPDATA": r"C:\Users\ana\AppData\Local"}
    win = [c.path or c.name for c in installed_candidates("windows", env, r"C:\Users\ana")]
    assert win[0] == r"C:\Program Files\Google\Chrome\Application\chrome.exe"
    assert r"C:\Users\ana\AppData\Local\Google\Chrome\Application\chrome.exe" in win
    assert r"C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe" in win
    assert win.index(r"C:\Program Files\Google\Chrome\Application\chrome.exe") < \
        win.index(r"C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe")
    mac = [c.path for c in installed_candidates("macos", {}, "/Users/ana")]
    assert mac[0] == "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome"
    assert "/Users/ana/Applications/Google Chrome.app/Contents/MacOS/Google Chrome" in mac
    assert "/Applications/Microsoft Edge.app/Contents/MacOS/Microsoft Edge" in mac
    assert "/Applications/Chromium.app/Contents/MacOS/Chromium" in mac
    linux = installed_candidates("linux", {}, "/home/ana")
    names = [c.name for c in linux if c.name]
    assert names[:4] == ["google-chrome", "google-chrome-stable", "chromium", "chromium-browser"]
    paths = [c.path for c in linux if c.path]
    assert "/usr/bin/chromium" in paths and "/snap/bin/chromium" in paths and "/usr/bin/microsoft-edge" in paths


# ------------------------------------------------------------------ Playwright's Chromium
def test_playwright_registry_location_per_os(tmp_path):
    assert playwright_registry("linux", {}, "/home/ana") == Path("/home/ana/.cache/ms-playwright")
    assert playwright_registry("linux", {"XDG_CACHE_HOME": "/xdg"}, "/home/ana") == Path("/xdg/ms-playwright")
    assert playwright_registry("macos", {}, "/Users/ana") == Path("/Users/ana/Library/Caches/ms-playwright")
    assert playwright_registry("windows", {"LOCALAPPDATA": "L"}, "H") == Path("L", "ms-playwright")
    assert playwright_registry("linux", {"PLAYWRIGHT_BROWSERS_PATH": str(tmp_path)}, "/h") == tmp_path
    zero = playwright_registry("linux", {"PLAYWRIGHT_BROWSERS_PATH": "0"}, "/h")
    assert zero is not None and zero.name == ".local-browsers"


def test_playwright_chromium_is_the_last_resort(tmp_path, empty_env):
    registry = tmp_path / "pw"
    old = make_exe(registry / "chromium-1100" / "chrome-linux" / "chrome")
    new = make_exe(registry / "chromium-1200" / "chrome-linux64" / "chrome")
    make_exe(registry / "chromium_headless_shell-1200" / "chrome-linux" / "headless_shell")
    env = {**empty_env, "PLAYWRIGHT_BROWSERS_PATH": str(registry)}
    # A folder whose unpack never finished (no INSTALLATION_COMPLETE marker) is not a browser.
    unfinished = make_exe(registry / "chromium-1300" / "chrome-linux64" / "chrome")
    for folder in ("chromium-1100", "chromium-1200"):
        (registry / folder / "INSTALLATION_COMPLETE").write_text("")
    assert find(env, tmp_path) == BrowserInfo(str(new), "playwright-chromium", "playwright")
    assert unfinished.exists()
    new.unlink()
    assert find(env, tmp_path).path == str(old)
    # The app's own download folder is searched too; an installed browser still comes first.
    own = make_exe(tmp_path / "own" / "chromium-1300" / "chrome-linux64" / "chrome")
    (tmp_path / "own" / "chromium-1300" / "INSTALLATION_COMPLETE").write_text("")
    assert find(env, tmp_path, extra_playwright_dirs=[tmp_path / "own"]).path == str(own)
    make_exe(tmp_path / "bin" / "chromium")
    assert find(env, tmp_path).source == "path"


# ------------------------------------------------------------------ version
def test_browser_version_runs_the_browser_once(tmp_path):
    counter = tmp_path / "calls"
    exe = tmp_path / "chrome"
    exe.write_text(f"#!/bin/sh\necho x >> '{counter}'\necho '[: noise' >&2\necho 'Google Chrome 131.0.6778.85 '\n")
    exe.chmod(0o755)
    assert browser_version(str(exe)) == "131.0.6778.85"
    assert browser_version(str(exe)) == "131.0.6778.85"
    assert counter.read_text().count("x") == 1
    # An update (new mtime) is noticed.
    exe.write_text("#!/bin/sh\necho 'Google Chrome 132.0.1.2'\n")
    os.utime(exe, (1_900_000_000, 1_900_000_000))
    assert browser_version(str(exe)) == "132.0.1.2"


def test_browser_version_unknown_or_from_windows_style_folder(tmp_path):
    silent = make_exe(tmp_path / "app" / "chrome.exe", version="")
    silent.write_text("#!/bin/sh\nexit 0\n")
    assert browser_version(str(silent)) is None
    (tmp_path / "app" / "120.0.6099.130").mkdir()
    (tmp_path / "app" / "119.0.1.1").mkdir()
    os.utime(silent, (1_800_000_000, 1_800_000_000))
    assert browser_version(str(silent)) == "120.0.6099.130"
    assert browser_version(str(tmp_path / "missing")) is None


def test_real_chromium_version_when_present():
    chromium = os.environ.get("LINDA_BROWSER") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("no Chromium on this machine")
    version = browser_version(chromium)
    assert version and int(version.split(".")[0]) >= 100


def test_kind_is_guessed_from_the_name():
    assert discovery._kind_of("/x/msedge.exe") == "edge"
    assert discovery._kind_of("/x/Chromium") == "chromium"
    assert discovery._kind_of("/x/Google Chrome") == "chrome"
    assert discovery._kind_of("/x/brave") == "custom"
