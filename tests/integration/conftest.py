"""Fixtures for tests with a real Chromium and the WhatsApp Web simulator."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.whatsapp_sim.control import Simulator, free_port

# Keeps every test off the internet: only the simulator on 127.0.0.1 resolves.
OFFLINE_ARGS = ("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",)
FAST = dict(loading_seconds=0.3, first_qr_seconds=2.0, qr_interval=1.0, qr_count=3)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The browser under test: LINDA_BROWSER (tests/run.sh sets /usr/bin/chromium), else discovery."""
    from linda_desktop.browser.discovery import find_browser
    from linda_desktop.base.errors import BrowserNotFound

    try:
        return find_browser().path
    except BrowserNotFound as err:
        pytest.skip(f"no Chromium: {err}")


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Simulator]:
    """A running simulator with fast timings on a port chosen once for this test (restarts
    keep it, so the page's origin and its stored session stay the same)."""
    sim = Simulator(free_port(), tmp_path / "sim", **FAST)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def wa_options(chromium: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Keyword arguments for WhatsAppPage(profile, url, **wa_options). Any browser a test
    leaves behind on a profile under tmp_path is killed afterwards."""
    yield {"executable": chromium, "extra_args": OFFLINE_ARGS}
    kill_browsers_under(tmp_path)


def kill_browsers_under(root: Path) -> None:
    if not sys.platform.startswith("linux"):
        return
    marker = f"--user-data-dir={root}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(arg.startswith(marker) for arg in argv):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                pass


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
