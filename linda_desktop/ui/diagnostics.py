"""Diagnostics: what `status` and `doctor` say, in a window the owner can copy from.

The report is collected off the GUI thread (``doctor`` may probe the keyring and the browser).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Mapping, Union

from linda_desktop.ui import qt_compat  # noqa: F401 - must load before any emit
from PySide6.QtCore import QUrl, Qt, Signal
from PySide6.QtGui import QDesktopServices, QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (QDialog, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton,
                               QVBoxLayout, QWidget)

from linda_desktop import APP_NAME

Report = Union[str, Mapping[str, Any]]
ReportSource = Union[Report, Callable[[], Report]]


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

    def __init__(self, source: ReportSource, log_file: Path | None = None,
                 parent: QWidget | None = None) -> None:
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
        self._collect(source)

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
