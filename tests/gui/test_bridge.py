"""ServiceBridge: the service runs on its own asyncio thread; the GUI thread only gets signals."""

from __future__ import annotations

import threading
import time

import pytest
from PySide6.QtCore import QTimer

from linda_desktop.base.events import (
    BackupMade,
    Command,
    Notice,
    NoticeKind,
    PairingCode,
    QrCode,
    Restored,
    SessionState,
    StateChanged,
)
from linda_desktop.ui import bridge as cmd
from linda_desktop.ui.bridge import ServiceBridge

pytestmark = pytest.mark.timeout(60)


def make_bridge(qtbot, probe_factory, started_bridges, **service_kwargs) -> ServiceBridge:
    bridge = ServiceBridge(probe_factory.configure(**service_kwargs))
    started_bridges.append(bridge)
    with qtbot.waitSignal(bridge.started, timeout=5000):
        bridge.start()
    return bridge


def test_events_arrive_on_the_gui_thread_as_signals(qtbot, probe_factory, started_bridges):
    received: list[tuple[str, object, str]] = []
    bridge = ServiceBridge(probe_factory.configure(script=[
        StateChanged(SessionState.STARTING),
        StateChanged(SessionState.NEEDS_LINK),
        QrCode("2@payload-one"),
        QrCode("2@payload-one", idle=True),
        StateChanged(SessionState.CONNECTED, account="+31 6 1234 5678"),
        BackupMade(id="b1", size=1234, seconds=0.5, reason="after_link"),
        Restored(from_id="b0", seconds=1.5, reason="profile_invalid"),
        Notice(NoticeKind.BACKUP_FAILED, "Backup failed: disk full"),
        PairingCode("K7QM-2XWP", phone="31612345678"),
    ]))
    started_bridges.append(bridge)
    here = lambda: threading.current_thread().name  # noqa: E731
    bridge.stateChanged.connect(lambda e: received.append(("state", e, here())))
    bridge.qrChanged.connect(lambda data, idle: received.append(("qr", (data, idle), here())))
    bridge.backupMade.connect(lambda info: received.append(("backup", info, here())))
    bridge.restored.connect(lambda info: received.append(("restored", info, here())))
    bridge.notice.connect(lambda kind, msg: received.append(("notice", (kind, msg), here())))
    bridge.pairingCode.connect(lambda code: received.append(("pairing_code", code, here())))
    bridge.start()
    qtbot.waitUntil(lambda: len(received) == 9, timeout=5000)

    assert {thread for _, _, thread in received} == {threading.main_thread().name}
    assert probe_factory.service.run_thread == "linda-service"
    kinds = [kind for kind, _, _ in received]
    assert kinds == ["state", "state", "qr", "qr", "state", "backup", "restored", "notice", "pairing_code"]
    assert received[1][1] == StateChanged(SessionState.NEEDS_LINK)
    assert received[2][1] == ("2@payload-one", False) and received[3][1] == ("2@payload-one", True)
    assert received[4][1].account == "+31 6 1234 5678"
    backup = received[5][1]
    assert backup["id"] == "b1" and backup["size"] == 1234 and backup["reason"] == "after_link"
    assert backup["created_at"].tzinfo is not None
    assert received[6][1]["from_id"] == "b0"
    assert received[7][1] == ("backup_failed", "Backup failed: disk full")
    assert type(received[7][1][0]) is str  # the kind crosses as the plain word
    assert received[8][1] == "K7QM-2XWP"


def test_events_emitted_later_from_the_service_loop(qtbot, probe_factory, started_bridges):
    bridge = make_bridge(qtbot, probe_factory, started_bridges)
    with qtbot.waitSignal(bridge.qrChanged, timeout=3000) as blocker:
        probe_factory.service.emit_from_loop(QrCode("2@rotated"))
    assert blocker.args == ["2@rotated", False]


def test_commands_run_on_the_service_loop_and_report_back(qtbot, probe_factory, started_bridges):
    bridge = make_bridge(qtbot, probe_factory, started_bridges)
    with qtbot.waitSignal(bridge.commandDone, timeout=3000) as done:
        bridge.restore("b-good")
    assert done.args == [Command.RESTORE, {"id": "b-good"}]
    with qtbot.waitSignal(bridge.commandDone, timeout=3000) as done:
        bridge.relink()
    assert done.args == [Command.RELINK, None]
    with qtbot.waitSignal(bridge.commandDone, timeout=3000):
        bridge.show_new_qr()
    assert [(name, arg) for name, arg, _ in probe_factory.service.calls] == [
        ("restore", "b-good"), ("relink", None), ("show_new_qr", None)]
    with qtbot.waitSignal(bridge.pairingCode, timeout=3000) as code:
        bridge.request_pairing_code("31612345678")
    assert code.args == ["K7QM-2XWP"]
    assert probe_factory.service.calls[-1][:2] == ("pairing_code", "31612345678")
    assert {thread for _, _, thread in probe_factory.service.calls} == {"linda-service"}


def test_a_failing_command_becomes_command_failed_with_the_owner_message(qtbot, probe_factory, started_bridges):
    bridge = make_bridge(qtbot, probe_factory, started_bridges)
    with qtbot.waitSignal(bridge.commandFailed, timeout=3000) as failed:
        bridge.restore("missing")
    assert failed.args == [Command.RESTORE, "No backup called missing — pick one from the list"]
    with qtbot.waitSignal(bridge.commandFailed, timeout=3000) as failed:
        bridge.finish_link()
    assert failed.args == [Command.FINISH_LINK, "the WhatsApp window is gone"]
    with qtbot.waitSignal(bridge.commandFailed, timeout=3000) as failed:
        bridge.request_pairing_code("99912345678")
    assert failed.args == ["pairing_code", "WhatsApp refused this number — check the country code"]


def test_a_long_command_never_blocks_the_gui_and_marks_busy(qtbot, probe_factory, started_bridges):
    bridge = make_bridge(qtbot, probe_factory, started_bridges)
    started = time.monotonic()
    bridge.backup_now()  # the service waits on its gate: the call must return at once
    assert time.monotonic() - started < 0.2
    assert bridge.busy(Command.BACKUP)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    qtbot.wait(200)
    assert len(ticks) >= 5  # the GUI loop kept running while the backup was in flight
    with qtbot.waitSignal(bridge.commandDone, timeout=3000) as done:
        probe_factory.service.gate.set()
    timer.stop()
    assert done.args == [Command.BACKUP, {"id": "b-new", "size": 10}]
    assert not bridge.busy(Command.BACKUP)


def test_list_backups_answers_with_the_service_list(qtbot, probe_factory, started_bridges):
    rows = [{"id": "b1", "created_at": "2026-03-12T09:00:00+00:00", "known_good": True}]
    bridge = make_bridge(qtbot, probe_factory, started_bridges, backups=rows)
    with qtbot.waitSignal(bridge.commandDone, timeout=3000) as done:
        bridge.list_backups()
    assert done.args == [cmd.LIST_BACKUPS, rows]


def test_commands_before_start_fail_without_blocking(qtbot, probe_factory):
    bridge = ServiceBridge(probe_factory)
    with qtbot.waitSignal(bridge.commandFailed, timeout=1000) as failed:
        bridge.backup_now()
    assert failed.args[0] == Command.BACKUP and "not running" in failed.args[1]


def test_shutdown_waits_for_a_clean_stop_while_the_gui_keeps_running(qtbot, probe_factory, started_bridges):
    bridge = make_bridge(qtbot, probe_factory, started_bridges, stop_delay=0.6)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(20)
    finished = []
    bridge.finished.connect(lambda: finished.append(1))
    started = time.monotonic()
    assert bridge.shutdown(timeout=10) is True
    elapsed = time.monotonic() - started
    timer.stop()
    assert probe_factory.service.stopped_cleanly  # run() finished its own cleanup (backup)
    assert not bridge.running
    assert 0.5 < elapsed < 5
    assert len(ticks) >= 10  # timers fired during the wait: the UI did not freeze
    qtbot.wait(50)
    assert finished == [1]  # exactly once, even though the thread also reported its end
    with qtbot.waitSignal(bridge.commandFailed, timeout=1000):
        bridge.relink()  # after shutdown, commands fail fast


def test_shutdown_gives_up_after_the_timeout(qtbot, probe_factory, started_bridges):
    bridge = make_bridge(qtbot, probe_factory, started_bridges, stop_delay=1.2)
    with qtbot.waitSignal(bridge.finished, timeout=2000):
        assert bridge.shutdown(timeout=0.3) is False
    qtbot.waitUntil(lambda: not bridge.running, timeout=6000)


def test_a_crashing_service_reports_why_and_finishes(qtbot, probe_factory, started_bridges):
    bridge = ServiceBridge(probe_factory.configure(fail_run=RuntimeError("profile folder is read-only")))
    started_bridges.append(bridge)
    notices = []
    bridge.notice.connect(lambda kind, msg: notices.append((kind, msg)))
    with qtbot.waitSignal(bridge.finished, timeout=5000):
        bridge.start()
    assert notices == [("service_failed", "profile folder is read-only")]
    assert bridge.failure == "profile folder is read-only"


def test_a_failing_factory_is_reported_too(qtbot):
    def factory(on_event):
        raise OSError("cannot create the data folder")

    bridge = ServiceBridge(factory)
    with qtbot.waitSignal(bridge.finished, timeout=5000):
        bridge.start()
    assert bridge.failure == "cannot create the data folder"


def test_call_in_service_thread_is_for_workers_only(qtbot, probe_factory, started_bridges):
    bridge = make_bridge(qtbot, probe_factory, started_bridges)
    with pytest.raises(RuntimeError):
        bridge.call_in_service_thread(lambda: 1)  # the GUI thread must never wait
    result = {}
    worker = threading.Thread(target=lambda: result.update(
        value=bridge.call_in_service_thread(probe_factory.service.status)))
    worker.start()
    worker.join(5)
    assert result["value"] == {"state": "connected"}
    assert probe_factory.service.calls[-1][2] == "linda-service"
