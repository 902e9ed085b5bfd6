"""TrayController: the menu and windows follow the bridge's signals; clicks become commands.

The bridge runs for real (service thread + asyncio loop) around ThreadingProbeService; events are
emitted from the service's loop exactly as the real service does.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from PySide6.QtGui import QDesktopServices, QGuiApplication

from linda_desktop.base.events import (
    BackupMade,
    LinkStep,
    Notice,
    PairingCode,
    QrCode,
    Restored,
    SessionState,
    StateChanged,
    StateCode,
)
from linda_desktop.system.autostart import XdgAutostart
from linda_desktop.ui import menu_model as mm
from linda_desktop.ui import qr_window as qw
from linda_desktop.ui.bridge import ServiceBridge
from linda_desktop.ui.icons import tray_icon
from linda_desktop.ui.tray import TrayController
from tests.gui.real_service import UrlCatcher, open_menu
from tests.screenshots.preview import sample_payload

pytestmark = pytest.mark.timeout(60)

NOW = datetime.now(timezone.utc).replace(microsecond=0)
BACKUPS = [
    {"id": "b-new", "created_at": (NOW - timedelta(minutes=5)).isoformat(), "known_good": False},
    {"id": "b-good", "created_at": (NOW - timedelta(hours=6)).isoformat(), "known_good": True},
    {"id": "b-old", "created_at": (NOW - timedelta(days=2)).isoformat(), "known_good": False},
]


class Answers:
    """What the owner answers in confirmation boxes (records the questions)."""

    def __init__(self, answer: bool = True) -> None:
        self.answer = answer
        self.asked: list[tuple[str, str, str]] = []

    def __call__(self, title: str, text: str, ok: str) -> bool:
        self.asked.append((title, text, ok))
        return self.answer


@pytest.fixture
def answers():
    return Answers()


@pytest.fixture
def autostart(tmp_path: Path) -> XdgAutostart:
    """The real XDG autostart strategy, writing under tmp_path."""
    return XdgAutostart(["/opt/linda/linda-desktop", "--background"], config_home=tmp_path / "config")


@pytest.fixture
def setup(qtbot, probe_factory, started_bridges, paths, answers, autostart):
    def make(*, tray: bool | None = None, script=(), backups=BACKUPS, diagnostics=None, start=True):
        bridge = ServiceBridge(probe_factory.configure(script=list(script), backups=list(backups)))
        started_bridges.append(bridge)
        controller = TrayController(bridge, paths=paths, autostart=autostart, confirm=answers,
                                    tray_available=tray, diagnostics=diagnostics)
        qtbot.addWidget(controller.qr_window)
        qtbot.addWidget(controller.status_window)
        controller.show()
        if start:
            with qtbot.waitSignal(bridge.started, timeout=5000):
                bridge.start()
            if backups:
                qtbot.waitUntil(lambda: len(controller.view.backups) == len(backups), timeout=3000)
        return controller, bridge, probe_factory.service
    return make




def named(command: str):
    """waitSignal filter: only the answer to ``command`` (list_backups answers arrive too)."""
    return lambda name, _payload: name == command


def emit(qtbot, controller, service, event, signal=None):
    """Emit ``event`` from the service's loop; return once the bridge delivered it. (The
    controller's slots are connected first, so they have run by then.)"""
    bridge = controller.bridge
    signal = {StateChanged: bridge.stateChanged, QrCode: bridge.qrChanged, BackupMade: bridge.backupMade,
              Restored: bridge.restored, Notice: bridge.notice, PairingCode: bridge.pairingCode}[type(event)]
    with qtbot.waitSignal(signal, timeout=3000):
        service.emit_from_loop(event)


def test_menu_follows_the_session_state(qtbot, setup):
    controller, _bridge, service = setup()
    emit(qtbot, controller, service, StateChanged(SessionState.CONNECTED, account="+31 6 1234 5678"))
    actions = open_menu(qtbot, controller)
    assert actions[mm.STATUS].text() == "Connected · +31 6 1234 5678"
    assert actions[mm.BACKUP_NOW].isEnabled() and actions[mm.RESTORE].isEnabled()
    assert actions["restore:b-good"].text().endswith("(last known good)")
    restore_items = next(a for a in controller.menu.actions() if a.objectName() == mm.RESTORE).menu().actions()
    assert [a.objectName() for a in restore_items] == ["restore:b-new", "restore:b-good", "restore:b-old"]
    assert actions[mm.LAST_BACKUP].text().startswith("Last backup: ")

    emit(qtbot, controller, service, StateChanged(SessionState.RESTORING))
    actions = open_menu(qtbot, controller)
    assert actions[mm.STATUS].text().startswith("Restoring your session…")
    assert not actions[mm.BACKUP_NOW].isEnabled() and not actions[mm.RESTORE].isEnabled()
    assert not actions[mm.RELINK].isEnabled()

    emit(qtbot, controller, service, StateChanged(SessionState.OFFLINE))
    actions = open_menu(qtbot, controller)
    assert actions[mm.STATUS].text() == "Offline — waiting for the internet · +31 6 1234 5678"


def test_tray_icon_and_tooltip_per_state(qtbot, setup):
    controller, _bridge, service = setup(tray=True)
    assert controller.tray is not None
    for state, words in [(SessionState.CONNECTED, "Connected"), (SessionState.NEEDS_LINK, "Needs linking"),
                         (SessionState.OFFLINE, "Offline"), (SessionState.ERROR, "Problem")]:
        emit(qtbot, controller, service, StateChanged(state, reason="browser_missing"))
        assert controller.tray.icon().cacheKey() == tray_icon(state).cacheKey()
        assert controller.tray.toolTip().startswith(f"Linda Desktop — {words}")
    assert tray_icon(SessionState.CONNECTED).cacheKey() != tray_icon(SessionState.ERROR).cacheKey()


def test_restore_from_the_menu_asks_then_runs_on_the_service(qtbot, setup, answers):
    controller, bridge, service = setup()
    emit(qtbot, controller, service, StateChanged(SessionState.CONNECTED))
    actions = open_menu(qtbot, controller)
    answers.answer = False
    actions["restore:b-good"].trigger()
    assert answers.asked and answers.asked[-1][2] == "Restore"
    qtbot.wait(100)
    assert not [c for c in service.calls if c[0] == "restore"]
    answers.answer = True
    with qtbot.waitSignal(bridge.commandDone, timeout=3000, check_params_cb=named("restore")):
        open_menu(qtbot, controller)["restore:b-good"].trigger()
    assert ("restore", "b-good") in [(c[0], c[1]) for c in service.calls]


def test_back_up_now_shows_progress_then_says_saved(qtbot, setup):
    controller, bridge, service = setup()
    emit(qtbot, controller, service, StateChanged(SessionState.CONNECTED))
    open_menu(qtbot, controller)[mm.BACKUP_NOW].trigger()
    qtbot.waitUntil(lambda: controller.view.backing_up, timeout=2000)
    actions = open_menu(qtbot, controller)
    assert actions[mm.BACKUP_NOW].text() == "Backing up…" and not actions[mm.BACKUP_NOW].isEnabled()
    with qtbot.waitSignal(bridge.commandDone, timeout=3000, check_params_cb=named("backup")):
        service.gate.set()
    assert not controller.view.backing_up
    assert controller.notifier.sent[-1].title == "Backup saved"
    emit(qtbot, controller, service, BackupMade(id="b-x", size=10, seconds=0.1))
    assert controller.view.last_backup is not None
    assert (datetime.now(timezone.utc) - controller.view.last_backup).total_seconds() < 5


def test_relink_confirms_then_shows_the_qr_window(qtbot, setup, answers):
    controller, bridge, service = setup()
    emit(qtbot, controller, service, StateChanged(SessionState.CONNECTED))
    answers.answer = False
    open_menu(qtbot, controller)[mm.RELINK].trigger()
    assert not controller.qr_window.isVisible()
    answers.answer = True
    with qtbot.waitSignal(bridge.commandDone, timeout=3000, check_params_cb=named("relink")):
        open_menu(qtbot, controller)[mm.RELINK].trigger()
    assert [c[0] for c in service.calls].count("relink") == 1
    assert controller.qr_window.isVisible() and controller.qr_window.mode == qw.LOADING
    assert controller.qr_window.loading_label.text() == "Preparing a new code…"
    emit(qtbot, controller, service, QrCode(sample_payload(3)), controller.bridge.qrChanged)
    assert controller.qr_window.mode == qw.QR and controller.qr_window.payload == sample_payload(3)


def test_linking_flow_opens_the_window_and_closes_it_when_connected(qtbot, setup):
    controller, bridge, service = setup()
    emit(qtbot, controller, service, StateChanged(SessionState.NEEDS_LINK))
    assert controller.qr_window.isVisible()  # linking needed: shown even in background mode
    emit(qtbot, controller, service, QrCode(sample_payload(4)), bridge.qrChanged)
    assert controller.qr_window.mode == qw.QR
    emit(qtbot, controller, service, QrCode(sample_payload(4), idle=True), bridge.qrChanged)
    assert controller.qr_window.mode == qw.EXPIRED
    with qtbot.waitSignal(bridge.commandDone, timeout=3000, check_params_cb=named("new_qr")):
        controller.qr_window.new_code_button.click()
    assert "show_new_qr" in [c[0] for c in service.calls]
    emit(qtbot, controller, service, StateChanged(SessionState.NEEDS_LINK, code=StateCode.PASSKEY, step="passkey",
                                                  details={"stage": "prompt"}))
    assert controller.qr_window.mode == qw.PASSKEY and controller.qr_window.stage == LinkStep.PROMPT
    assert controller.view.code == StateCode.PASSKEY and controller.view.stage == LinkStep.PROMPT
    assert open_menu(qtbot, controller)[mm.STATUS].text() == "Almost linked — press Continue in the WhatsApp window"
    with qtbot.waitSignal(bridge.commandFailed, timeout=3000, check_params_cb=named("finish_link")):
        controller.qr_window.show_browser_button.click()
    assert controller.qr_window.show_browser_button.isEnabled()  # re-armed after the failure
    assert controller.notifier.sent[-1].title == "Could not show the WhatsApp window"
    emit(qtbot, controller, service, StateChanged(SessionState.CONNECTED, account="+31 6 1234 5678"))
    assert not controller.qr_window.isVisible()
    assert "Linked — WhatsApp is connected" in [m.title for m in controller.notifier.sent]


def test_notifications_for_owner_facing_problems_are_not_repeated(qtbot, setup):
    controller, bridge, service = setup()
    emit(qtbot, controller, service, StateChanged(SessionState.CONNECTED))
    for _ in range(3):
        with qtbot.waitSignal(bridge.notice, timeout=3000):
            service.emit_from_loop(Notice("backup_failed", "Backup failed: disk full"))
    with qtbot.waitSignal(bridge.notice, timeout=3000):
        service.emit_from_loop(Notice("keyring_unavailable", "Backups are off: no keyring"))
    with qtbot.waitSignal(bridge.notice, timeout=3000):
        service.emit_from_loop(Notice("browser_missing", "No Chromium-family browser found"))
    emit(qtbot, controller, service, StateChanged(SessionState.ERROR, reason="No Chromium-family browser found"))
    emit(qtbot, controller, service, Restored(from_id="b-good", seconds=1.2), bridge.restored)
    emit(qtbot, controller, service, StateChanged(SessionState.LOGGED_OUT, reason="removed from phone"))
    titles = [m.title for m in controller.notifier.sent]
    assert titles.count("Backup failed") == 1
    assert "Backups cannot be encrypted" in titles
    assert titles.count("No browser found") == 1 and "Linda Desktop has a problem" not in titles
    assert "Session restored" in titles and "Logged out by your phone" in titles
    # No tray here (offscreen): the messages went to the status window's banner.
    assert controller.status_window.banner.isVisible()
    assert "Logged out by your phone" in controller.status_window.banner.text()


def test_no_tray_shows_the_status_window_with_the_same_actions(qtbot, setup):
    controller, bridge, service = setup(tray=False)
    assert not controller.has_tray
    assert controller.status_window.isVisible() and controller.status_window.minimize_on_close
    emit(qtbot, controller, service, StateChanged(SessionState.CONNECTED, account="+31 6 1234 5678"))
    window = controller.status_window
    assert window.state_label.text() == "Connected · +31 6 1234 5678"
    menu_ids = {i.id for i in controller.items() if not i.separator and i.id not in (mm.STATUS, mm.LAST_BACKUP)}
    assert set(window._widgets) == menu_ids
    restore_menu = window.widget(mm.RESTORE).menu()
    assert [a.objectName() for a in restore_menu.actions()] == ["restore:b-new", "restore:b-good", "restore:b-old"]
    window.widget(mm.BACKUP_NOW).click()
    qtbot.waitUntil(lambda: "backup_now" in [c[0] for c in service.calls], timeout=3000)
    service.gate.set()
    window.close()  # no tray to come back from: minimise, keep running
    assert bridge.running


def test_start_at_login_toggles_the_real_autostart_entry(qtbot, setup, autostart):
    controller, _bridge, _service = setup()
    assert not autostart.path.exists()
    open_menu(qtbot, controller)[mm.AUTOSTART].trigger()
    assert autostart.path.exists() and autostart.is_enabled()
    assert open_menu(qtbot, controller)[mm.AUTOSTART].isChecked()
    open_menu(qtbot, controller)[mm.AUTOSTART].trigger()
    assert not autostart.path.exists()
    assert not open_menu(qtbot, controller)[mm.AUTOSTART].isChecked()


def test_autostart_missing_disables_the_item(qtbot, probe_factory, paths, answers):
    bridge = ServiceBridge(probe_factory)
    controller = TrayController(bridge, paths=paths, autostart=None, confirm=answers)
    qtbot.addWidget(controller.status_window)
    actions = open_menu(qtbot, controller)
    assert not actions[mm.AUTOSTART].isEnabled() and not actions[mm.AUTOSTART].isChecked()




def test_open_data_folder(qtbot, setup, paths):
    controller, _bridge, _service = setup(start=False, backups=())
    catcher = UrlCatcher()
    QDesktopServices.setUrlHandler("file", catcher, "open")
    try:
        open_menu(qtbot, controller)[mm.OPEN_DATA].trigger()
    finally:
        QDesktopServices.unsetUrlHandler("file")
    assert [u.toLocalFile() for u in catcher.urls] == [str(paths.data)]
    assert paths.data.is_dir()


def test_diagnostics_shows_the_report_and_copies_it(qtbot, setup, paths):
    report = lambda: "[OK  ] browser: /usr/bin/chromium\n[FAIL] keyring: locked"  # noqa: E731
    controller, _bridge, service = setup(diagnostics=report)
    emit(qtbot, controller, service, StateChanged(SessionState.CONNECTED))
    dialog = controller.show_diagnostics()
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.copy_button.isEnabled(), timeout=5000)
    text = dialog.report_text
    assert "state: Connected" in text and "[FAIL] keyring: locked" in text
    assert str(paths.log_file) in text and str(paths.log_file) in dialog.log_label.text()
    dialog.copy_button.click()
    assert QGuiApplication.clipboard().text() == text


def test_click_on_the_icon_opens_the_right_window(qtbot, setup):
    controller, _bridge, service = setup()
    emit(qtbot, controller, service, StateChanged(SessionState.CONNECTED))
    controller.open_window()
    assert controller.status_window.isVisible() and not controller.qr_window.isVisible()
    controller.status_window.hide()
    emit(qtbot, controller, service, StateChanged(SessionState.NEEDS_LINK))
    controller.qr_window.hide()
    controller.open_window()
    assert controller.qr_window.isVisible()


def test_quit_stops_the_service_cleanly(qtbot, setup):
    controller, bridge, service = setup()
    emit(qtbot, controller, service, StateChanged(SessionState.CONNECTED))
    with qtbot.waitSignal(controller.quitRequested, timeout=10000):
        open_menu(qtbot, controller)[mm.QUIT].trigger()
    assert service.stopped_cleanly and not bridge.running
    assert controller.view.quitting
    open_menu(qtbot, controller)  # still renders; every action but status is inert now
    controller.trigger(mm.BACKUP_NOW)
    assert "backup_now" not in [c[0] for c in service.calls]


def test_the_payload_never_reaches_the_log(qtbot, setup, caplog):
    caplog.set_level(logging.DEBUG)
    controller, bridge, service = setup()
    payload = sample_payload(9)
    emit(qtbot, controller, service, StateChanged(SessionState.NEEDS_LINK))
    emit(qtbot, controller, service, QrCode(payload), bridge.qrChanged)
    emit(qtbot, controller, service, QrCode(payload, idle=True), bridge.qrChanged)
    assert controller.qr_window.payload == payload
    assert payload not in caplog.text


def test_link_with_phone_number_asks_the_service_and_shows_its_code(qtbot, setup):
    controller, bridge, service = setup()
    emit(qtbot, controller, service, StateChanged(SessionState.NEEDS_LINK, code=StateCode.FIRST_LINK))
    emit(qtbot, controller, service, QrCode(sample_payload(4)))
    window = controller.qr_window
    window.switch_button.click()
    assert window.mode == qw.PHONE
    window.phone_edit.setText("+31 6 1234 5678")
    with qtbot.waitSignal(bridge.pairingCode, timeout=3000):
        window.get_code_button.click()
    assert ("pairing_code", "31612345678") in [(c[0], c[1]) for c in service.calls]
    assert window.mode == qw.PAIRING and window.pairing_code_label.text() == "K7QM-2XWP"
    emit(qtbot, controller, service, QrCode(sample_payload(5)))  # a rotation behind it changes nothing
    assert window.mode == qw.PAIRING


def test_a_number_the_service_refuses_is_said_next_to_the_field(qtbot, setup):
    controller, bridge, service = setup()
    emit(qtbot, controller, service, StateChanged(SessionState.NEEDS_LINK, code=StateCode.FIRST_LINK))
    window = controller.qr_window
    window.switch_button.click()
    window.phone_edit.setText("999 1234 5678")
    with qtbot.waitSignal(bridge.commandFailed, timeout=3000, check_params_cb=named("pairing_code")):
        window.get_code_button.click()
    assert window.mode == qw.PHONE and window.phone_error.isVisible()
    assert window.phone_error.text() == "WhatsApp refused this number — check the country code"
    assert "Could not get a pairing code" not in [m.title for m in controller.notifier.sent]  # said once, there
