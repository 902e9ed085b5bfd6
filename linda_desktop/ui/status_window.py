"""A small window with the state and the same actions as the tray menu.

Opened by a click on the tray icon (when no linking is needed), and the only UI when the desktop
has no system tray (e.g. GNOME without the AppIndicator extension). It renders the very same
``menu_model`` items the tray menu shows, so both always offer the same things.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QCloseEvent, QFont, QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from linda_desktop import APP_NAME
from linda_desktop.base.events import SessionState
from linda_desktop.ui import menu_model as mm
from linda_desktop.ui import qt_compat  # noqa: F401 - must load before any emit
from linda_desktop.ui.icons import app_icon, tray_icon

_LEVEL_STYLE = {
    "info": "background: #e6f4ea; color: #14532d; border: 1px solid #b7dfc3;",
    "warning": "background: #fff4e0; color: #6b3d00; border: 1px solid #f2d29b;",
    "critical": "background: #fde8e8; color: #7a1414; border: 1px solid #f2b8b8;",
}


class StatusWindow(QWidget):
    """``actionTriggered(item_id, checked)`` — the controller decides what each id does."""

    actionTriggered = Signal(str, bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setObjectName("statusWindow")
        self.setWindowTitle(APP_NAME)
        self.setWindowIcon(app_icon())
        self.minimize_on_close = False  # True when there is no tray to come back from
        self._items: list[mm.MenuItem] = []
        self._widgets: dict[str, QWidget] = {}
        self._build()

    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(24, 22, 24, 18)
        outer.setSpacing(14)

        head = QHBoxLayout()
        head.setSpacing(16)
        self.state_icon = QLabel()
        self.state_icon.setFixedSize(QSize(48, 48))
        head.addWidget(self.state_icon, 0, Qt.AlignmentFlag.AlignTop)
        text = QVBoxLayout()
        text.setSpacing(4)
        self.state_label = QLabel()
        self.state_label.setObjectName("stateLabel")
        big = QFont(self.font())
        big.setPointSizeF(big.pointSizeF() * 1.35)
        big.setBold(True)
        self.state_label.setFont(big)
        self.state_label.setWordWrap(True)
        self.backup_label = QLabel()
        self.backup_label.setObjectName("backupLabel")
        muted = self.backup_label.palette()
        muted.setColor(QPalette.ColorRole.WindowText, muted.color(QPalette.ColorRole.PlaceholderText))
        self.backup_label.setPalette(muted)
        text.addWidget(self.state_label)
        text.addWidget(self.backup_label)
        head.addLayout(text, 1)
        outer.addLayout(head)

        self.banner = QLabel()
        self.banner.setObjectName("banner")
        self.banner.setWordWrap(True)
        self.banner.setTextFormat(Qt.TextFormat.RichText)
        self.banner.hide()
        outer.addWidget(self.banner)

        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        line.setFrameShadow(QFrame.Shadow.Sunken)
        outer.addWidget(line)

        self.actions_host = QWidget()
        self.actions_layout = QGridLayout(self.actions_host)
        self.actions_layout.setContentsMargins(0, 0, 0, 0)
        self.actions_layout.setHorizontalSpacing(10)
        self.actions_layout.setVerticalSpacing(10)
        outer.addWidget(self.actions_host)
        outer.addStretch(1)
        bottom = QHBoxLayout()
        bottom.addStretch(1)
        self.quit_host = QHBoxLayout()
        bottom.addLayout(self.quit_host)
        outer.addLayout(bottom)
        self.setMinimumWidth(460)

    # ---- rendering -----------------------------------------------------------------------------

    def render_items(self, state: SessionState, items: Sequence[mm.MenuItem]) -> None:
        """Show ``items`` (from ``menu_model.build_menu``)."""
        self._items = list(items)
        self.state_icon.setPixmap(tray_icon(state, dark_panel=self._is_dark()).pixmap(QSize(48, 48)))
        status = mm.find_item(items, mm.STATUS)
        backup = mm.find_item(items, mm.LAST_BACKUP)
        self.state_label.setText(status.label if status else "")
        self.backup_label.setText(backup.label if backup else "")
        self._rebuild_actions(items)

    def _is_dark(self) -> bool:
        return self.palette().color(QPalette.ColorRole.Window).lightness() < 128

    def _rebuild_actions(self, items: Sequence[mm.MenuItem]) -> None:
        for widget in self._widgets.values():
            widget.hide()
            widget.deleteLater()
        self._widgets.clear()
        grid = self.actions_layout
        while grid.count():
            grid.takeAt(0)
        row, col = 0, 0
        for item in items:
            if item.id in (mm.STATUS, mm.LAST_BACKUP):
                continue
            if item.id == mm.QUIT:  # bottom right, apart from the rest
                widget = self._widget_for(item)
                self._widgets[item.id] = widget
                self.quit_host.addWidget(widget)
                continue
            if item.separator:
                if col:
                    row, col = row + 1, 0
                continue
            widget = self._widget_for(item)
            self._widgets[item.id] = widget
            if item.checkable:  # a checkbox gets a row of its own
                if col:
                    row, col = row + 1, 0
                grid.addWidget(widget, row, 0, 1, 3)
                row += 1
                continue
            grid.addWidget(widget, row, col)
            col += 1
            if col == 3:
                row, col = row + 1, 0

    def _widget_for(self, item: mm.MenuItem) -> QWidget:
        if item.checkable:
            box = QCheckBox(item.label)
            box.setChecked(item.checked)
            box.setEnabled(item.enabled)
            box.toggled.connect(lambda checked, i=item.id: self.actionTriggered.emit(i, checked))
            box.setObjectName(item.id)
            return box
        button = QPushButton(item.label)
        button.setObjectName(item.id)
        button.setEnabled(item.enabled)
        button.setMinimumHeight(32)
        if item.children:
            menu = QMenu(button)
            for child in item.children:
                if child.separator:
                    menu.addSeparator()
                    continue
                action = menu.addAction(child.label)
                action.setObjectName(child.id)
                action.setEnabled(child.enabled)
                if child.checkable:
                    action.setCheckable(True)
                    action.setChecked(child.checked)
                action.triggered.connect(lambda checked=False, i=child.id: self.actionTriggered.emit(i, checked))
            button.setMenu(menu)
        else:
            button.clicked.connect(lambda _=False, i=item.id: self.actionTriggered.emit(i, False))
        return button

    def widget(self, item_id: str) -> QWidget | None:
        return self._widgets.get(item_id)

    # ---- banner (notifications when there is no tray) -------------------------------------------

    def show_banner(self, title: str, body: str, level: str = "info") -> None:
        style = _LEVEL_STYLE.get(level, _LEVEL_STYLE["info"])
        self.banner.setStyleSheet(f"QLabel#banner {{ {style} border-radius: 6px; padding: 8px 10px; }}")
        self.banner.setText(f"<b>{_escape(title)}</b><br>{_escape(body)}")
        self.banner.show()

    def clear_banner(self) -> None:
        self.banner.hide()

    def bring_forward(self) -> None:
        self.show()
        self.setWindowState(self.windowState() & ~Qt.WindowState.WindowMinimized)
        self.raise_()
        self.activateWindow()

    def closeEvent(self, event: QCloseEvent) -> None:
        event.ignore()
        if self.minimize_on_close:  # no tray: keep running, stay reachable from the taskbar
            self.showMinimized()
        else:
            self.hide()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
