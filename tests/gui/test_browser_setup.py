"""The first-run browser download window (pytest-qt, offscreen).

No stand-in at all: the window drives Playwright's real installer (the bundled node driver,
`install --no-shell chromium`) as a real subprocess. Only the download server is local —
tests/installers/pw_mirror.py, reached through Playwright's own PLAYWRIGHT_DOWNLOAD_HOST —
because the build machines cannot reach Playwright's CDN. "Offline" is a port where nothing
listens; "back online" is the mirror starting on that same port.
"""

from __future__ import annotations

import subprocess

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog

from linda_desktop.browser.install import installed_chromium
from linda_desktop.ui.browser_setup import OFFLINE_WORDS, BrowserSetupDialog, ensure_browser_interactively
from tests.installers.pw_mirror import PlaywrightMirror
from tests.plugins.fixtures import free_port

pytestmark = pytest.mark.timeout(120)


def test_download_shows_progress_and_accepts_with_the_installed_chromium(qtbot, tmp_path):
    values: list[int] = []
    with PlaywrightMirror(padding=4_000_000, delay=0.002) as mirror:
        dialog = BrowserSetupDialog(tmp_path / "browsers", extra_env={"PLAYWRIGHT_DOWNLOAD_HOST": mirror.url})
        qtbot.addWidget(dialog)
        dialog.bar.valueChanged.connect(values.append)
        seen_status: list[str] = []
        dialog._relay.progressed.connect(lambda _p: seen_status.append(dialog.status.text()))
        with qtbot.waitSignal(dialog.accepted, timeout=60_000):
            dialog.show()
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert dialog.executable == str(installed_chromium(tmp_path / "browsers"))
    assert values == sorted(values) and values[-1] == 1000 and len(set(values)) >= 5
    assert any("Downloading Chromium…" in s and "% of 4 MB" in s for s in seen_status)
    assert dialog.message.isHidden() and dialog.retry_button.isHidden()


def test_offline_says_so_in_plain_words_and_retry_works_once_back_online(qtbot, tmp_path):
    port = free_port()
    dialog = BrowserSetupDialog(tmp_path / "browsers",
                                extra_env={"PLAYWRIGHT_DOWNLOAD_HOST": f"http://127.0.0.1:{port}"})
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: dialog.retry_button.isVisible(), timeout=60_000)
    assert dialog.message.text() == OFFLINE_WORDS
    assert "offline" in dialog.message.text() and "Retry" in dialog.message.text()
    assert dialog.isVisible() and dialog.bar.value() == 0
    dialog.grab().save(str(tmp_path / "offline.png"))

    with PlaywrightMirror(port=port), qtbot.waitSignal(dialog.accepted, timeout=60_000):
        qtbot.mouseClick(dialog.retry_button, Qt.MouseButton.LeftButton)
    assert dialog.executable and installed_chromium(tmp_path / "browsers") is not None
    assert subprocess.run([dialog.executable, "--version"], capture_output=True, text=True,
                          timeout=30).stdout.startswith("Chromium")


def test_cancel_stops_the_installer_and_leaves_no_browser(qtbot, tmp_path):
    with PlaywrightMirror(padding=8_000_000, delay=0.05) as mirror:
        dialog = BrowserSetupDialog(tmp_path / "browsers", extra_env={"PLAYWRIGHT_DOWNLOAD_HOST": mirror.url})
        qtbot.addWidget(dialog)
        dialog.show()
        qtbot.waitUntil(lambda: "% of" in dialog.status.text(), timeout=30_000)
        proc = dialog.job._proc  # type: ignore[union-attr]
        with qtbot.waitSignal(dialog.rejected, timeout=15_000):
            qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert dialog.executable is None and not dialog.running
    assert proc.poll() is not None
    assert installed_chromium(tmp_path / "browsers") is None


def test_ensure_uses_a_browser_a_previous_run_downloaded_without_any_window(qtbot, tmp_path, monkeypatch):
    from linda_desktop.base.paths import resolve_paths

    paths = resolve_paths(tmp_path / "data")
    exe = paths.browsers / "chromium-1255" / "chrome-linux64" / "chrome"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    (paths.browsers / "chromium-1255" / "INSTALLATION_COMPLETE").write_text("")
    monkeypatch.delenv("PLAYWRIGHT_BROWSERS_PATH", raising=False)
    assert ensure_browser_interactively(paths) == str(exe)
    import os

    assert os.environ["PLAYWRIGHT_BROWSERS_PATH"] == str(paths.browsers)
