"""The Playwright driver survives a SIGTERM to the app's whole process group (``systemctl stop``,
many terminals), so the app can still close the browser cleanly (issue 12 item 3); and a driver
that goes away leaves no "Future exception was never retrieved" behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import OFFLINE_ARGS
from tests.whatsapp_sim.control import Simulator

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(os.name != "posix", reason="process groups and POSIX signals")]

APP = r"""
import asyncio, gc, logging, os, signal, sys
from pathlib import Path
from linda_desktop.browser.whatsapp import WhatsAppPage
from linda_desktop.base.events import PageState

logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
profile, url, exe, mode = sys.argv[1:5]

async def main() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    wa = WhatsAppPage(Path(profile), url, exe, extra_args=sys.argv[5:])
    await wa.start()
    snap = await wa.wait_for_state(PageState.QR, timeout=20)
    print("ready", wa.browser_pid, wa.driver_pid, snap.state.value, flush=True)
    if mode == "kill-driver":
        os.kill(wa.driver_pid, signal.SIGKILL)
        for _ in range(100):
            if wa.crashed:
                break
            await asyncio.sleep(0.1)
        print("crashed" if wa.crashed else "alive", flush=True)
    else:
        await stop.wait()
    await wa.close()
    print("closed", flush=True)

asyncio.run(main())
gc.collect()
"""


def start_app(tmp_path: Path, sim: Simulator, chromium: str, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", APP, str(tmp_path / "profile"), sim.url, chromium, mode,
                             *OFFLINE_ARGS], cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)   # the app leads its own group, as under systemd


def read_ready(app: subprocess.Popen[str]) -> tuple[int, int]:
    assert app.stdout is not None
    line = app.stdout.readline().split()
    assert line[:1] == ["ready"] and line[3] == "qr", line
    return int(line[1]), int(line[2])


def test_sigterm_to_the_whole_group_still_closes_the_browser_cleanly(simulator: Simulator, chromium: str,
                                                                     tmp_path: Path):
    app = start_app(tmp_path, simulator, chromium, "wait")
    try:
        browser_pid, driver_pid = read_ready(app)
        group = os.getpgid(app.pid)
        assert os.getpgid(driver_pid) != group and os.getsid(driver_pid) == driver_pid   # out of reach
        os.killpg(group, signal.SIGTERM)
        out, err = app.communicate(timeout=60)
    finally:
        if app.poll() is None:
            app.kill()
    assert app.returncode == 0, err
    assert "closed" in out.split()
    assert "Traceback" not in err and "Future exception was never retrieved" not in err, err
    assert not (tmp_path / "profile" / "SingletonLock").exists()      # a clean close, not a kill
    for pid in (browser_pid, driver_pid):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_driver_that_dies_leaves_no_unretrieved_future(simulator: Simulator, chromium: str, tmp_path: Path):
    app = start_app(tmp_path, simulator, chromium, "kill-driver")
    try:
        read_ready(app)
        out, err = app.communicate(timeout=60)
    finally:
        if app.poll() is None:
            app.kill()
    assert app.returncode == 0, err
    assert out.split()[-2:] == ["crashed", "closed"], out
    assert "Future exception was never retrieved" not in err and "Traceback" not in err, err
