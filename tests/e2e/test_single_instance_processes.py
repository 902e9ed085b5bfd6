"""Single instance between real processes: hand-over, SIGKILL, private channel, hostile clients.

Each process runs tests/e2e/instance_app.py, which uses the single-instance module exactly
as the app does (start_or_connect).
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from linda_desktop.system import single_instance as si

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX process and socket checks")

REPO = Path(__file__).resolve().parents[2]
HELPER = Path(__file__).with_name("instance_app.py")


class Apps:
    """Starts helper processes and makes sure none (nor their children) outlive the test."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.procs: list[subprocess.Popen[str]] = []
        self.extra_pids: list[int] = []
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}

    def start(self) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, str(HELPER), str(self.state)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=self.env)
        self.procs.append(proc)
        return proc

    def run_second(self) -> dict:
        result = subprocess.run([sys.executable, str(HELPER), str(self.state)], stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, env=self.env, timeout=30)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    @staticmethod
    def first_line(proc: subprocess.Popen[str], timeout: float = 20) -> dict:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            assert selector.select(timeout), "the helper printed nothing in time"
        return json.loads(proc.stdout.readline())

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            if proc.stdin:
                proc.stdin.close()
            if proc.stdout:
                proc.stdout.close()
        for pid in self.extra_pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[Apps]:
    apps = Apps(tmp_path / "data" / "state")
    yield apps
    apps.close()


def client(state: Path) -> si.ControlClient:
    found = si.connect_to_running(state)
    assert found is not None
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def test_second_launch_hands_over_to_the_first(apps: Apps) -> None:
    first = apps.start()
    assert apps.first_line(first) == {"role": "primary", "pid": first.pid}
    assert si.holder_pid(apps.state / "instance.lock") == first.pid

    assert apps.run_second() == {"role": "secondary", "answer": {"ok": True, "result": "shown"}}
    assert apps.run_second()["role"] == "secondary"
    assert first.poll() is None
    assert client(apps.state).request({"cmd": "handled"}) == {"ok": True, "result": ["show", "show", "handled"]}

    # A clean quit removes the channel and frees the lock.
    assert first.stdin is not None
    first.stdin.close()
    assert first.wait(10) == 0
    assert not (apps.state / "control.json").exists()
    assert not si.is_locked(apps.state / "instance.lock")
    assert si.connect_to_running(apps.state) is None


def test_sigkill_frees_the_lock_at_once_even_with_a_surviving_child(apps: Apps) -> None:
    first = apps.start()
    assert apps.first_line(first)["role"] == "primary"
    child_pid = client(apps.state).request({"cmd": "spawn"})["result"]
    apps.extra_pids.append(child_pid)

    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    assert alive(child_pid), "the browser-like child outlives its parent"
    assert (apps.state / "control.json").exists(), "a killed app leaves its control file behind"

    # No waiting, no stale-lock cleanup: the kernel dropped the lock with the process.
    started = time.monotonic()
    assert not si.is_locked(apps.state / "instance.lock")
    assert si.connect_to_running(apps.state, wait=0) is None, "the stale control file is not trusted"
    assert time.monotonic() - started < 1

    third = apps.start()
    assert apps.first_line(third) == {"role": "primary", "pid": third.pid}
    assert apps.run_second()["answer"] == {"ok": True, "result": "shown"}
    assert client(apps.state).pid == third.pid


def test_channel_files_are_private(apps: Apps) -> None:
    first = apps.start()
    assert apps.first_line(first)["role"] == "primary"
    control = json.loads((apps.state / "control.json").read_text())
    assert set(control) == {"address", "authkey", "pid"} and len(bytes.fromhex(control["authkey"])) == 32
    assert stat.S_IMODE((apps.state / "control.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((apps.state / "instance.lock").stat().st_mode) == 0o600
    socket_path = Path(control["address"])
    assert stat.S_ISSOCK(socket_path.stat().st_mode)
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(socket_path.parent.stat().st_mode) == 0o700


OTHER_USER_PROBE = """
import json, socket, sys
results = {}
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1]); results["connect"] = "connected"
except OSError as e:
    results["connect"] = type(e).__name__
try:
    open(sys.argv[2]).read(); results["read"] = "read"
except OSError as e:
    results["read"] = type(e).__name__
print(json.dumps(results))
"""


def test_another_user_can_neither_connect_nor_read_the_key() -> None:
    python = shutil.which("python3", path="/usr/bin:/bin")
    if os.geteuid() != 0 or python is None:
        pytest.skip("needs root (to run a probe as 'nobody') and a system python3")
    # A folder 'nobody' may traverse, so only our own permissions can stop it.
    base = Path(tempfile.mkdtemp(prefix="linda-perm-", dir="/tmp"))
    os.chmod(base, 0o755)
    apps = Apps(base / "state")
    try:
        first = apps.start()
        assert apps.first_line(first)["role"] == "primary"
        address = json.loads((apps.state / "control.json").read_text())["address"]
        probe = subprocess.run([python, "-c", OTHER_USER_PROBE, address, str(apps.state / "control.json")],
                               user=65534, group=65534, capture_output=True, text=True, timeout=30, cwd="/")
        assert json.loads(probe.stdout) == {"connect": "PermissionError", "read": "PermissionError"}, probe.stderr
        # Sanity check of the probe itself: it does connect when the folder is open.
        os.chmod(apps.state, 0o755)
        os.chmod(address, 0o777)
        opened = subprocess.run([python, "-c", OTHER_USER_PROBE, address, "/etc/hostname"],
                                user=65534, group=65534, capture_output=True, text=True, timeout=30, cwd="/")
        assert json.loads(opened.stdout)["connect"] == "connected"
    finally:
        apps.close()
        shutil.rmtree(base, ignore_errors=True)


def test_wrong_key_is_refused_by_the_running_app(apps: Apps) -> None:
    first = apps.start()
    assert apps.first_line(first)["role"] == "primary"
    real = client(apps.state)
    with pytest.raises(si.ControlChannelError, match="refused"):
        si.send_command(real.address, bytes(32), {"cmd": "show"})
    with pytest.raises(si.ControlChannelError):
        si.send_command(real.address, b"", {"cmd": "show"})
    assert real.request({"cmd": "handled"}) == {"ok": True, "result": ["handled"]}, "the refused requests never ran"
    assert first.poll() is None


def test_garbage_on_the_socket_does_not_kill_the_server(apps: Apps) -> None:
    first = apps.start()
    assert apps.first_line(first)["role"] == "primary"
    address = client(apps.state).address

    def raw(payload: bytes, *, keep_open: bool = False) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(address)
        if payload:
            sock.sendall(payload)
        if keep_open:
            return sock
        sock.close()
        return None

    raw(b"")  # connect and hang up
    raw(os.urandom(4096))
    raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    raw(b"\x7f\xff\xff\xff")  # a 2 GiB frame header
    raw(b"\xff\xff\xff\xff" + b"\x7f" * 8)  # the 64-bit frame header, absurd size
    raw(b"\x00\x00\x00\x40" + bytes(64))  # a well-formed frame with a wrong proof
    silent = raw(b"", keep_open=True)  # connects and says nothing
    half = raw(b"\x00\x00\x10\x00abc", keep_open=True)  # a frame that never completes
    try:
        started = time.monotonic()
        assert client(apps.state).request({"cmd": "show"}, timeout=5) == {"ok": True, "result": "shown"}
        assert time.monotonic() - started < 3, "a silent client must not block the others"
        assert apps.run_second()["answer"] == {"ok": True, "result": "shown"}
    finally:
        for sock in (silent, half):
            assert sock is not None
            sock.close()
    assert first.poll() is None
    handled = client(apps.state).request({"cmd": "handled"})["result"]
    assert handled == ["show", "show", "handled"], "garbage never reached the handler"
