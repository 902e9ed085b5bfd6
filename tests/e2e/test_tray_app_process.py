"""The real tray app as a process (`python -m linda_desktop`, no command) on a real X desktop:
Xvfb + openbox + tint2's system tray, the WhatsApp Web simulator and Debian's Chromium.

First launch: the QR window opens, the simulated phone scans it, the window goes away; Quit is
clicked in the tray icon's own menu and the app exits 0 after its "exit" backup. Second launch:
it comes back connected with no QR window, `status --json` is answered by that running app, and
launching the same command again only brings the first app's window forward.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from linda_desktop.base.paths import AppPaths, resolve_paths
from linda_desktop.session.backup import list_backups
from linda_desktop.session.profile import find_browser_processes
from linda_desktop.ui.icons import ICON_KEYS, icons_dir
from tests.e2e.harness import CHROMIUM, REPO, cli, write_settings
from tests.integration.conftest import kill_browsers_under
from tests.screenshots.shoot import APP_CLASS, SCREEN, TOOLS, Desktop, stop
from tests.sim_fixtures import ACCOUNT, steady_sim  # noqa: F401  (the `sim` fixture)
from tests.whatsapp_sim.control import Simulator

pytestmark = [pytest.mark.browser, pytest.mark.xvfb, pytest.mark.timeout(150),
              pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                                 reason="needs Xvfb, openbox, tint2, xdotool, imagemagick")]

QR_TITLE = "Link WhatsApp"
STATUS_TITLE = "^Linda Desktop$"
PANEL = "#1e2227"  # tests/screenshots/tint2rc: the panel the tray icons sit on
NO_QR_SECONDS = 3.0  # after "connected", a QR window must not show up within this long


def until(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.2,
          proc: subprocess.Popen | None = None, errors: Path | None = None) -> Any:
    """``probe()``'s first truthy value within ``timeout`` s; fails early if ``proc`` ended."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            tail = errors.read_text()[-2000:] if errors and errors.exists() else ""
            raise AssertionError(f"the app exited ({proc.returncode}) while waiting for {what}: {tail}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class LogWatch:
    """The app's log file from a mark on (every launch appends to the same file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def text(self) -> str:
        if not self.path.exists():
            return ""
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            handle.seek(self.offset)
            return handle.read()

    def find(self, pattern: str) -> re.Match | None:
        return re.search(pattern, self.text())


class TrayIconReader:
    """Which of the five tray pictures tint2 shows for our icon: the screen's pixels against each
    state's PNG drawn on the panel's colour (normalised RMSE; the right one is ~0.001)."""

    def __init__(self, desk: Desktop, scratch: Path) -> None:
        self.desk = desk
        self.scratch = scratch
        self.refs: dict[str, Path] = {}
        for key in ICON_KEYS:  # LINDA_TRAY_THEME=dark (Desktop.env): light glyphs
            ref = scratch / f"ref-{key}.png"
            subprocess.run(["convert", "-size", "22x22", f"xc:{PANEL}", str(icons_dir() / f"tray-{key}-light-22.png"),
                            "-composite", str(ref)], check=True)
            self.refs[key] = ref

    def state(self) -> str | None:
        box = self.desk.tray_icon()
        if box is None or box[2:] != (22, 22):
            return None
        shot = self.desk.screenshot(self.scratch / "icon.png", box)
        scores = {key: self._rmse(shot, ref) for key, ref in self.refs.items()}
        best = min(scores, key=scores.get)
        return best if scores[best] < 0.03 else None

    @staticmethod
    def _rmse(a: Path, b: Path) -> float:
        out = subprocess.run(["compare", "-metric", "RMSE", str(a), str(b), "null:"],
                             capture_output=True, text=True).stderr
        match = re.search(r"\(([\d.e+-]+)\)", out)
        return float(match.group(1)) if match else 1.0


def popup_menu(desk: Desktop) -> tuple[int, int, int, int] | None:
    for wid in desk.windows(**{"class": APP_CLASS}):
        if "POPUP_MENU" in desk.run("xprop", "-id", wid, "_NET_WM_WINDOW_TYPE"):
            return desk.geometry(wid)
    return None


def quit_from_the_tray_menu(desk: Desktop) -> None:
    """Right-click the icon in tint2's tray, then click the menu's last item, "Quit". A right-click
    that lands on a notification balloon only closes the balloon: try again."""
    for _ in range(3):
        x, y, w, h = until("the tray icon", desk.tray_icon, 10)
        desk.run("xdotool", "mousemove", str(x + w // 2), str(y + h // 2), "click", "3")
        try:
            mx, my, mw, mh = until("the tray menu", lambda: popup_menu(desk), 3)
            break
        except AssertionError:
            continue
    else:
        raise AssertionError("the tray menu did not open")
    desk.run("xdotool", "mousemove", str(mx + mw // 2), str(my + mh - 12), "sleep", "0.3", "click", "1")


class Launcher:
    """Starts `python -m linda_desktop ...` on the desktop; stdout/stderr go to files."""

    def __init__(self, desk: Desktop, argv: list[str], scratch: Path) -> None:
        self.desk, self.argv, self.scratch = desk, argv, scratch
        self.procs: list[subprocess.Popen] = []

    def start(self) -> tuple[subprocess.Popen, Path]:
        errors = self.scratch / f"app-{len(self.procs) + 1}.stderr"
        with open(errors, "w") as err:
            proc = self.desk.start(self.argv, cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=err)
        self.procs.append(proc)
        return proc, errors

    def stop_all(self) -> None:
        for proc in self.procs:
            stop(proc, grace=30)




def test_tray_app_links_quits_from_its_menu_and_comes_back_connected(tmp_path: Path, sim: Simulator):
    data = tmp_path / "data"
    write_settings(data, flush_delay_seconds=1)
    paths = resolve_paths(data)
    argv = [sys.executable, "-m", "linda_desktop", "--data-dir", str(data), "--wa-url", sim.url,
            "--browser", CHROMIUM]
    log = LogWatch(paths.log_file)
    scratch = tmp_path / "desk"
    scratch.mkdir()
    try:
        with Desktop(scratch) as desk:
            icons = TrayIconReader(desk, scratch)
            launcher = Launcher(desk, argv, scratch)
            try:
                drive(desk, launcher, icons, log, sim, paths, argv, tmp_path)
            finally:
                launcher.stop_all()
    finally:
        kill_browsers_under(tmp_path)


def drive(desk: Desktop, launcher: Launcher, icons: TrayIconReader, log: LogWatch, sim: Simulator,
          paths: AppPaths, argv: list[str], tmp_path: Path) -> None:
    data = paths.data

    # ---- first launch: link through the QR window, quit from the tray menu
    first, errors = launcher.start()
    until("the QR window", lambda: desk.windows(name=QR_TITLE), 40, proc=first, errors=errors)
    assert until("the needs-link icon in the tray", lambda: icons.state() == "needs_link", 10)
    sim.link()  # the phone scans the code the page shows
    until("the QR window to close by itself", lambda: not desk.windows(name=QR_TITLE), 30, proc=first)
    until("connected in the log", lambda: log.find(r"state needs_link -> connected"), 10)
    until("the first backup after linking", lambda: log.find(r"backup \S+ \(link\)"), 30, proc=first)
    assert until("the connected icon in the tray", lambda: icons.state() == "connected", 10)

    quit_from_the_tray_menu(desk)
    assert first.wait(60) == 0, errors.read_text()[-2000:]
    assert log.find(r"backup \S+ \(exit\)") and log.find("stopped cleanly")
    exits = [b for b in list_backups(paths.backups) if b.reason == "exit"]
    assert len(exits) == 1 and exits[0].size > 1000
    assert find_browser_processes(paths.profile) == []
    until("the icon to leave the tray", lambda: desk.tray_icon() is None, 5)

    # ---- second launch: back connected without a QR code
    log.mark()
    second, errors = launcher.start()
    deadline = time.monotonic() + 40
    while not log.find(r"state starting -> connected"):
        assert not desk.windows(name=QR_TITLE), "a QR window appeared on a linked restart"
        assert second.poll() is None, errors.read_text()[-2000:]
        assert time.monotonic() < deadline, f"not connected in time; log: {log.text()[-2000:]}"
        time.sleep(0.2)
    quiet_until = time.monotonic() + NO_QR_SECONDS
    while time.monotonic() < quiet_until:
        assert not desk.windows(name=QR_TITLE), "a QR window appeared after connecting"
        time.sleep(0.2)
    assert not log.find(r"needs_link|restored backup")  # the live profile simply resumed
    assert until("the connected icon in the tray", lambda: icons.state() == "connected", 10)

    status = cli(data, "status", "--json", wa_url=sim.url, timeout=60)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["state"] == "connected" and report["pid"] == second.pid  # the running app answered
    assert report["account"] == ACCOUNT

    # ---- a second launch of the same command hands over to the running app
    window = until("the status window", lambda: desk.windows(name=STATUS_TITLE), 10)[-1]
    placed = desk.geometry(window)
    desk.run("xdotool", "windowminimize", window)
    until("the status window to be minimised", lambda: not desk.windows(name=STATUS_TITLE), 5)
    started = time.monotonic()
    again = subprocess.run(argv, cwd=REPO, env=desk.env(), capture_output=True, text=True, timeout=30)
    took = time.monotonic() - started
    assert again.returncode == 0, again.stderr
    assert took < 10, f"the second launch took {took:.1f} s"
    assert log.find(r"another instance is running; asked it to show its window .*'shown': True")
    assert until("the first app's window to come forward",
                 lambda: desk.windows(name=STATUS_TITLE) == [window], 10)
    # Back where it was (openbox animates the un-minimising) and the active window.
    until("the window back in place", lambda: desk.geometry(window) == placed, 5)
    until("the window to be active", lambda: desk.run("xdotool", "getactivewindow").strip() == window, 5)
    assert second.poll() is None  # still the one app, still running
    time.sleep(0.5)  # let it paint before the picture

    shot = desk.screenshot(tmp_path / "tray-connected.png")
    print("screenshot:", shot)

    second.send_signal(signal.SIGTERM)  # like an OS log-off
    assert second.wait(60) == 0, errors.read_text()[-2000:]
    assert len([b for b in list_backups(paths.backups) if b.reason == "exit"]) == 2


# ---------------------------------------------------------------------- the passkey step (issue 11)

def chromium_windows_on_screen(desk: Desktop) -> list[tuple[int, int, int, int]]:
    """Real Chromium windows whose top-left corner is on the screen (the hidden one is far off)."""
    boxes = [desk.geometry(wid) for wid in desk.windows(**{"class": "chromium"})]
    return [b for b in boxes if b[2] > 200 and b[3] > 200 and 0 <= b[0] < SCREEN[0] and 0 <= b[1] < SCREEN[1]]


def test_tray_app_finishes_a_passkey_link_in_the_browser_window_that_showed_the_qr(tmp_path: Path):
    """Scan, the passkey screen, the same browser window comes on screen beside the QR window,
    Continue, Chrome's passkey request answered by a virtual authenticator, the code confirmed,
    connected (the QR window closes by itself), back to headless; one browser process, no second QR."""
    from linda_desktop.system.processes import main_browser_pid
    from tests.e2e.test_passkey_link import OwnerHands, cdp_browser_wrapper, is_headless

    data = tmp_path / "data"
    write_settings(data, flush_delay_seconds=2)
    paths = resolve_paths(data)
    sim = Simulator(None, tmp_path / "sim", url_host="localhost", loading_seconds=0.3, first_qr_seconds=60,
                    qr_interval=30, passkey=True, passkey_phone_seconds=0.5, account=ACCOUNT).start()
    argv = [sys.executable, "-m", "linda_desktop", "--data-dir", str(data), "--wa-url", sim.url,
            "--browser", str(cdp_browser_wrapper(tmp_path / "bin"))]
    log = LogWatch(paths.log_file)
    scratch = tmp_path / "desk"
    scratch.mkdir()
    try:
        with Desktop(scratch) as desk:
            launcher = Launcher(desk, argv, scratch)
            try:
                app, errors = launcher.start()
                until("the QR window", lambda: desk.windows(name=QR_TITLE), 40, proc=app, errors=errors)
                until("a QR code in the log", lambda: log.find(r"state starting -> needs_link"), 20, proc=app)
                pid = until("the browser", lambda: main_browser_pid(paths.profile), 20)
                assert not is_headless(pid) and chromium_windows_on_screen(desk) == []  # a window, out of sight
                with OwnerHands(paths.profile, sim.url) as hands:
                    hands.add_passkey()
                    sim.link()  # the phone scans the code in the QR window
                    until("the passkey step", lambda: log.find(r"state needs_link \(passkey"), 20, proc=app)
                    until("the WhatsApp window on screen", lambda: chromium_windows_on_screen(desk), 15)
                    assert desk.windows(name=QR_TITLE), "the QR window must stay to explain the step"
                    assert main_browser_pid(paths.profile) == pid
                    hands.click("shortcake_passkey_continue_button")
                    until("the code to match", lambda: sim.passkey_stage() == "code_matching", 20)
                    hands.click("shortcake_code_confirm_button")
                    until("the QR window to close by itself", lambda: not desk.windows(name=QR_TITLE), 30, proc=app)
                    until("connected in the log", lambda: log.find(r"state needs_link -> connected"), 10)
                    assert main_browser_pid(paths.profile) == pid  # one browser process served the whole link
                text = log.text()
                before, _, after = text.partition("state needs_link (passkey")
                assert "new QR code shown" in before and "new QR code shown" not in after, "a second QR"
                assert "link_expired" not in after
                until("the link backup", lambda: log.find(r"backup \S+ \(link\)"), 60, proc=app)
                until("a headless browser", lambda: is_headless(main_browser_pid(paths.profile)), 30)
                assert chromium_windows_on_screen(desk) == []
                assert sim.devices()["devices"][0]["status"] == "active"
                quit_from_the_tray_menu(desk)
                assert app.wait(60) == 0, errors.read_text()[-2000:]
            finally:
                launcher.stop_all()
    finally:
        sim.stop()
        kill_browsers_under(tmp_path)
