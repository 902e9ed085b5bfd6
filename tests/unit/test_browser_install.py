"""First-run Chromium install (linda_desktop.browser.install).

Parsing and error mapping run on output recorded from Playwright's real installer
(tests/installers/recorded/, made by `node cli.js install --no-shell chromium` on this machine:
offline = no DNS, refused = nothing listening, disk_full = a 1 MB tmpfs, http_404 and success
= a local mirror through PLAYWRIGHT_DOWNLOAD_HOST). The last tests run that real installer
against the local mirror (tests/installers/pw_mirror.py): the CDN itself is out of reach here.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from linda_desktop.browser import install
from linda_desktop.browser.discovery import find_browser
from linda_desktop.browser.install import (
    ChromiumInstall,
    InstallCancelled,
    InstallDiskFull,
    InstallFailed,
    InstallOffline,
    ProgressParser,
    classify_failure,
    installed_chromium,
    parse_plan,
)
from tests.installers.pw_mirror import PlaywrightMirror, closed_port_url

RECORDED = Path(__file__).resolve().parents[1] / "installers" / "recorded"
CHROME = "Chrome for Testing 159.0.8154.6 (playwright chromium v1255)"
FFMPEG = "FFmpeg (playwright ffmpeg v1013)"


def recorded(name: str) -> str:
    return (RECORDED / f"{name}.txt").read_text(encoding="utf-8")


def feed_all(parser: ProgressParser, text: str) -> list[install.InstallProgress]:
    return [p for p in map(parser.feed, text.splitlines()) if p is not None]


# --------------------------------------------------------------------------- parsing


def test_plan_from_the_dry_run_lists_chromium_then_ffmpeg():
    assert parse_plan(recorded("dry_run")) == [CHROME, FFMPEG]


def test_progress_of_a_successful_install_rises_to_one_and_marks_each_part_done():
    events = feed_all(ProgressParser([CHROME, FFMPEG]), recorded("success"))
    overall = [e.overall for e in events]
    assert overall == sorted(overall) and overall[-1] == 1.0
    chrome = [e for e in events if e.component == CHROME]
    assert [e.percent for e in chrome][:2] == [0, 2] and chrome[-1].done and chrome[-1].percent == 100
    assert chrome[-1].size_mib == pytest.approx(2.9)
    # FFmpeg is a sliver of the bar: the browser being done is ~98 % of the whole.
    assert 0.95 < chrome[-1].overall < 1.0
    assert events[-1].component == FFMPEG and events[-1].done and events[-1].index == 2
    assert all(e.attempt == 1 and e.count == 2 for e in events)
    assert chrome[-1].friendly_name == "Chrome for Testing 159.0.8154.6"


def test_progress_without_a_plan_still_counts_components_as_they_come():
    events = feed_all(ProgressParser(), recorded("success"))
    assert events[0].count == 1 and events[-1].count == 2 and events[-1].overall == 1.0


def test_playwright_retries_show_as_attempts_restarting_at_zero():
    events = feed_all(ProgressParser([CHROME, FFMPEG]), recorded("disk_full"))
    starts = [e for e in events if e.percent == 0]
    assert [e.attempt for e in starts] == [1, 2, 3, 4, 5]
    assert max(e.percent for e in events) >= 90 and not any(e.done for e in events)


def test_animated_terminal_bar_is_understood_too():
    parser = ProgressParser([CHROME])
    parser.feed(f"Downloading {CHROME} from https://cdn.example/chrome-linux64.zip")
    # Playwright's TTY bar ("progress" package format: `${size} [:bar] :percent :etas`).
    event = parser.feed("170.2 MiB [=========           ] 45% 10.3s")
    assert event is not None and event.percent == 45 and event.size_mib == pytest.approx(170.2)


def test_noise_lines_give_no_progress():
    parser = ProgressParser([CHROME])
    for line in ("", "Failed to install browsers", "    at ChildProcess.emit (node:events:514:20)",
                 "  errno: -28,"):
        assert parser.feed(line) is None


# --------------------------------------------------------------------------- error mapping


@pytest.mark.parametrize("name", ["offline_dns", "offline_refused"])
def test_no_connection_is_an_offline_error_in_plain_words(name):
    error = classify_failure(recorded(name), 1)
    assert isinstance(error, InstallOffline)
    assert "offline" in error.message and "Retry" in (error.fix or "")


def test_no_space_left_is_disk_full_even_though_it_also_looks_like_a_failed_download():
    error = classify_failure(recorded("disk_full"), 1, target=Path("/data/browsers"))
    assert isinstance(error, InstallDiskFull)
    assert "disk is full" in error.message and "/data/browsers" in error.message


def test_http_error_names_the_status():
    error = classify_failure(recorded("http_404"), 1)
    assert isinstance(error, InstallFailed) and "HTTP 404" in error.message


def test_unknown_failure_quotes_the_deepest_error_line():
    text = recorded("success") + "\nError: Failed to download X, caused by\nError: Something odd happened\n"
    error = classify_failure(text, 1)
    assert isinstance(error, InstallFailed) and "Something odd happened" in error.message


def test_describe_gives_one_sentence_with_the_fix():
    words = install.describe(install.offline_error())
    assert words.startswith("Could not reach the download server") and words.endswith("press Retry.")


# --------------------------------------------------------------------------- where it lands


def test_installed_chromium_needs_playwrights_completion_marker(tmp_path):
    exe = tmp_path / "chromium-1255" / "chrome-linux64" / "chrome"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert installed_chromium(tmp_path, "linux") is None  # half-unpacked (cancelled) install
    (tmp_path / "chromium-1255" / "INSTALLATION_COMPLETE").write_text("")
    assert installed_chromium(tmp_path, "linux") == exe
    assert installed_chromium(tmp_path / "missing", "linux") is None


# --------------------------------------------------------------------------- the real installer


def test_real_installer_from_a_local_mirror_installs_a_chromium_discovery_finds(tmp_path):
    target = tmp_path / "browsers"
    events: list[install.InstallProgress] = []
    with PlaywrightMirror() as mirror:
        exe = ChromiumInstall(target, on_progress=events.append,
                              extra_env={"PLAYWRIGHT_DOWNLOAD_HOST": mirror.url}).run()
    assert exe == target / "chromium-1255" / "chrome-linux64" / "chrome" or exe.name == "chrome"
    assert (exe.parents[1] / "INSTALLATION_COMPLETE").is_file()
    assert events[0].count == 2 and events[-1].overall == 1.0
    assert oct(target.stat().st_mode & 0o777) == "0o700"
    # The app finds it the way it finds any Playwright Chromium, and it really runs.
    found = find_browser(env={"PATH": "", "PLAYWRIGHT_BROWSERS_PATH": str(target)}, home=str(tmp_path),
                         root=tmp_path / "no-system-browsers")
    assert found.path == str(exe) and found.source == "playwright"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=30)
    assert "Chromium" in out.stdout


def test_real_installer_with_nothing_listening_is_offline_and_leaves_no_browser(tmp_path):
    started = time.monotonic()
    with pytest.raises(InstallOffline):
        ChromiumInstall(tmp_path / "b", extra_env={"PLAYWRIGHT_DOWNLOAD_HOST": closed_port_url()}).run()
    assert time.monotonic() - started < 60
    assert installed_chromium(tmp_path / "b") is None


def test_cancel_ends_the_installer_and_its_download_child(tmp_path):
    target = tmp_path / "b"
    with PlaywrightMirror(padding=8_000_000, delay=0.05) as mirror:
        job = ChromiumInstall(target, extra_env={"PLAYWRIGHT_DOWNLOAD_HOST": mirror.url})
        first = threading.Event()
        job.on_progress = lambda p: first.set() if p.percent > 0 else None
        result: list[BaseException] = []

        def run() -> None:
            try:
                job.run()
            except BaseException as exc:  # noqa: BLE001 - handed to the test
                result.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        assert first.wait(30), "the download never started"
        pid = job._proc.pid  # type: ignore[union-attr]
        job.cancel()
        worker.join(15)
    assert not worker.is_alive()
    assert isinstance(result[0], InstallCancelled)
    assert installed_chromium(target) is None
    # Nothing of the installer's process group runs on (the download runs in a forked child).
    assert wait_until(lambda: not live_members(pid), 10), live_members(pid)


def live_members(pgid: int) -> list[str]:
    """Processes of group ``pgid`` that are not zombies (a zombie waits for its reaper only)."""
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,stat=,comm="], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if ln.split()[1] == str(pgid) and not ln.split()[2].startswith("Z")]


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_real_installer_on_a_full_disk_says_disk_full(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)],
                             capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("needs root to mount a 1 MB tmpfs")
    try:
        with PlaywrightMirror() as mirror, pytest.raises(InstallDiskFull):
            ChromiumInstall(small / "browsers", extra_env={"PLAYWRIGHT_DOWNLOAD_HOST": mirror.url}).run()
    finally:
        subprocess.run(["umount", str(small)], check=False)
