"""TrayApp / run_tray: the whole UI composed, run with a real event loop until Quit."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QTimer

from linda_desktop.base.events import QrCode, SessionState, StateChanged
from linda_desktop.ui.main import TrayApp, run_tray
from tests.screenshots.preview import sample_payload

pytestmark = pytest.mark.timeout(60)


def run_with(qapp, app: TrayApp, steps: list[tuple[int, callable]], budget_ms: int = 15000) -> int:
    """exec() the app; ``steps`` run at their times (ms); a safety timer quits after budget.
    Timers are stopped afterwards: a late exit() would end the next test's event loops."""
    timers = []
    for at, step in [*steps, (budget_ms, lambda: qapp.exit(99))]:
        timer = QTimer()
        timer.setSingleShot(True)
        timer.timeout.connect(step)
        timer.start(at)
        timers.append(timer)
    try:
        return app.exec()
    finally:
        for timer in timers:
            timer.stop()


def test_background_start_shows_nothing_until_linking_is_needed_then_quits_cleanly(qapp, probe_factory, paths):
    probe_factory.configure(script=[StateChanged(SessionState.STARTING)])
    app = TrayApp(probe_factory, paths=paths, background=True, autostart=None, confirm=lambda *_: True)
    seen = {}

    def check_quiet():
        seen["windows_at_start"] = (app.qr_window.isVisible(), app.status_window.isVisible()
                                    and app.controller.has_tray)
        probe_factory.service.emit_from_loop(StateChanged(SessionState.NEEDS_LINK))
        probe_factory.service.emit_from_loop(QrCode(sample_payload(5)))

    def check_link():
        seen["qr_shown"] = app.qr_window.isVisible() and app.qr_window.payload == sample_payload(5)
        app.controller.trigger("quit")

    code = run_with(qapp, app, [(300, check_quiet), (800, check_link)])
    assert code == 0
    assert seen == {"windows_at_start": (False, False), "qr_shown": True}
    assert probe_factory.service.stopped_cleanly
    assert not app.bridge.running


def test_request_show_is_safe_from_another_thread(qapp, probe_factory, paths):
    probe_factory.configure(script=[StateChanged(SessionState.CONNECTED)])
    app = TrayApp(probe_factory, paths=paths, background=True, autostart=None)
    seen = {}

    def ask_from_thread():
        threading.Thread(target=app.request_show, name="second-instance").start()

    def check():
        seen["status_window"] = app.status_window.isVisible()
        app.controller.trigger("quit")

    assert run_with(qapp, app, [(300, ask_from_thread), (700, check)]) == 0
    assert seen["status_window"] is True


def test_run_tray_hands_the_service_and_a_show_callback_to_the_caller(qapp, probe_factory, paths):
    probe_factory.configure(script=[StateChanged(SessionState.CONNECTED)])
    got = {}

    def status_window_visible() -> bool:
        return any(w.objectName() == "statusWindow" and w.isVisible() for w in qapp.topLevelWidgets())

    def on_ready(service, show):
        got["service"] = service
        got["thread"] = threading.current_thread().name
        for widget in qapp.topLevelWidgets():  # offscreen has no tray, so it starts shown
            widget.hide()
        got["visible_before"] = status_window_visible()
        QTimer.singleShot(200, lambda: threading.Thread(target=show).start())  # a second launch
        QTimer.singleShot(600, lambda: got.update(visible_after=status_window_visible()))
        QTimer.singleShot(700, lambda: qapp.exit(0))  # e.g. the desktop session ends

    safety = QTimer()
    safety.setSingleShot(True)
    safety.timeout.connect(lambda: qapp.exit(99))
    safety.start(15000)
    try:
        code = run_tray(probe_factory, paths=paths, background=True, on_service_ready=on_ready,
                        wa_url="http://127.0.0.1:1/", browser=None)
    finally:
        safety.stop()
    assert code == 0
    assert got["service"] is probe_factory.service
    assert got["thread"] == threading.main_thread().name
    assert got["visible_before"] is False and got["visible_after"] is True
    # aboutToQuit still stopped the service cleanly although the loop was simply exited.
    assert probe_factory.service.stopped_cleanly


def test_a_service_that_dies_leaves_the_window_up_and_exit_code_1(qapp, probe_factory, paths):
    probe_factory.configure(fail_run=RuntimeError("profile folder is read-only"))
    app = TrayApp(probe_factory, paths=paths, background=True, autostart=None)
    seen = {}

    def check():
        seen["status"] = app.status_window.isVisible()
        seen["banner"] = app.status_window.banner.text()
        app.controller.trigger("quit")

    assert run_with(qapp, app, [(500, check)]) == 1
    assert seen["status"] and "profile folder is read-only" in seen["banner"]
