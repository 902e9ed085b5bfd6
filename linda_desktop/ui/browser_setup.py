"""First-run browser download window: progress, Retry, Cancel, and plain words when it fails.

Shown only when no Chrome, Edge or Chromium is installed (``find_browser`` raised
``BrowserNotFound`` with no ``--browser``/``LINDA_BROWSER`` given). The work is done by
``linda_desktop.browser.install.ChromiumInstall`` on a plain thread; its progress reaches this
window through Qt signals (queued onto the GUI thread).

Entry point for the app: ``ensure_browser_interactively(paths) -> str | None``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from linda_desktop import APP_NAME
from linda_desktop.base.paths import AppPaths
from linda_desktop.browser.install import (
    BrowserInstallError,
    ChromiumInstall,
    InstallCancelled,
    InstallDiskFull,
    InstallOffline,
    InstallProgress,
    describe,
    installed_chromium,
)
from linda_desktop.ui import qt_compat  # noqa: F401 - must load before any emit

log = logging.getLogger(__name__)

INTRO = ("Linda Desktop keeps WhatsApp Web open in a browser that runs in the background. "
         "No Google Chrome, Microsoft Edge or Chromium was found on this computer, so Linda Desktop "
         "is downloading its own copy of Chromium (about 170 MB). This happens only once.")
OFFLINE_WORDS = ("This computer seems to be offline, so Chromium could not be downloaded. "
                 "Connect to the internet and press Retry. Or install Google Chrome or Microsoft Edge "
                 "and start Linda Desktop again.")
DISK_FULL_WORDS = "The disk is full: Chromium needs about 600 MB. Free some space, then press Retry."

JobFactory = Callable[..., ChromiumInstall]


def failure_words(error: BaseException) -> str:
    """What the window says when the download failed."""
    if isinstance(error, InstallOffline):
        return OFFLINE_WORDS
    if isinstance(error, InstallDiskFull):
        return DISK_FULL_WORDS
    return describe(error)


def _plain_name(progress: InstallProgress) -> str:
    """"Chromium" for Playwright's "Chrome for Testing … (playwright chromium v1255)"."""
    return "Chromium" if "playwright chromium" in progress.component else progress.friendly_name


def status_words(progress: InstallProgress) -> str:
    name = _plain_name(progress)
    if progress.done:
        return "Chromium is ready." if progress.index >= progress.count else "Unpacking…"
    if progress.size_mib:
        retry = f" (try {progress.attempt})" if progress.attempt > 1 else ""
        return f"Downloading {name}… {progress.percent} % of {progress.size_mib:.0f} MB{retry}"
    return f"Connecting to download {name}…"


class _Relay(QObject):
    """Carries the worker thread's news to the GUI thread."""

    progressed = Signal(object)
    finished = Signal(str)
    failed = Signal(object)


class BrowserSetupDialog(QDialog):
    """Downloads Chromium into ``browsers_dir`` on ``start()``. ``executable`` is set on success
    (and the dialog accepts); Cancel rejects. ``extra_env`` goes to the installer (e.g. a
    company mirror in ``PLAYWRIGHT_DOWNLOAD_HOST``)."""

    def __init__(self, browsers_dir: Path, *, extra_env: Mapping[str, str] | None = None,
                 job_factory: JobFactory = ChromiumInstall, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.browsers_dir = Path(browsers_dir)
        self.extra_env = dict(extra_env or {})
        self.job_factory = job_factory
        self.executable: str | None = None
        self.error: BaseException | None = None
        self.job: ChromiumInstall | None = None
        self._worker: threading.Thread | None = None
        self._relay = _Relay(self)
        self._relay.progressed.connect(self._on_progress)
        self._relay.finished.connect(self._on_finished)
        self._relay.failed.connect(self._on_failed)

        self.setObjectName("browserSetup")
        self.setWindowTitle(f"{APP_NAME} — getting a browser")
        self.setMinimumWidth(460)
        heading = QLabel("<b>One more step: a browser for WhatsApp</b>")
        intro = QLabel(INTRO)
        intro.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setObjectName("progress")
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.status = QLabel("Starting…")
        self.status.setObjectName("status")
        self.message = QLabel()
        self.message.setObjectName("message")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #b3261e;")
        self.message.hide()
        self.retry_button = QPushButton("Retry")
        self.retry_button.setObjectName("retry")
        self.retry_button.hide()
        self.retry_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancel")
        self.cancel_button.clicked.connect(self.reject)

        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.retry_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setSpacing(10)
        for widget in (heading, intro, self.bar, self.status, self.message):
            layout.addWidget(widget)
        layout.addLayout(buttons)

    # ------------------------------------------------------------------ work

    @property
    def running(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    @Slot()
    def start(self) -> None:
        """Start (or retry) the download; returns at once."""
        if self.running:
            return
        self.error = None
        self.message.hide()
        self.retry_button.hide()
        self.bar.setRange(0, 0)  # busy until the first percentage arrives
        self.status.setText("Connecting to the download server…")
        relay = self._relay
        self.job = self.job_factory(self.browsers_dir, on_progress=relay.progressed.emit,
                                    extra_env=self.extra_env)
        job = self.job

        def work() -> None:
            try:
                relay.finished.emit(str(job.run()))
            except BaseException as exc:  # noqa: BLE001 - every failure is shown, none is lost
                relay.failed.emit(exc)

        self._worker = threading.Thread(target=work, name="browser-install", daemon=True)
        self._worker.start()

    @Slot(object)
    def _on_progress(self, progress: InstallProgress) -> None:
        if self.bar.maximum() == 0:
            self.bar.setRange(0, 1000)
        self.bar.setValue(int(progress.overall * 1000))
        self.status.setText(status_words(progress))

    @Slot(str)
    def _on_finished(self, executable: str) -> None:
        self.executable = executable
        self.bar.setRange(0, 1000)
        self.bar.setValue(1000)
        self.status.setText("Chromium is ready.")
        log.info("first-run browser ready: %s", executable)
        self.accept()

    @Slot(object)
    def _on_failed(self, error: BaseException) -> None:
        self.error = error
        if isinstance(error, InstallCancelled):
            return
        if not isinstance(error, BrowserInstallError):
            log.error("browser install crashed: %r", error)
        self.bar.setRange(0, 1000)
        self.bar.setValue(0)
        self.status.setText("The download did not finish.")
        self.message.setText(failure_words(error))
        self.message.show()
        self.retry_button.show()
        self.retry_button.setDefault(True)

    # ------------------------------------------------------------------ closing

    def reject(self) -> None:
        """Cancel (button, Esc or the window's close box): stop the installer, then close."""
        if self.job is not None and self.running:
            self.job.cancel()
            if self._worker is not None:
                self._worker.join(10)
        super().reject()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self.job is None:
            self.start()


def ensure_browser_interactively(paths: AppPaths, *, extra_env: Mapping[str, str] | None = None) -> str | None:
    """A Chromium for the app when none is installed: the one a previous run downloaded, else a
    download with a progress window. Returns the executable, or None when the owner cancelled.

    Also sets ``PLAYWRIGHT_BROWSERS_PATH`` to ``paths.browsers`` for this process, so discovery
    (``doctor``, Diagnostics) finds the same browser. Needs the GUI thread; makes the
    QApplication if there is none yet."""
    os.environ["PLAYWRIGHT_BROWSERS_PATH"] = str(paths.browsers)
    existing = installed_chromium(paths.browsers)
    if existing is not None:
        return str(existing)
    if QApplication.instance() is None:
        from linda_desktop.ui.main import make_application

        make_application()
    dialog = BrowserSetupDialog(paths.ensure(paths.browsers), extra_env=extra_env)
    dialog.setWindowFlag(Qt.WindowType.WindowStaysOnTopHint, True)
    dialog.exec()
    return dialog.executable
