"""The real system tray under Xvfb + openbox + tint2: the icon docks, right-click opens the menu,
left-click opens the window, SIGTERM quits cleanly. (Offscreen Qt has no tray at all.)"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.screenshots.shoot import APP_CLASS, ROOT, TOOLS, Desktop, stop, wait_for

pytestmark = [pytest.mark.xvfb, pytest.mark.timeout(90),
              pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                                 reason="needs Xvfb, openbox, tint2, xdotool, imagemagick")]


def popup_menu(desk: Desktop):
    for wid in desk.windows(**{"class": APP_CLASS}):
        if "POPUP_MENU" in desk.run("xprop", "-id", wid, "_NET_WM_WINDOW_TYPE"):
            return wid
    return None


def test_tray_icon_menu_and_window_on_a_real_x_tray(tmp_path):
    with Desktop(tmp_path) as desk:
        app = desk.start([sys.executable, "-m", "tests.screenshots.preview", "menu"], cwd=str(ROOT),
                         stdout=subprocess.PIPE, text=True)
        try:
            ready = json.loads(app.stdout.readline())
            assert ready["ready"] and ready["tray"] is not None  # Qt found the X tray
            x, y, w, h = wait_for("the icon in tint2's tray", desk.tray_icon, timeout=15)
            assert (w, h) == (22, 22) and y < 32

            shot = desk.screenshot(tmp_path / "icon.png", (x, y, w, h))
            out = subprocess.run(["convert", str(shot), "-format", "%[fx:maxima.g*255] %[fx:mean]", "info:"],
                                 capture_output=True, text=True, check=True).stdout.split()
            assert float(out[0]) > 120  # the green "connected" badge is on screen

            desk.run("xdotool", "mousemove", str(x + w // 2), str(y + h // 2), "click", "3")
            wait_for("the tray menu", lambda: popup_menu(desk), timeout=10)
            desk.run("xdotool", "key", "Escape")
            wait_for("the menu to close", lambda: popup_menu(desk) is None, timeout=10)

            desk.run("xdotool", "mousemove", str(x + w // 2), str(y + h // 2), "click", "1")
            wait_for("the status window", lambda: desk.windows(name="^Linda Desktop$"), timeout=10)

            app.send_signal(signal.SIGTERM)  # like an OS log-off
            assert app.wait(30) == 0
        finally:
            stop(app)
        time.sleep(0.2)
        assert desk.tray_icon() is None  # the icon left the tray with the app
