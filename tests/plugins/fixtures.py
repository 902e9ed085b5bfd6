"""Fixtures every suite shares (tests/conftest.py loads this plugin for all of them).

    def test_x(free_port, make_simulator, chromium, wa_options, xvfb):
        port = free_port()                          # a TCP port free a moment ago
        sim = make_simulator(**FAST)                # started; stopped after the test
        page = WhatsAppPage(profile, sim.url, **wa_options)   # Chromium, kept off the internet
        env = {"DISPLAY": xvfb}                     # a private X server

Outside fixtures (helpers, benchmarks) import the function: ``from tests.plugins.fixtures import
free_port``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.whatsapp_sim.control import Simulator, free_port

__all__ = [
    "FAST", "OFFLINE_ARGS", "SimulatorFactory", "chromium", "free_port", "free_port_fixture",
    "kill_browsers_under", "make_simulator", "wa_options", "xvfb",
]

SimulatorFactory = Callable[..., Simulator]
# Keeps every test off the internet: only the simulator on 127.0.0.1 resolves.
OFFLINE_ARGS = ("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",)
# Simulator timings for tests that go through loading and a few QR codes quickly.
FAST: dict[str, Any] = {"loading_seconds": 0.3, "first_qr_seconds": 2.0, "qr_interval": 1.0, "qr_count": 3}


@pytest.fixture(name="free_port")
def free_port_fixture() -> Callable[[], int]:
    """``free_port()``: a TCP port on 127.0.0.1 that was free a moment ago."""
    return free_port


@pytest.fixture
def make_simulator(tmp_path: Path) -> Iterator[SimulatorFactory]:
    """``make_simulator(port=None, **options)``: a started WhatsApp Web simulator with its own
    state folder under ``tmp_path`` and a port chosen once (restarts keep it, so the page's origin
    and its stored session stay the same). Every simulator it made is stopped after the test."""
    made: list[Simulator] = []

    def make(port: int | None = None, **options: Any) -> Simulator:
        sim = Simulator(port or free_port(), tmp_path / f"sim-{len(made)}", **options)
        sim.start()
        made.append(sim)
        return sim

    yield make
    for sim in reversed(made):
        sim.stop()


@pytest.fixture(scope="session")
def chromium() -> str:
    """The browser under test: LINDA_BROWSER (tests/run.sh sets /usr/bin/chromium), else discovery."""
    from linda_desktop.base.errors import BrowserNotFound
    from linda_desktop.browser.discovery import find_browser

    try:
        return find_browser().path
    except BrowserNotFound as err:
        pytest.skip(f"no Chromium: {err}")


@pytest.fixture
def wa_options(chromium: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Keyword arguments for WhatsAppPage(profile, url, **wa_options). Any browser a test
    leaves behind on a profile under tmp_path is killed afterwards."""
    yield {"executable": chromium, "extra_args": OFFLINE_ARGS}
    kill_browsers_under(tmp_path)


def kill_browsers_under(root: Path) -> list[int]:
    """Kill every process whose ``--user-data-dir`` lies under ``root`` (a test's leftovers).
    Returns their pids."""
    marker = f"--user-data-dir={root}"
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(arg.startswith(marker) for arg in proc.info.get("cmdline") or []):
            try:
                proc.kill()
                found.append(proc.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
    return found


@pytest.fixture
def xvfb() -> Iterator[str]:
    """A private X server (Xvfb picks a free display itself); yields the DISPLAY value."""
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("Xvfb is not installed")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen([exe, "-displayfd", str(write_fd), "-screen", "0", "1280x1024x24",
                             "-nolisten", "tcp"], pass_fds=(write_fd,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        number = b""
        deadline = time.monotonic() + 15
        while not number.endswith(b"\n") and time.monotonic() < deadline:
            chunk = os.read(read_fd, 16)
            if not chunk:
                break
            number += chunk
        if not number.strip():
            pytest.skip("Xvfb did not start")
        yield f":{number.decode().strip()}"
    finally:
        os.close(read_fd)
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
