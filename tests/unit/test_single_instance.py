"""Single instance inside one process: the lock, the control server's answers, the channel files.

Cross-process behaviour (SIGKILL, a second launch handing over) is in
tests/e2e/test_single_instance_processes.py.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from linda_desktop.base.errors import AlreadyRunning, LindaError, NotRunning, StorageError
from linda_desktop.system import single_instance as si


def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    lock_file = tmp_path / "state" / "instance.lock"
    first, second = si.InstanceLock(lock_file), si.InstanceLock(lock_file)
    assert not si.is_locked(lock_file)
    assert first.acquire()
    assert first.acquire()  # again on the same object: still ours
    assert not second.acquire()
    assert si.is_locked(lock_file)
    assert si.holder_pid(lock_file) == os.getpid()
    assert stat.S_IMODE(lock_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(lock_file.parent.stat().st_mode) == 0o700
    first.release()
    first.release()  # twice is fine
    assert not si.is_locked(lock_file)
    assert second.acquire()
    second.release()
    assert lock_file.exists(), "the lock file is never deleted (deleting it would race)"


def test_lock_as_context_manager_raises_when_taken(tmp_path: Path) -> None:
    lock_file = tmp_path / "instance.lock"
    with si.InstanceLock(lock_file), pytest.raises(AlreadyRunning), si.InstanceLock(lock_file):
        pass
    assert not si.is_locked(lock_file)


def test_lock_descriptor_is_not_inherited(tmp_path: Path) -> None:
    lock = si.InstanceLock(tmp_path / "instance.lock")
    assert lock.acquire()
    assert lock._fd is not None and not os.get_inheritable(lock._fd)
    lock.release()


def _server(tmp_path: Path, handler: si.Handler) -> si.ControlServer:
    return si.ControlServer(str(tmp_path / "c.sock"), b"k" * 32, handler).start()


def test_answers_and_bad_input(tmp_path: Path) -> None:
    def handler(request: dict) -> dict:
        cmd = request["cmd"]
        if cmd == "boom":
            raise RuntimeError("secret detail")
        if cmd == "typed":
            raise StorageError("Disk full", fix="Free some space")
        if cmd == "not-a-dict":
            return ["x"]  # type: ignore[return-value]
        if cmd == "not-json":
            return {"ok": True, "result": object()}
        return {"ok": True, "result": {"echo": request}}

    server = _server(tmp_path, handler)
    try:
        echoed = {"ok": True, "result": {"echo": {"cmd": "status", "n": 1}}}
        assert server.answer(b'{"cmd": "status", "n": 1}') == echoed
        assert server.answer(b"\xff\xfe") == {"ok": False, "error": "bad request: not JSON"}
        assert server.answer(b"{") == {"ok": False, "error": "bad request: not JSON"}
        for raw in (b"[]", b'"show"', b"{}", b'{"cmd": 3}'):
            answer = server.answer(raw)
            assert answer["ok"] is False and answer["error"].startswith("bad request"), raw
        boom = server.answer(b'{"cmd": "boom"}')
        assert boom["ok"] is False and "RuntimeError" in boom["error"] and "secret" not in boom["error"]
        assert server.answer(b'{"cmd": "typed"}') == {"ok": False, "error": "Disk full — Free some space"}
        assert server.answer(b'{"cmd": "not-a-dict"}')["ok"] is False
        assert server.answer(b'{"cmd": "not-json"}')["ok"] is False
        assert server.answer(b'{"cmd": "ping"}') == {"ok": True, "result": {"pid": os.getpid()}}
        # And over the wire:
        answer = si.send_command(server.address, server.authkey, {"cmd": "status"})
        assert answer == {"ok": True, "result": {"echo": {"cmd": "status"}}}
        assert si.send_command(server.address, server.authkey, {"cmd": "boom"})["ok"] is False
        assert si.send_command(server.address, server.authkey, {"cmd": "status"})["ok"] is True
    finally:
        server.close()
    assert not Path(server.address).exists()
    with pytest.raises(NotRunning):
        si.send_command(server.address, server.authkey, {"cmd": "status"})


def test_handler_runs_one_request_at_a_time(tmp_path: Path) -> None:
    inside, most = 0, 0
    guard = threading.Lock()

    def handler(request: dict) -> dict:
        nonlocal inside, most
        with guard:
            inside += 1
            most = max(most, inside)
        time.sleep(0.05)
        with guard:
            inside -= 1
        return {"ok": True}

    server = _server(tmp_path, handler)
    try:
        answers: list[dict] = []
        def send() -> None:
            answers.append(si.send_command(server.address, server.authkey, {"cmd": "x"}))

        threads = [threading.Thread(target=send) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert answers == [{"ok": True}] * 6
        assert most == 1
    finally:
        server.close()


def test_status_answers_while_a_long_backup_runs(tmp_path: Path) -> None:
    """A long command holds the channel's queue, not the read-only commands: status and backups
    answer at once while a backup runs; another long command waits for the first."""
    backup_running, release, restore_started = threading.Event(), threading.Event(), threading.Event()

    def handler(request: dict) -> dict:
        cmd = request["cmd"]
        if cmd == "backup":
            backup_running.set()
            assert release.wait(30)
            return {"ok": True, "result": "backed up"}
        if cmd == "restore":
            restore_started.set()
            return {"ok": True, "result": "restored"}
        return {"ok": True, "result": cmd}

    server = _server(tmp_path, handler)
    answers: dict[str, dict] = {}

    def send(cmd: str) -> None:
        answers[cmd] = si.send_command(server.address, server.authkey, {"cmd": cmd}, timeout=30)

    long_ones = [threading.Thread(target=send, args=(cmd,)) for cmd in ("backup", "restore")]
    try:
        long_ones[0].start()
        assert backup_running.wait(10)
        long_ones[1].start()
        for cmd in ("status", "backups", "show"):
            answer = si.send_command(server.address, server.authkey, {"cmd": cmd}, timeout=2)
            assert answer == {"ok": True, "result": cmd}
        assert not restore_started.wait(0.3), "a second long command ran beside the first"
        assert "backup" not in answers
    finally:
        release.set()
        for thread in long_ones:
            thread.join(30)
        server.close()
    assert answers == {"backup": {"ok": True, "result": "backed up"}, "restore": {"ok": True, "result": "restored"}}


def test_wrong_key_is_refused_and_handler_never_sees_it(tmp_path: Path) -> None:
    seen: list[dict] = []
    server = _server(tmp_path, lambda request: seen.append(request) or {"ok": True})
    try:
        with pytest.raises(si.ControlChannelError, match="refused"):
            si.send_command(server.address, b"w" * 32, {"cmd": "show"})
        assert seen == []
        assert si.send_command(server.address, server.authkey, {"cmd": "show"}) == {"ok": True}
        assert seen == [{"cmd": "show"}]
    finally:
        server.close()


def test_client_times_out_on_a_silent_server(tmp_path: Path) -> None:
    from multiprocessing.connection import Listener

    address = str(tmp_path / "silent.sock")
    listener = Listener(address)
    accepted: list[object] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True)
    thread.start()
    started = time.monotonic()
    with pytest.raises(si.ControlChannelError, match="did not answer"):
        si.send_command(address, b"k" * 32, {"cmd": "status"}, timeout=0.5)
    assert time.monotonic() - started < 3
    listener.close()


def test_serve_control_publishes_a_private_control_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    server = si.serve_control(state, lambda request: {"ok": True, "result": "hi"})
    try:
        control = state / "control.json"
        assert stat.S_IMODE(control.stat().st_mode) == 0o600
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        data = json.loads(control.read_text())
        assert data == {"address": str(state / "control.sock"), "authkey": server.authkey.hex(), "pid": os.getpid()}
        assert stat.S_IMODE(Path(data["address"]).stat().st_mode) == 0o600
        client = si.read_control_file(state)
        assert client is not None and client.request({"cmd": "show"}) == {"ok": True, "result": "hi"}
    finally:
        server.close()
    assert not (state / "control.json").exists() and not Path(server.address).exists()


def test_closing_an_old_server_leaves_a_successors_control_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    old = si.ControlServer.for_state_dir(state, lambda request: {"ok": True, "result": "old"}).start()
    new = si.ControlServer.for_state_dir(state, lambda request: {"ok": True, "result": "new"})
    try:
        assert not (state / "control.json").exists(), "for_state_dir drops the previous file before starting"
        old.stop()
        new.start()
        assert si.read_control_file(state).request({"cmd": "x"}) == {"ok": True, "result": "new"}  # type: ignore[union-attr]
        old.stop()  # twice is fine
        assert (state / "control.json").exists()
    finally:
        new.stop()


def test_too_long_state_path_gets_a_private_temp_socket(tmp_path: Path) -> None:
    state = tmp_path / ("d" * 60) / ("e" * 60)
    server = si.serve_control(state, lambda request: {"ok": True})
    try:
        socket_path = Path(server.address)
        assert len(os.fsencode(socket_path)) <= 100
        assert stat.S_IMODE(socket_path.parent.stat().st_mode) == 0o700
        assert si.read_control_file(state).request({"cmd": "x"}) == {"ok": True}  # type: ignore[union-attr]
    finally:
        server.close()
    assert not socket_path.parent.exists(), "the temp folder is removed on close"


def test_primary_secondary_and_stale_control_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert si.connect_to_running(state) is None  # nothing there at all

    primary = si.start_or_connect(state, lambda request: {"ok": True, "result": request["cmd"]})
    assert isinstance(primary, si.PrimaryInstance)
    other = si.start_or_connect(state, lambda request: {"ok": False})
    assert isinstance(other, si.ControlClient)
    assert other.request({"cmd": "show"}) == {"ok": True, "result": "show"}
    assert other.pid == os.getpid()

    # Simulate a crash: the lock goes, the control file stays behind.
    stale = (state / "control.json").read_text()
    primary.server.close()
    primary.lock.release()
    (state / "control.json").write_text(stale)
    assert si.connect_to_running(state, wait=0.2) is None

    again = si.start_or_connect(state, lambda request: {"ok": True, "result": "new"})
    assert isinstance(again, si.PrimaryInstance)
    assert json.loads((state / "control.json").read_text())["authkey"] != json.loads(stale)["authkey"]
    assert si.connect_to_running(state).request({"cmd": "x"}) == {"ok": True, "result": "new"}  # type: ignore[union-attr]
    again.close()
    assert not (state / "control.json").exists()
    assert not si.is_locked(state / "instance.lock")


def test_lock_held_but_no_channel_raises_already_running(tmp_path: Path) -> None:
    state = tmp_path / "state"
    lock = si.InstanceLock(state / "instance.lock")
    assert lock.acquire()
    try:
        started = time.monotonic()
        with pytest.raises(AlreadyRunning) as caught:
            si.connect_to_running(state, wait=0.3)
        assert time.monotonic() - started < 3
        assert f"pid {os.getpid()}" in str(caught.value) and isinstance(caught.value, LindaError)
    finally:
        lock.release()


def test_app_mutex_is_windows_only() -> None:
    if os.name == "nt":
        assert si.create_app_mutex() is True
    else:
        assert si.create_app_mutex() is False
