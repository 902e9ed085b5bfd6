"""Take the README screenshots of the real tray UI under Xvfb + openbox + tint2.

    python -m tests.screenshots.shoot preview   # the real UI fed with fixed events (no browser)
    python -m tests.screenshots.shoot app       # the full app against the WhatsApp simulator
    python -m tests.screenshots.shoot passkey   # the full app: the passkey step, browser window beside it

Writes PNGs to resources/screenshots/ (or --out DIR). Needs Xvfb, openbox, tint2, xdotool,
xwininfo, xprop and imagemagick (``import``/``convert``). Every process started here is ended
here, by its pid.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "resources" / "screenshots"
SCREEN = (1100, 700)
APP_CLASS = "Linda Desktop"
TOOLS = ("Xvfb", "openbox", "tint2", "xdotool", "xwininfo", "xprop", "import", "convert")


class Desktop:
    """Xvfb on a free display, a desktop background, openbox and a tint2 panel with a tray."""

    def __init__(self, scratch: Path, size: tuple[int, int] = SCREEN) -> None:
        self.scratch = scratch
        self.size = size
        self.procs: list[subprocess.Popen] = []
        self.display = ""

    def __enter__(self) -> Desktop:
        try:
            return self._start_all()
        except BaseException:
            self.__exit__()
            raise

    def _start_all(self) -> Desktop:
        read_fd, write_fd = os.pipe()
        xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0",
                                 f"{self.size[0]}x{self.size[1]}x24", "-nolisten", "tcp"],
                                pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write_fd)
        self.procs.append(xvfb)
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        if not number:
            raise SystemExit("Xvfb did not start")
        self.display = f":{number}"
        bg = self.scratch / "background.png"
        subprocess.run(["convert", "-size", f"{self.size[0]}x{self.size[1]}", "gradient:#5b7d99-#2f4558",
                        str(bg)], check=True)
        # `display` sets the root background, then exits 1 (nothing to show): ignore the code.
        subprocess.run(["display", "-window", "root", str(bg)], env=self.env(), check=False,
                       stderr=subprocess.DEVNULL)
        self.start(["openbox", "--config-file", str(HERE / "openbox-rc.xml")])
        time.sleep(0.5)
        self.start(["tint2", "-c", str(HERE / "tint2rc")])
        time.sleep(0.8)
        return self

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
        env.update(DISPLAY=self.display, LINDA_TRAY_THEME="dark", **extra)
        return env

    def start(self, argv: list[str], **kw) -> subprocess.Popen:
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(argv, env=kw.pop("env", None) or self.env(), **kw)
        self.procs.append(proc)
        return proc

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            stop(proc)

    # ---- X helpers -----------------------------------------------------------------------------

    def run(self, *argv: str) -> str:
        return subprocess.run(argv, env=self.env(), capture_output=True, text=True).stdout

    def windows(self, **search: str) -> list[str]:
        args = ["xdotool", "search", "--onlyvisible"]
        for key, value in search.items():
            args += [f"--{key}", value]
        return self.run(*args).split()

    def geometry(self, wid: str) -> tuple[int, int, int, int]:
        info = self.run("xwininfo", "-id", wid)
        get = lambda label: int(re.search(rf"{label}:\s+(-?\d+)", info).group(1))  # noqa: E731
        return get("Absolute upper-left X"), get("Absolute upper-left Y"), get("Width"), get("Height")

    def frame_extents(self, wid: str) -> tuple[int, int, int, int]:
        out = self.run("xprop", "-id", wid, "_NET_FRAME_EXTENTS")
        nums = [int(n) for n in re.findall(r"\d+", out.split("=", 1)[-1])] if "=" in out else []
        return tuple(nums) if len(nums) == 4 else (0, 0, 0, 0)  # left, right, top, bottom

    def tray_icon(self) -> tuple[int, int, int, int] | None:
        """The app's icon inside tint2's tray (an embedded window of our WM_CLASS)."""
        tree = self.run("xwininfo", "-root", "-tree")
        for line in tree.splitlines():
            m = re.search(r'\("[^"]*" "' + re.escape(APP_CLASS)
                          + r'"\)\s+(\d+)x(\d+)\+-?\d+\+-?\d+\s+\+(-?\d+)\+(-?\d+)', line)
            if m:
                w, h, x, y = map(int, m.groups())
                if w <= 64 and h <= 64 and y < 40:
                    return x, y, w, h
        return None

    def screenshot(self, path: Path, crop: tuple[int, int, int, int] | None = None) -> Path:
        raw = self.scratch / "root.png"
        subprocess.run(["import", "-window", "root", str(raw)], env=self.env(), check=True)
        args = ["convert", str(raw)]
        if crop:
            x, y, w, h = _clip(crop, self.size)
            args += ["-crop", f"{w}x{h}+{x}+{y}", "+repage"]
        subprocess.run([*args, "-strip", str(path)], check=True)
        return path


def _clip(box: tuple[int, int, int, int], screen: tuple[int, int] = SCREEN) -> tuple[int, int, int, int]:
    x, y, w, h = box
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(screen[0], x + w), min(screen[1], y + h)
    return x0, y0, x1 - x0, y1 - y0


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


DEBUG_SHOT: list[Desktop] = []  # set by main(): where to photograph a failure


def wait_for(what: str, probe, timeout: float = 30.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    if DEBUG_SHOT:
        desk = DEBUG_SHOT[0]
        path = desk.screenshot(desk.scratch.parent / f"linda-shot-failed-{os.getpid()}.png")
        print("screen at the failure:", path, file=sys.stderr)
    raise SystemExit(f"timed out waiting for {what}")


def window_types(desk: Desktop) -> dict[str, str]:
    return {wid: desk.run("xprop", "-id", wid, "_NET_WM_WINDOW_TYPE")
            for wid in desk.windows(**{"class": APP_CLASS})}


def wait_for_balloons_to_go(desk: Desktop, timeout: float = 15.0) -> None:
    """Qt draws its own balloon for tray messages on X11 without a notification daemon."""
    def none_left() -> bool:
        return not any("TOOLTIP" in t or "NOTIFICATION" in t for t in window_types(desk).values())
    wait_for("tray messages to disappear", none_left, timeout=timeout)


def window_shot(desk: Desktop, name: str, out: Path, margin: int = 24) -> Path:
    wid = wait_for(f"window {name!r}", lambda: desk.windows(name=name))[-1]
    time.sleep(0.6)  # let it paint
    x, y, w, h = desk.geometry(wid)
    left, right, top, bottom = desk.frame_extents(wid)
    box = (x - left - margin, y - top - margin, w + left + right + 2 * margin, h + top + bottom + 2 * margin)
    return desk.screenshot(out, box)


def menu_shot(desk: Desktop, out: Path, submenu_out: Path | None = None) -> list[Path]:
    icon = wait_for("the tray icon", desk.tray_icon)
    x, y, w, h = icon
    desk.run("xdotool", "mousemove", str(x + w // 2), str(y + h // 2), "click", "3")
    # Qt's popup menu: the newest visible window of our class that is not the icon or a window.
    def menu_box():
        for wid, kind in window_types(desk).items():
            if "POPUP_MENU" in kind or "DROPDOWN" in kind:
                return desk.geometry(wid)
        return None
    mx, my, _mw, mh = wait_for("the tray menu", menu_box, timeout=10)
    time.sleep(0.5)
    left = min(mx, x) - 60
    shots = [desk.screenshot(out, (left, 0, SCREEN[0] - left, my + mh + 40))]
    if submenu_out is not None:
        # Keyboard: status line, Back up now, Restore from backup ▸, then open it.
        desk.run("xdotool", "key", "--delay", "120", "Down", "Down", "Down", "Right")
        time.sleep(0.8)
        left = min(mx, x) - 300
        shots.append(desk.screenshot(submenu_out, (left, 0, SCREEN[0] - left, my + mh + 40)))
    return shots


def preview(desk: Desktop, out: Path) -> list[Path]:
    shots: list[Path] = []
    link = [("qr", "qr-window.png"), ("expired", "qr-expired.png"), ("passkey", "passkey-prompt.png"),
            ("passkey-wait", "passkey-waiting.png"), ("passkey-code", "passkey-code.png"),
            ("link-expired", "link-expired.png"), ("phone", "phone-number.png"), ("pairing-code", "pairing-code.png"),
            ("restoring", "restoring.png")]
    scenes = [("menu", "tray-menu.png"), *link,
              ("status", "status-window.png"), ("diagnostics", "diagnostics.png"), ("about", "about.png")]
    titles = {**{scene: "Link WhatsApp" for scene, _ in link}, "status": "^Linda Desktop$",
              "diagnostics": "Diagnostics", "about": "About Linda Desktop"}
    only = os.environ.get("LINDA_SHOTS_ONLY")  # e.g. "passkey,phone": just these scenes
    if only:
        scenes = [(scene, name) for scene, name in scenes if scene in only.split(",")]
    for scene, filename in scenes:
        proc = desk.start([sys.executable, "-m", "tests.screenshots.preview", scene],
                          cwd=str(ROOT), stdout=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
            if not line or not json.loads(line).get("ready"):
                raise SystemExit(f"preview {scene} did not start")
            if scene == "menu":
                shots += menu_shot(desk, out / filename, out / "tray-menu-restore.png")
            else:
                if scene == "pairing-code":
                    time.sleep(1.2)  # the scripted service answers the request after 0.8 s
                shots.append(window_shot(desk, titles[scene], out / filename))
        finally:
            stop(proc)
        print("wrote", out / filename, flush=True)
    return shots


def app(desk: Desktop, out: Path, scratch: Path) -> list[Path]:
    """The real app against the simulator: the first launch shows the QR window; the simulated
    phone scans it; the app connects, backs up, and the tray menu shows it."""
    from tests.whatsapp_sim.control import Simulator

    sim = Simulator(None, scratch / "sim", loading_seconds=0.5, qr_interval=20, first_qr_seconds=20,
                    account="31612345678").start()
    data = scratch / "data"
    proc = desk.start([sys.executable, "-m", "linda_desktop", "--background", "--data-dir", str(data),
                       "--wa-url", sim.url], cwd=str(ROOT),
                      env=desk.env(LINDA_BROWSER=os.environ.get("LINDA_BROWSER", "/usr/bin/chromium")))
    shots: list[Path] = []
    try:
        wait_for("the tray icon", desk.tray_icon, timeout=60)
        wait_for("the QR window", lambda: desk.windows(name="Link WhatsApp"), timeout=60)
        wait_for_balloons_to_go(desk)
        shots.append(window_shot(desk, "Link WhatsApp", out / "app-qr-window.png"))
        print("wrote", shots[-1], flush=True)
        sim.link()  # the phone scans the code on screen
        wait_for("the QR window to close", lambda: not desk.windows(name="Link WhatsApp"), timeout=60)
        time.sleep(8)  # the first backup after linking (the app waits for storage to reach the disk)
        wait_for_balloons_to_go(desk)
        shots += menu_shot(desk, out / "app-tray-menu.png", out / "app-tray-menu-restore.png")
        for shot in shots[1:]:
            print("wrote", shot, flush=True)
        desk.run("xdotool", "key", "Escape", "Escape")
    finally:
        stop(proc, grace=60)  # SIGTERM: the app backs up and closes its browser
        sim.stop()
    if proc.returncode != 0:
        raise SystemExit(f"the app exited with {proc.returncode}")
    return shots


PASSKEY_SCREEN = (1920, 1000)  # room for the WhatsApp window (1024×768) and the QR window side by side
PASSKEY_CROP = (20, 26, 1900, 640)  # both windows, without the empty desktop below


def passkey(desk: Desktop, out: Path, scratch: Path) -> list[Path]:
    """The real app links an account that needs the passkey step: the simulated phone scans, the
    app's own browser window comes on screen beside the QR window, Continue is pressed there and a
    virtual authenticator answers Chrome (tests/e2e/test_passkey_link.py has the hands)."""
    from linda_desktop.system.processes import main_browser_pid
    from tests.e2e.test_passkey_link import OwnerHands, cdp_browser_wrapper
    from tests.whatsapp_sim.control import Simulator

    sim = Simulator(None, scratch / "sim", url_host="localhost", loading_seconds=0.5, first_qr_seconds=60,
                    qr_interval=30, passkey=True, passkey_phone_seconds=1.5, account="31612345678").start()
    data = scratch / "data"
    proc = desk.start([sys.executable, "-m", "linda_desktop", "--background", "--data-dir", str(data),
                       "--wa-url", sim.url, "--browser", str(cdp_browser_wrapper(scratch / "bin"))], cwd=str(ROOT))
    shots: list[Path] = []
    try:
        qr = wait_for("the QR window", lambda: desk.windows(name="Link WhatsApp"), timeout=60)[-1]
        wait_for("the browser", lambda: main_browser_pid(data / "profile"), timeout=30)
        wait_for_balloons_to_go(desk)
        with OwnerHands(data / "profile", sim.url) as hands:
            hands.add_passkey()
            sim.link()  # the phone scans the code

            def browser_on_screen() -> bool:
                return any(0 <= g[0] < desk.size[0] and g[2] > 200
                           for g in (desk.geometry(w) for w in desk.windows(**{"class": "chromium"})))
            wait_for("the WhatsApp window on screen", browser_on_screen, timeout=20)
            desk.run("xdotool", "windowmove", qr, "1085", "140")
            desk.run("xdotool", "windowactivate", qr)
            time.sleep(2.0)
            wait_for_balloons_to_go(desk)
            shots.append(desk.screenshot(out / "app-passkey-prompt.png", PASSKEY_CROP))
            hands.click("shortcake_passkey_continue_button")
            wait_for("the code to match", lambda: sim.passkey_stage() == "code_matching", timeout=20)
            desk.run("xdotool", "windowactivate", qr)
            time.sleep(2.0)
            shots.append(desk.screenshot(out / "app-passkey-code.png", PASSKEY_CROP))
            hands.click("shortcake_code_confirm_button")
            wait_for("the QR window to close", lambda: not desk.windows(name="Link WhatsApp"), timeout=60)
        for shot in shots:
            print("wrote", shot, flush=True)
    finally:
        stop(proc, grace=60)
        sim.stop()
    if proc.returncode != 0:
        raise SystemExit(f"the app exited with {proc.returncode}")
    return shots


@contextmanager
def scratch_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="linda-shots-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("preview", "app", "passkey"), nargs="?", default="app")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        print("missing tools:", ", ".join(missing), file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    size = PASSKEY_SCREEN if args.mode == "passkey" else SCREEN
    with scratch_dir() as scratch, Desktop(scratch, size) as desk:
        DEBUG_SHOT.append(desk)
        if args.mode == "preview":
            preview(desk, args.out)
        elif args.mode == "passkey":
            passkey(desk, args.out, scratch)
        else:
            app(desk, args.out, scratch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
