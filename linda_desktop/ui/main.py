"""The tray application's composition: QApplication, bridge, tray controller, windows."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from typing import Any, cast

from PySide6.QtCore import QObject, QTimer, Signal, Slot
from PySide6.QtWidgets import QApplication

from linda_desktop import APP_ID, APP_NAME, __version__
from linda_desktop.base.events import SessionState
from linda_desktop.base.paths import AppPaths
from linda_desktop.ui import qt_compat  # noqa: F401 - must load before any emit
from linda_desktop.ui.bot_api import BotApi
from linda_desktop.ui.bridge import ServiceBridge, ServiceFactory
from linda_desktop.ui.diagnostics import ReportSource
from linda_desktop.ui.icons import app_icon
from linda_desktop.ui.menu_model import NEEDS_OWNER
from linda_desktop.ui.qr_window import QrWindow
from linda_desktop.ui.status_window import StatusWindow
from linda_desktop.ui.tray import Autostart, ConfirmFn, TrayController

log = logging.getLogger(__name__)


def make_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication (or the existing one), set up for a tray app."""
    app = cast(QApplication, QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1]))
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(APP_NAME)
    app.setApplicationVersion(__version__)
    app.setOrganizationName("Linda")
    app.setDesktopFileName(APP_ID)
    app.setWindowIcon(app_icon())
    app.setQuitOnLastWindowClosed(False)  # closing a window must not stop the session
    return app


class TrayApp(QObject):
    """Everything the tray app is made of, wired together. ``request_show`` is thread-safe."""

    _showRequested = Signal()

    def __init__(self, service_factory: ServiceFactory, *, paths: AppPaths, background: bool,
                 autostart: Autostart | str | None = "default", diagnostics: ReportSource | None = None,
                 confirm: ConfirmFn | None = None, tray_available: bool | None = None,
                 wa_url: str | None = None, browser: str | None = None,
                 bot_api: BotApi | None = None) -> None:
        super().__init__()
        self.app = make_application()
        self.paths = paths
        self.background = background
        self.bridge = ServiceBridge(service_factory, self)
        if diagnostics is None and wa_url is not None:
            diagnostics = self._report_source(wa_url, browser)
        self.qr_window = QrWindow()
        self.status_window = StatusWindow()
        self.controller = TrayController(self.bridge, paths=paths, qr_window=self.qr_window,
                                         status_window=self.status_window, autostart=autostart,
                                         diagnostics=diagnostics, confirm=confirm,
                                         tray_available=tray_available, bot_api=bot_api, parent=self)
        self._showRequested.connect(self._show_now)
        # exit(), not quit(): Qt 6's quit() first asks every window to close, and ours refuse
        # (closing a window only hides it), which would cancel the quit.
        self.controller.quitRequested.connect(lambda: self.app.exit(0))
        self.bridge.finished.connect(self._on_service_finished)
        # OS log-off / shutdown: Qt quits the loop; the service still flushes and backs up.
        self.app.aboutToQuit.connect(lambda: self.bridge.shutdown())
        self._exit_code = 0

    def _report_source(self, wa_url: str, browser: str | None) -> ReportSource:
        """``diagnostics.report`` with the running service's own status (read on its loop)."""
        def report() -> str:
            from linda_desktop.service.diagnostics import report as full_report

            status = None
            service = self.bridge.service
            if service is not None and hasattr(service, "status"):
                try:
                    status = self.bridge.call_in_service_thread(service.status, timeout=15)
                except Exception as exc:  # noqa: BLE001 - fall back to the on-disk status
                    log.info("live status unavailable for diagnostics: %s", exc)
            return full_report(self.paths, wa_url=wa_url, browser=browser, status=status)
        return report

    def start(self) -> None:
        self.controller.show()
        if not self.background and self.controller.has_tray:
            self.status_window.bring_forward()
        self.bridge.start()

    def request_show(self) -> None:
        """Bring the window forward. Safe from any thread (a second launch asks through it)."""
        self._showRequested.emit()

    @Slot()
    def _show_now(self) -> None:
        self.controller.open_window()

    @Slot()
    def _on_service_finished(self) -> None:
        if self.bridge.stop_requested and not self.bridge.failure:
            return  # a stop we asked for (Quit, log-off, SIGTERM)
        # The service ended by itself (a fatal error): say so and stay open so the owner can read
        # Diagnostics; Quit still works.
        failure = self.bridge.failure or "The session service stopped."
        log.error("service ended: %s", failure)
        self._exit_code = 1
        self.controller.status_window.bring_forward()

    @property
    def state(self) -> SessionState:
        return self.controller.view.state

    @property
    def needs_owner(self) -> bool:
        return self.state in NEEDS_OWNER

    def exec(self) -> int:
        self.start()
        with _quit_on_signals(self.controller.quit):
            code = self.app.exec()
        return code or self._exit_code


class _quit_on_signals:
    """SIGINT/SIGTERM → a clean quit on the GUI thread (Python signal handlers need the
    interpreter to run now and then, hence the idle timer)."""

    def __init__(self, quit_fn: Callable[[], None]) -> None:
        self._quit = quit_fn
        self._timer = QTimer()
        self._timer.setInterval(250)
        self._timer.timeout.connect(lambda: None)
        self._old: dict[int, Any] = {}  # what signal.signal gave back, to put it back

    def __enter__(self) -> _quit_on_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, lambda *_: QTimer.singleShot(0, self._quit))
            except ValueError:  # not the main thread
                pass
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.stop()
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def run_tray(service_factory: ServiceFactory, *, paths: AppPaths, background: bool,
             show_window_requests: Callable[[Callable[[], None]], None] | None = None,
             wa_url: str | None = None, browser: str | None = None,
             on_service_ready: Callable[[Any, Callable[[], None]], None] | None = None,
             diagnostics: ReportSource | None = None, bot_api: BotApi | None = None) -> int:
    """Run the tray app until Quit; returns the exit code.

    ``service_factory(on_event)`` builds the SessionService. ``background``: start without a
    window unless linking is needed. ``show_window_requests``, when given, is called at once with
    a thread-safe callback that brings the window forward; ``on_service_ready(service, show)`` is
    called on the GUI thread once the service exists and its loop runs (wire the single-instance
    channel there). ``wa_url``/``browser`` feed the Diagnostics report
    (``linda_desktop.service.diagnostics.report``) unless ``diagnostics`` is given. ``bot_api``: the
    bot API switch; the tray starts it with the service, flips it from Bot API ▸ and closes it
    on Quit (without one, that submenu is disabled).
    """
    tray = TrayApp(service_factory, paths=paths, background=background, diagnostics=diagnostics,
                   wa_url=wa_url, browser=browser, bot_api=bot_api)
    if show_window_requests is not None:
        show_window_requests(tray.request_show)
    if on_service_ready is not None:
        tray.bridge.started.connect(lambda: on_service_ready(tray.bridge.service, tray.request_show))
    return tray.exec()
