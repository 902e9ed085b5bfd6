"""Diagnostics: what `status` and `doctor` say, in a window the owner can copy from.

The report is collected off the GUI thread (``doctor`` may probe the keyring and the browser).
Below it, the bot API token (made once per installation, kept in the keyring) with Show and Copy
buttons: masked until the owner asks, and never part of the report that *Copy* puts on the
clipboard for support.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QFontDatabase, QGuiApplication
from PySide6.QtWidgets import QDialog, QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from linda_desktop import APP_NAME
from linda_desktop.ui import qt_compat  # noqa: F401 - must load before any emit

Report = str | Mapping[str, Any]
ReportSource = Report | Callable[[], Report]


def format_report(report: Report) -> str:
    """A mapping becomes indented ``key: value`` lines; a string is kept as is."""
    if isinstance(report, str):
        return report.rstrip() + "\n"
    lines: list[str] = []

    def walk(value: Any, indent: int) -> None:
        pad = "  " * indent
        if isinstance(value, Mapping):
            for key, sub in value.items():
                if isinstance(sub, (Mapping, list, tuple)) and sub:
                    lines.append(f"{pad}{key}:")
                    walk(sub, indent + 1)
                else:
                    lines.append(f"{pad}{key}: {_scalar(sub)}")
        elif isinstance(value, (list, tuple)):
            for sub in value:
                if isinstance(sub, (Mapping, list, tuple)):
                    lines.append(f"{pad}-")
                    walk(sub, indent + 1)
                else:
                    lines.append(f"{pad}- {_scalar(sub)}")
        else:
            lines.append(f"{pad}{_scalar(value)}")

    walk(report, 0)
    return "\n".join(lines) + "\n"


def _scalar(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple, dict)) and not value:
        return "none"
    return str(value)


class DiagnosticsDialog(QDialog):
    reportReady = Signal(str)
    tokenReady = Signal(str, str)  # token, error (one of them empty); never log the token

    def __init__(self, source: ReportSource, log_file: Path | None = None,
                 parent: QWidget | None = None, *, token: Callable[[], str] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Diagnostics — {APP_NAME}")
        self.setObjectName("diagnosticsDialog")
        self.resize(680, 480)
        self._log_file = Path(log_file) if log_file else None

        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 16, 18, 14)
        layout.setSpacing(10)
        intro = QLabel("What Linda Desktop knows about this computer. Copy it into a message when "
                       "you ask for help; it contains no keys, codes or messages.")
        intro.setWordWrap(True)
        layout.addWidget(intro)

        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setPlainText("Collecting diagnostics…")
        layout.addWidget(self.text, 1)

        self.log_label = QLabel()
        self.log_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.log_label.setWordWrap(True)
        if self._log_file:
            self.log_label.setText(f"Log file: {self._log_file}")
        layout.addWidget(self.log_label)

        self.token_edit: QLineEdit | None = None
        if token is not None:
            layout.addLayout(self._token_row())

        buttons = QHBoxLayout()
        self.copy_button = QPushButton("Copy")
        self.copy_button.setEnabled(False)
        self.copy_button.clicked.connect(self.copy)
        self.open_logs_button = QPushButton("Open log folder")
        self.open_logs_button.setEnabled(self._log_file is not None)
        self.open_logs_button.clicked.connect(self._open_logs)
        close = QPushButton("Close")
        close.setDefault(True)
        close.clicked.connect(self.accept)
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.open_logs_button)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout.addLayout(buttons)

        self.reportReady.connect(self._show_report)
        self.tokenReady.connect(self._show_token)
        self._collect(source)
        if token is not None:
            self._fetch_token(token)

    # ---- the bot API token -----------------------------------------------------------------

    def _token_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        label = QLabel("Bot API token:")
        self.token_edit = QLineEdit()
        self.token_edit.setObjectName("apiToken")
        self.token_edit.setReadOnly(True)
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText("Reading the system keyring…")
        self.token_edit.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        label.setBuddy(self.token_edit)
        self.show_token_button = QPushButton("Show")
        self.show_token_button.setCheckable(True)
        self.show_token_button.setEnabled(False)
        self.show_token_button.toggled.connect(self._reveal_token)
        self.copy_token_button = QPushButton("Copy token")
        self.copy_token_button.setEnabled(False)
        self.copy_token_button.clicked.connect(self.copy_token)
        row.addWidget(label)
        row.addWidget(self.token_edit, 1)
        row.addWidget(self.show_token_button)
        row.addWidget(self.copy_token_button)
        return row

    def _fetch_token(self, token: Callable[[], str]) -> None:
        def work() -> None:
            try:
                value, error = token(), ""
            except Exception as exc:  # noqa: BLE001 - KeyringUnavailable and D-Bus errors
                value, error = "", str(exc) or type(exc).__name__
            try:
                self.tokenReady.emit(value, error)
            except RuntimeError:  # the dialog was closed and deleted meanwhile
                pass

        threading.Thread(target=work, name="linda-diagnostics-token", daemon=True).start()

    def _show_token(self, value: str, error: str) -> None:
        assert self.token_edit is not None
        if not value:
            self.token_edit.setEchoMode(QLineEdit.EchoMode.Normal)
            self.token_edit.setText(f"not available: {error}")
            self.token_edit.setCursorPosition(0)
            return
        self.token_edit.setText(value)
        self.token_edit.setCursorPosition(0)
        self.show_token_button.setEnabled(True)
        self.copy_token_button.setEnabled(True)

    def _reveal_token(self, shown: bool) -> None:
        assert self.token_edit is not None
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Normal if shown else QLineEdit.EchoMode.Password)
        self.show_token_button.setText("Hide" if shown else "Show")

    @property
    def token_shown(self) -> bool:
        return self.token_edit is not None and self.token_edit.echoMode() == QLineEdit.EchoMode.Normal

    def copy_token(self) -> None:
        if self.token_edit is not None and self.copy_token_button.isEnabled():
            QGuiApplication.clipboard().setText(self.token_edit.text())
            self.copy_token_button.setText("Copied")

    def _collect(self, source: ReportSource) -> None:
        if not callable(source):
            self._show_report(format_report(source))
            return

        def work() -> None:
            try:
                text = format_report(source())
            except Exception as exc:  # noqa: BLE001 - the dialog must show something useful
                text = f"Could not collect the report: {type(exc).__name__}: {exc}\n"
            try:
                self.reportReady.emit(text)
            except RuntimeError:  # the dialog was closed and deleted meanwhile
                pass

        threading.Thread(target=work, name="linda-diagnostics", daemon=True).start()

    def _show_report(self, text: str) -> None:
        if self._log_file and str(self._log_file) not in text:
            text = text.rstrip("\n") + f"\n\nlog file: {self._log_file}\n"
        self.text.setPlainText(text)
        self.copy_button.setEnabled(True)

    @property
    def report_text(self) -> str:
        return self.text.toPlainText()

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.report_text)
        self.copy_button.setText("Copied")

    def _open_logs(self) -> None:
        if self._log_file:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self._log_file.parent)))
