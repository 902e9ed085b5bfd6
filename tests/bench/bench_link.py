"""Linking benchmark: time from the phone's scan to "connected", through the passkey step, against
the plain QR link, measured in the same run.

    python tests/bench/bench_link.py [--runs 3]

Both are `linda-desktop run --json` on a private X server (so both link in the real browser
window kept out of sight), against the simulator on ``localhost``, interleaved so drift hits
each alike:

  (a) plain: the phone scans, WhatsApp links;
  (b) passkey: the phone scans, the passkey screen appears, the app brings its own window on
      screen; the scripted owner presses Continue at once, a CDP virtual authenticator answers
      Chrome, the owner confirms the code at once (the simulator's phone step takes 0 s).

Prints the medians, the ratio (b)/(a), the extra seconds, and where they go: scan → passkey
prompt (the page's prologue), prompt → window on screen (the window switch), Continue → code
(WebAuthn and the page), confirm → connected. The passkey path's extra cost should be only the
owner's clicks (here instant) and the window switch.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from linda_desktop.system.processes import main_browser_pid  # noqa: E402
from tests.e2e.harness import AppProcess, write_settings  # noqa: E402
from tests.e2e.test_passkey_link import OwnerHands, cdp_browser_wrapper, on_screen, state, visible_browser_windows  # noqa: E402
from tests.whatsapp_sim.control import Simulator  # noqa: E402


def in_keyring_session() -> None:
    """Re-exec inside a private D-Bus session with an unlocked Secret Service (as tests/run.sh)."""
    if os.environ.get("LINDA_TEST_SESSION") or not shutil.which("dbus-run-session"):
        return
    scratch = tempfile.mkdtemp(prefix="bench-keyring-")
    script = (f'export XDG_RUNTIME_DIR="{scratch}/run" XDG_DATA_HOME="{scratch}/data"; '
              'mkdir -p "$XDG_RUNTIME_DIR" "$XDG_DATA_HOME"; chmod 700 "$XDG_RUNTIME_DIR"; '
              'printf %s bench | gnome-keyring-daemon --unlock --components=secrets >/dev/null; '
              'exec "$0" "$@"')
    os.execvpe("dbus-run-session", ["dbus-run-session", "--", "bash", "-c", script, sys.executable,
                                    *sys.argv], {**os.environ, "LINDA_TEST_SESSION": "1"})


class Xvfb:
    def __enter__(self) -> str:
        read_fd, write_fd = os.pipe()
        self.proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x1024x24",
                                      "-nolisten", "tcp"], pass_fds=(write_fd,),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write_fd)
        with os.fdopen(read_fd) as pipe:
            return f":{pipe.readline().strip()}"

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def at(app: AppProcess, event: dict[str, Any]) -> float:
    """The monotonic time at which ``event`` was read from the app's stdout."""
    return app.started_at + float(event["_t"])


def one_link(scratch: Path, display: str, passkey: bool) -> dict[str, float]:
    sim = Simulator(None, scratch / "sim", url_host="localhost", loading_seconds=0.3, first_qr_seconds=60,
                    qr_interval=30, passkey=passkey, passkey_phone_seconds=0.0).start()
    data = scratch / "data"
    write_settings(data, flush_delay_seconds=30)  # no link backup inside the measured window
    app = AppProcess(data, sim.url, env={"DISPLAY": display})
    app.cmd[app.cmd.index("--browser") + 1] = str(cdp_browser_wrapper(scratch / "bin"))
    app.start()
    out: dict[str, float] = {}
    try:
        app.wait_for(lambda e: e.get("event") == "qr", 60)
        pid = main_browser_pid(data / "profile")
        with OwnerHands(data / "profile", sim.url) as hands:
            if passkey:
                hands.add_passkey()
            scanned = time.monotonic()
            sim.link()
            if passkey:
                prompt = app.wait_for(lambda e: state(e, "needs_link", step="passkey", stage="prompt"), 30)
                out["scan_to_prompt"] = at(app, prompt) - scanned
                while not on_screen(visible_browser_windows(display)):
                    time.sleep(0.01)
                out["window_switch"] = time.monotonic() - at(app, prompt)
                pressed = time.monotonic()
                hands.click("shortcake_passkey_continue_button")
                hands.page.wait_for_selector('[data-testid="shortcake_code_confirm_button"]', timeout=30_000)
                out["continue_to_code"] = time.monotonic() - pressed
                confirmed = time.monotonic()
                hands.click("shortcake_code_confirm_button")
            connected = app.wait_for(lambda e: state(e, "connected"), 60)
            if passkey:
                out["confirm_to_connected"] = at(app, connected) - confirmed
            out["scan_to_connected"] = at(app, connected) - scanned
            assert main_browser_pid(data / "profile") == pid, "a second browser served the link"
        app.terminate(60)
    finally:
        app.close()
        sim.stop()
    return out


def main() -> int:
    in_keyring_session()
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    plain: list[dict[str, float]] = []
    passkey: list[dict[str, float]] = []
    with Xvfb() as display:
        for i in range(args.runs):
            for kind, rows in (("plain", plain), ("passkey", passkey)):
                scratch = Path(tempfile.mkdtemp(prefix=f"bench-link-{kind}-"))
                try:
                    row = one_link(scratch, display, kind == "passkey")
                finally:
                    shutil.rmtree(scratch, ignore_errors=True)
                rows.append(row)
                print(f"run {i + 1} {kind:8s} " + "  ".join(f"{k}={v:.2f}s" for k, v in row.items()), flush=True)

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    a, b = med(plain, "scan_to_connected"), med(passkey, "scan_to_connected")
    print(f"\nscan → connected, median of {args.runs}:")
    print(f"  (a) plain QR link      {a:6.2f} s")
    print(f"  (b) through passkey    {b:6.2f} s   ratio (b)/(a) = {b / a:.2f}, extra {b - a:+.2f} s")
    for key in ("scan_to_prompt", "window_switch", "continue_to_code", "confirm_to_connected"):
        print(f"      {key:22s} {med(passkey, key):6.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
