"""The tray UI driven by the REAL SessionService (no stand-in): ServiceBridge + TrayController
around ``linda_desktop.app.build_service`` with Debian's Chromium and the WhatsApp Web simulator.

One owner's afternoon, in order: the QR window shows the code the page shows; the phone scans
it and the window closes by itself; Back up now, Restore ▸ <that backup>, Re-link and Quit from
the menu the tray built, each checked against the files and processes the service leaves behind.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from linda_desktop.base.events import SessionState, StateCode
from linda_desktop.base.paths import AppPaths
from linda_desktop.session.backup import list_backups
from linda_desktop.session.profile import find_browser_processes
from linda_desktop.session.state import SessionStateStore
from linda_desktop.ui import menu_model as mm
from linda_desktop.ui import qr_window as qw
from linda_desktop.ui.bridge import ServiceBridge
from linda_desktop.ui.icons import tray_icon
from linda_desktop.ui.tray import TrayController
from tests.e2e.harness import write_settings
from tests.gui.real_service import RealServiceFactory, Recorder, open_menu, read_qr_modules, segno_modules
from tests.integration.conftest import kill_browsers_under
from tests.sim_fixtures import ACCOUNT, steady_sim  # noqa: F401  (the `sim` fixture)
from tests.whatsapp_sim.control import Simulator

pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]

SECOND = 1000  # qtbot timeouts are in ms


class Answers:
    """The owner's answer to every confirmation box (the questions are recorded)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, str]] = []

    def __call__(self, title: str, text: str, ok: str) -> bool:
        self.asked.append((title, text, ok))
        return True




@pytest.fixture
def tray(qtbot, paths: AppPaths, sim: Simulator, tmp_path: Path):
    write_settings(paths.data, flush_delay_seconds=1)  # first backup 1 s after linking
    factory = RealServiceFactory(paths, sim.url)
    bridge = ServiceBridge(factory)
    answers = Answers()
    controller = TrayController(bridge, paths=paths, autostart=None, confirm=answers, tray_available=True)
    qtbot.addWidget(controller.qr_window)
    qtbot.addWidget(controller.status_window)
    controller.show()
    try:
        yield controller, bridge, factory, answers
    finally:
        if bridge.running:
            bridge.shutdown(timeout=60)
        kill_browsers_under(tmp_path)




def named(command: str):
    return lambda name, _result: name == command


def assert_code_on_screen_is(window: qw.QrWindow, payload: str) -> None:
    assert read_qr_modules(window.qr_view.grab().toImage()) == segno_modules(payload)


def wait_for_code(qtbot, controller: TrayController, sim: Simulator, qr: Recorder, seen: int) -> str:
    """The QR window is up with a code the bridge delivered after ``seen`` codes; that code is
    the one the simulator's page shows and the one painted on screen."""
    window = controller.qr_window
    qtbot.waitUntil(lambda: len(qr) > seen and window.isVisible() and window.mode == qw.QR,
                    timeout=40 * SECOND)
    payload, idle = qr.items[-1]
    assert not idle and window.payload == payload
    # The page tells the simulator which code it shows on its next poll (150 ms).
    qtbot.waitUntil(lambda: sim.current_qr() == payload, timeout=3 * SECOND)
    assert_code_on_screen_is(window, payload)
    return payload


def wait_connected(qtbot, controller: TrayController) -> None:
    qtbot.waitUntil(lambda: controller.view.state == SessionState.CONNECTED, timeout=40 * SECOND)
    qtbot.waitUntil(lambda: not controller.qr_window.isVisible(), timeout=5 * SECOND)
    # "Connected — loading your chats…" (StateCode.SYNCING) until the first history sync is done.
    qtbot.waitUntil(lambda: controller.view.code != StateCode.SYNCING, timeout=40 * SECOND)
    assert controller.tray is not None
    assert controller.tray.icon().cacheKey() == tray_icon(SessionState.CONNECTED).cacheKey()
    assert controller.tray.toolTip().startswith(f"Linda Desktop — Connected · {ACCOUNT}")
    assert open_menu(qtbot, controller)[mm.STATUS].text() == f"Connected · {ACCOUNT}"


def test_link_back_up_restore_relink_and_quit_with_the_real_service(qtbot, tray, sim, paths, caplog):
    caplog.set_level(logging.INFO)
    controller, bridge, _factory, answers = tray
    qr, states, backups, restored, done, failed = (Recorder() for _ in range(6))
    bridge.qrChanged.connect(qr.add)
    bridge.stateChanged.connect(lambda e: states.add(e.state))
    bridge.backupMade.connect(backups.add)
    bridge.restored.connect(restored.add)
    bridge.commandDone.connect(done.add)
    bridge.commandFailed.connect(failed.add)

    # 1. Nothing linked yet: the QR window opens by itself with the page's code.
    with qtbot.waitSignal(bridge.started, timeout=10 * SECOND):
        bridge.start()
    first_code = wait_for_code(qtbot, controller, sim, qr, 0)
    assert controller.view.state == SessionState.NEEDS_LINK
    assert controller.tray.toolTip().startswith("Linda Desktop — Needs linking")
    assert open_menu(qtbot, controller)[mm.STATUS].text() == "Needs linking — scan the QR code"
    assert first_code not in caplog.text  # the live credential never reaches the log

    # 2. The phone scans it: the window closes by itself, the tray says connected.
    device = sim.link()
    wait_connected(qtbot, controller)
    assert [d["device_id"] for d in sim.devices()["devices"]] == [device]
    qtbot.waitUntil(lambda: any(b["reason"] == "link" for b in backups.items), timeout=30 * SECOND)

    # 3. Back up now (the QAction the menu model built) → a real encrypted file, listed in Restore ▸.
    actions = open_menu(qtbot, controller)
    assert actions[mm.BACKUP_NOW].isEnabled()
    with qtbot.waitSignal(bridge.commandDone, timeout=30 * SECOND, check_params_cb=named("backup")) as got:
        actions[mm.BACKUP_NOW].trigger()
    backup_id = got.args[1]["id"]
    made = {b.id: b for b in list_backups(paths.backups)}[backup_id]
    assert made.path.is_file() and made.size > 1000  # its manifest and the chunks it needs
    assert {b.id: b.reason for b in list_backups(paths.backups)}[backup_id] == "manual"
    qtbot.waitUntil(lambda: backup_id in [b.id for b in controller.view.backups], timeout=10 * SECOND)
    actions = open_menu(qtbot, controller)
    assert mm.RESTORE_PREFIX + backup_id in actions
    assert actions[mm.LAST_BACKUP].text().startswith("Last backup: ")

    # 4. Restore ▸ that backup, confirmed: the service swaps the profile and reconnects.
    links_before = sim.devices()["links"]
    states_before = len(states)
    actions[mm.RESTORE_PREFIX + backup_id].trigger()
    assert answers.asked[-1][0] == "Restore from backup" and answers.asked[-1][2] == "Restore"
    qtbot.waitUntil(lambda: any(name == "restore" for name, _ in done.items + failed.items),
                    timeout=60 * SECOND)
    assert not failed.items, failed.items
    assert [r for name, r in done.items if name == "restore"] == [
        {"restored": backup_id, "state": "connected", "skipped": []}]  # a chosen backup: nothing skipped
    assert [r["from_id"] for r in restored.items] == [backup_id]
    assert states.items[states_before:][0] == SessionState.RESTORING
    assert states.items[-1] == SessionState.CONNECTED
    assert f"restored backup {backup_id}" in caplog.text
    assert sim.devices()["links"] == links_before  # the same linked device came back, no new link
    wait_connected(qtbot, controller)

    # 5. Re-link… (confirmed): the old session is set aside and the QR window is back.
    open_menu(qtbot, controller)[mm.RELINK].trigger()
    assert answers.asked[-1][0] == "Re-link device"
    assert controller.qr_window.isVisible()  # at once, with "Preparing a new code…"
    second_code = wait_for_code(qtbot, controller, sim, qr, len(qr))
    assert second_code != first_code
    assert controller.view.state == SessionState.NEEDS_LINK
    assert any(paths.quarantine.iterdir())  # the previous session was archived, not deleted

    # 6. Link again, then Quit from the menu: the service backs up ("exit") and closes Chromium.
    sim.link()
    wait_connected(qtbot, controller)
    profile_browsers = find_browser_processes(paths.profile)
    assert profile_browsers  # the session's Chromium is running now
    with qtbot.waitSignal(controller.quitRequested, timeout=90 * SECOND):
        open_menu(qtbot, controller)[mm.QUIT].trigger()
    assert not bridge.running and bridge.failure is None
    assert not failed.items, failed.items
    exits = [b for b in list_backups(paths.backups) if b.reason == "exit"]
    assert len(exits) == 1 and exits[0].size > 1000
    assert find_browser_processes(paths.profile) == []
    assert SessionStateStore(paths.state_file).load()["history"][-1]["event"] == "stopped"
    assert "stopped cleanly" in caplog.text


def test_link_with_phone_number_instead_through_the_real_service(qtbot, tray, sim, paths):
    """"Link with phone number instead": the number goes bridge → SessionService.request_pairing_code
    → the page; the code the page shows is the one painted large; the phone types it: connected.
    A number the page refuses is said next to the field first."""
    controller, bridge, _factory, _answers = tray
    qr = Recorder()
    bridge.qrChanged.connect(qr.add)
    bridge.start()
    wait_for_code(qtbot, controller, sim, qr, 0)
    window = controller.qr_window
    window.switch_button.click()
    assert window.mode == qw.PHONE

    window.phone_edit.setText("+49 151 2345 6789")  # a real-looking number, not this account's
    with qtbot.waitSignal(bridge.commandFailed, timeout=30 * SECOND, check_params_cb=named("pairing_code")):
        window.get_code_button.click()
    assert window.mode == qw.PHONE and window.phone_error.isVisible()
    assert window.phone_error.text()

    window.phone_edit.setText(f"+{ACCOUNT[:2]} {ACCOUNT[2:3]} {ACCOUNT[3:7]} {ACCOUNT[7:]}")
    with qtbot.waitSignal(bridge.pairingCode, timeout=30 * SECOND):
        window.get_code_button.click()
    qtbot.waitUntil(lambda: window.mode == qw.PAIRING, timeout=5 * SECOND)
    shown = sim.pairing_code(timeout=5)
    plain = shown.replace("-", "")
    assert len(plain) == 8 and window.pairing_code == f"{plain[:4]}-{plain[4:]}"  # large, in two groups
    assert window.pairing_code_label.text() == window.pairing_code
    assert window.pairing_for.text() == f"for +{ACCOUNT}"
    sim.enter_pairing_code(window.pairing_code)  # the phone: Link with phone number instead
    wait_connected(qtbot, controller)
    assert sim.devices()["devices"][0]["account"] == ACCOUNT


@pytest.fixture
def passkey_sim(tmp_path: Path):
    """Every scan needs the passkey step; a stage times out after 6 s."""
    simulator = Simulator(None, tmp_path / "passkey-sim", loading_seconds=0.3, first_qr_seconds=60, qr_interval=30,
                          passkey=True, passkey_stage_seconds=6, account=ACCOUNT)
    simulator.start()
    try:
        yield simulator
    finally:
        simulator.stop()


def test_a_passkey_step_without_a_display_names_the_ways_out_then_asks_for_a_new_scan(qtbot, paths, passkey_sim,
                                                                                       tmp_path, monkeypatch):
    """No display for the browser (the tests' offscreen Qt): the window says why the link cannot
    finish here and what to do instead; when WhatsApp's stage times out, it shows "Scan a new
    code" with the page's fresh QR, never a silent wait."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    sim = passkey_sim
    write_settings(paths.data, flush_delay_seconds=1)
    bridge = ServiceBridge(RealServiceFactory(paths, sim.url))
    controller = TrayController(bridge, paths=paths, autostart=None, confirm=Answers(), tray_available=True)
    qtbot.addWidget(controller.qr_window)
    qtbot.addWidget(controller.status_window)
    controller.show()
    qr = Recorder()
    bridge.qrChanged.connect(qr.add)
    try:
        bridge.start()
        first = wait_for_code(qtbot, controller, sim, qr, 0)
        window = controller.qr_window
        sim.link()
        qtbot.waitUntil(lambda: window.mode == qw.NEEDS_DISPLAY, timeout=20 * SECOND)
        assert controller.view.code == StateCode.PASSKEY_NEEDS_DISPLAY
        assert "linda-desktop import" in window.passkey_text.text()
        assert window.passkey_phone_button.isVisible()
        assert not window.qr_view.has_code()  # the scanned code is no use any more
        assert open_menu(qtbot, controller)[mm.SHOW_WINDOW].text() == "How to finish linking…"
        qtbot.waitUntil(lambda: controller.view.code == StateCode.LINK_EXPIRED, timeout=30 * SECOND)
        qtbot.waitUntil(lambda: window.mode == qw.QR, timeout=20 * SECOND)
        assert window.title.text() == "Scan a new code"
        fresh = window.payload
        assert fresh and fresh != first
        qtbot.waitUntil(lambda: sim.current_qr() == fresh, timeout=3 * SECOND)
        assert_code_on_screen_is(window, fresh)
        assert "Scan a new code" in [m.title for m in controller.notifier.sent]
    finally:
        if bridge.running:
            bridge.shutdown(timeout=60)
        kill_browsers_under(tmp_path)
