"""The About box: name, version, what it does, where its files are."""

from __future__ import annotations

from pathlib import Path

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import QSize, Qt, qVersion
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from linda_desktop import APP_NAME, __version__
from linda_desktop.ui.icons import app_icon


class AboutDialog(QDialog):
    def __init__(self, data_dir: Path | None = None, log_file: Path | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("aboutDialog")
        self.setWindowTitle(f"About {APP_NAME}")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 22, 24, 16)
        layout.setSpacing(14)

        head = QHBoxLayout()
        head.setSpacing(16)
        icon = QLabel()
        icon.setPixmap(app_icon().pixmap(QSize(64, 64)))
        head.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
        text = QVBoxLayout()
        name = QLabel(APP_NAME)
        font = QFont(self.font())
        font.setPointSizeF(font.pointSizeF() * 1.5)
        font.setBold(True)
        name.setFont(font)
        self.version_label = QLabel(f"Version {__version__}")
        blurb = QLabel("Keeps your WhatsApp session alive on this computer, backs it up "
                       "(encrypted) and restores it by itself after every restart.")
        blurb.setWordWrap(True)
        text.addWidget(name)
        text.addWidget(self.version_label)
        text.addSpacing(4)
        text.addWidget(blurb)
        head.addLayout(text, 1)
        layout.addLayout(head)

        details = []
        if data_dir:
            details.append(f"Data folder: {data_dir}")
        if log_file:
            details.append(f"Log file: {log_file}")
        details.append(f"Qt {qVersion()} · PySide6 {pyside_version} · MIT licence")
        info = QLabel("\n".join(details))
        info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        info.setWordWrap(True)
        layout.addWidget(info)

        row = QHBoxLayout()
        row.addStretch(1)
        ok = QPushButton("Close")
        ok.setDefault(True)
        ok.clicked.connect(self.accept)
        row.addWidget(ok)
        layout.addLayout(row)
        self.setMinimumWidth(440)
