"""WhatsApp's passkey step: the scan cannot finish in a headless browser. The app must say so,
open a visible window on the same profile when asked, and go back to headless once linked."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.e2e.harness import CHROMIUM, REPO, AppProcess, write_settings

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xvfb]


def press_continue(display: str) -> None:
    """What the owner does: focus the visible window and press the page's Continue button
    (real X key events, so the page sees a trusted click from a visible window)."""
    env = {**os.environ, "DISPLAY": display}
    found = subprocess.run(["xdotool", "search", "--onlyvisible", "--class", "chromium"],
                           capture_output=True, text=True, env=env)
    for window in found.stdout.split():
        subprocess.run(["xdotool", "windowactivate", "--sync", window], env=env, capture_output=True, timeout=5)
        subprocess.run(["xdotool", "windowfocus", "--sync", window], env=env, capture_output=True, timeout=5)
        subprocess.run(["xdotool", "key", "--window", window, "Tab", "Return"], env=env, capture_output=True,
                       timeout=5)


@pytest.mark.skipif(shutil.which("xdotool") is None, reason="xdotool is not installed")
def test_stalled_link_finishes_in_a_visible_window(tmp_path, sim, xvfb, apps) -> None:
    data_dir = tmp_path / "data"
    write_settings(data_dir, flush_delay_seconds=6, link_stall_seconds=3)
    sim.configure(passkey=True)
    app = AppProcess(data_dir, sim.url, env={"DISPLAY": xvfb}).start()
    apps.append(app)
    app.wait_for(lambda e: e.get("event") == "qr", 60)
    sim.link()
    stalled = app.wait_for(lambda e: e.get("event") == "state" and e.get("state") == "needs_link"
                           and (e.get("reason") or "").startswith("link_stalled"), 60)
    assert "passkey" in stalled["reason"]
    assert sim.devices()["devices"][0]["status"] == "pending"

    finish = subprocess.Popen([sys.executable, "-m", "linda_desktop", "finish-link", "--data-dir", str(data_dir),
                               "--wa-url", sim.url, "--browser", CHROMIUM], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while sim.devices()["devices"][0]["status"] != "active" and time.monotonic() < deadline:
            time.sleep(1)
            press_continue(xvfb)
        assert sim.devices()["devices"][0]["status"] == "active"
        out, err = finish.communicate(timeout=90)
        assert finish.returncode == 0, err
    finally:
        if finish.poll() is None:
            finish.kill()
    mark = max(i for i, e in enumerate(app.events) if e.get("reason", "").startswith("link_stalled"))
    app.wait_state("connected", 60, after=mark)
    app.wait_for(lambda e: e.get("event") == "backup" and e.get("reason") == "link", 30, after=mark)
    # Back to headless: the browser on the profile runs without a window again.
    assert app.browser_pids()
    assert subprocess.run(["xdotool", "search", "--onlyvisible", "--class", "chromium"], capture_output=True,
                          text=True, env={**os.environ, "DISPLAY": xvfb}).stdout.strip() == ""
