"""The linking window: the QR code (drawn from the payload, never a screenshot), what to do with
it, and what is happening meanwhile. It hides itself once WhatsApp is connected.

Never log the payload: it is a live credential for a few seconds.
"""

from __future__ import annotations

from linda_desktop.ui import qt_compat  # noqa: F401 - must load before any emit
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QCloseEvent, QFont, QKeyEvent, QPalette
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QPushButton, QStackedWidget,
                               QVBoxLayout, QWidget)

from linda_desktop import APP_NAME
from linda_desktop.base.events import SessionState, StateChanged
from linda_desktop.ui.icons import app_icon
from linda_desktop.ui.menu_model import humanize_reason, is_link_stalled, state_words
from linda_desktop.ui.widgets import QrView, Spinner, StepRow, primary_button

LOADING, QR, EXPIRED, STALLED, MESSAGE = "loading", "qr", "expired", "stalled", "message"

SCAN_STEPS = (
    "Open <b>WhatsApp</b> on your phone",
    "Tap <b>Menu</b> or <b>Settings</b> → <b>Linked devices</b>",
    "Tap <b>Link a device</b>",
    "Point your phone at this screen to scan the code",
)
FINISH_STEPS = (
    "Click <b>Finish in a browser window</b>",
    "Follow WhatsApp's steps in that window (it may ask for your computer's PIN or passkey)",
    "The window closes by itself once you are linked",
)


def _font(widget: QWidget, scale: float, bold: bool = False) -> QFont:
    font = QFont(widget.font())
    font.setPointSizeF(max(8.0, font.pointSizeF() * scale))
    font.setBold(bold)
    return font


class QrWindow(QWidget):
    """Signals ask the app to act; the window itself never talks to the service."""

    showNewQrRequested = Signal()
    finishInBrowserRequested = Signal()
    linked = Signal()  # connected after the owner was shown a code (window hid itself)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setObjectName("qrWindow")
        self.setWindowTitle(f"Link WhatsApp — {APP_NAME}")
        self.setWindowIcon(app_icon())
        self._payload: str | None = None
        self._state = SessionState.STARTING
        self._reason: str | None = None
        self._mode = LOADING
        self._shown_for_linking = False
        self._steps: tuple[str, ...] | None = None
        self._build()
        self._show_loading("Starting WhatsApp…", "wait")

    # ---- layout ---------------------------------------------------------------------------

    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(32, 28, 32, 20)
        outer.setSpacing(18)

        self.title = QLabel("Link this computer to WhatsApp")
        self.title.setFont(_font(self, 1.55, bold=True))
        self.subtitle = QLabel()
        self.subtitle.setWordWrap(True)
        self.subtitle.setFont(_font(self, 1.05))
        header = QVBoxLayout()
        header.setSpacing(6)
        header.addWidget(self.title)
        header.addWidget(self.subtitle)
        outer.addLayout(header)

        body = QHBoxLayout()
        body.setSpacing(36)
        self.steps_box = QVBoxLayout()
        self.steps_box.setSpacing(16)
        self.steps_holder = QWidget()
        holder = QVBoxLayout(self.steps_holder)
        holder.setContentsMargins(0, 0, 0, 0)
        holder.setSpacing(22)
        holder.addLayout(self.steps_box)
        self.note = QLabel()
        self.note.setWordWrap(True)
        note_palette = self.note.palette()
        note_palette.setColor(QPalette.ColorRole.WindowText,
                              note_palette.color(QPalette.ColorRole.PlaceholderText))
        self.note.setPalette(note_palette)
        holder.addWidget(self.note)
        self.steps_holder.setMinimumWidth(340)
        body.addWidget(self.steps_holder, 1, Qt.AlignmentFlag.AlignTop)
        self._body = body

        self.pages = QStackedWidget()
        self.pages.setObjectName("pages")
        self.pages.setStyleSheet("QStackedWidget#pages { background: palette(base); border-radius: 10px; }")
        self.pages.setFixedSize(QSize(340, 340))
        self.pages.addWidget(self._build_loading_page())
        self.pages.addWidget(self._build_qr_page())
        self.pages.addWidget(self._build_stalled_page())
        self.pages.addWidget(self._build_message_page())
        body.addWidget(self.pages, 0, Qt.AlignmentFlag.AlignTop)
        outer.addLayout(body, 1)

        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        line.setFrameShadow(QFrame.Shadow.Sunken)
        outer.addWidget(line)
        footer = QHBoxLayout()
        self.status = QLabel()
        self.status.setObjectName("statusLine")
        muted = self.status.palette()
        muted.setColor(QPalette.ColorRole.WindowText, muted.color(QPalette.ColorRole.PlaceholderText))
        self.status.setPalette(muted)
        self.hide_button = QPushButton("Hide")
        self.hide_button.clicked.connect(self.hide)
        footer.addWidget(self.status, 1)
        footer.addWidget(self.hide_button)
        outer.addLayout(footer)
        self.resize(self.sizeHint().expandedTo(QSize(820, 0)))

    def _page(self) -> tuple[QWidget, QVBoxLayout]:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(16, 16, 16, 16)
        layout.setSpacing(14)
        return page, layout

    def _build_loading_page(self) -> QWidget:
        page, layout = self._page()
        self.spinner = Spinner(44)
        self.loading_label = QLabel()
        self.loading_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.loading_label.setWordWrap(True)
        layout.addStretch(1)
        layout.addWidget(self.spinner, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(self.loading_label)
        layout.addStretch(1)
        return page

    def _build_qr_page(self) -> QWidget:
        page = QWidget()
        page.setObjectName("qrPage")
        page.setStyleSheet("QWidget#qrPage { background: white; border-radius: 10px; }")
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        self.qr_view = QrView()
        layout.addWidget(self.qr_view)
        # Shown over the faded code when the page stopped rotating codes.
        self.expired_box = QWidget(self.qr_view)
        box = QVBoxLayout(self.expired_box)
        box.setSpacing(12)
        box.addStretch(1)
        self.expired_label = QLabel("This code expired")
        self.expired_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.expired_label.setFont(_font(self, 1.2, bold=True))
        self.expired_label.setStyleSheet("color: #1f2328; background: transparent;")
        self.new_code_button = primary_button("Show a new code")
        self.new_code_button.clicked.connect(self._ask_new_code)
        box.addWidget(self.expired_label)
        box.addWidget(self.new_code_button, 0, Qt.AlignmentFlag.AlignHCenter)
        box.addStretch(1)
        self.expired_box.hide()
        return page

    def _build_stalled_page(self) -> QWidget:
        page, layout = self._page()
        icon = QLabel()
        icon.setPixmap(app_icon().pixmap(QSize(56, 56)))
        heading = QLabel("Almost done")
        heading.setFont(_font(self, 1.2, bold=True))
        text = QLabel("Your phone scanned the code. WhatsApp now asks to finish linking on this "
                      "computer, in a browser window.")
        text.setWordWrap(True)
        self.finish_button = primary_button("Finish in a browser window")
        self.finish_button.clicked.connect(self._ask_finish)
        layout.setContentsMargins(24, 20, 24, 20)
        layout.addStretch(1)
        layout.addWidget(icon, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(heading)
        layout.addWidget(text)
        layout.addSpacing(6)
        layout.addWidget(self.finish_button)
        layout.addStretch(2)
        return page

    def _build_message_page(self) -> QWidget:
        page, layout = self._page()
        self.message_label = QLabel()
        self.message_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message_label.setWordWrap(True)
        self.message_label.setFont(_font(self, 1.1))
        layout.addStretch(1)
        layout.addWidget(self.message_label)
        layout.addStretch(1)
        return page

    def _set_steps(self, steps: tuple[str, ...]) -> None:
        while self.steps_box.count():
            item = self.steps_box.takeAt(0)
            if item.widget() is not None:
                item.widget().hide()
                item.widget().deleteLater()
        for number, html in enumerate(steps, start=1):
            self.steps_box.addWidget(StepRow(number, html))
        self._steps = steps
        # Nothing to do for the owner: centre the progress/message instead of an empty column.
        self.steps_holder.setVisible(bool(steps))
        align = Qt.AlignmentFlag.AlignTop
        if not steps:
            align |= Qt.AlignmentFlag.AlignHCenter
        self._body.setAlignment(self.pages, align)

    # ---- what the window shows -------------------------------------------------------------

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def payload(self) -> str | None:
        return self._payload

    @property
    def steps(self) -> tuple[str, ...]:
        return self._steps or ()

    def _switch(self, mode: str, page: int) -> None:
        self._mode = mode
        self.pages.setCurrentIndex(page)
        self.expired_box.setVisible(mode == EXPIRED)
        self.qr_view.set_faded(mode == EXPIRED)
        if mode == EXPIRED:
            self._place_expired_box()
        self.status.setText(state_words(self._state, self._reason))

    def _show_loading(self, text: str, kind: str = "scan") -> None:
        self.loading_label.setText(text)
        self._set_headline(kind)
        self._switch(LOADING, 0)

    def _show_message(self, text: str) -> None:
        self.message_label.setText(text)
        self._set_headline("wait")
        self._switch(MESSAGE, 3)

    def _set_headline(self, kind: str) -> None:
        """``scan``: the four steps; ``finish``: the passkey steps; ``wait``: nothing to do."""
        steps: tuple[str, ...] = SCAN_STEPS
        self.note.setText("The code changes every few seconds. Keep this window open until "
                          "your phone says the device is linked.")
        if kind == "finish":
            steps = FINISH_STEPS
            self.note.setText("Your phone already scanned the code; only this last step is left.")
            self.title.setText("Finish linking on this computer")
            self.subtitle.setText("WhatsApp asks to finish the link here before it connects.")
        elif kind == "wait":
            steps = ()
            if self._state == SessionState.RESTORING:
                self.title.setText("Restoring your session")
                self.subtitle.setText("This takes a few seconds. You do not need your phone for this.")
            else:
                self.title.setText("WhatsApp on this computer")
                self.subtitle.setText(f"{APP_NAME} reconnects by itself; you do not need to do anything.")
        elif self._state == SessionState.LOGGED_OUT:
            self.title.setText("Link this computer again")
            text = "Your phone logged this computer out. Scan the code to link it again."
            if self._reason:
                text += f" ({humanize_reason(self._reason)})"
            self.subtitle.setText(text)
        else:
            self.title.setText("Link this computer to WhatsApp")
            self.subtitle.setText(f"{APP_NAME} keeps WhatsApp connected on this computer and "
                                  "restores it by itself after every restart.")
        if self._steps != steps:
            self._set_steps(steps)

    def _show_code(self) -> None:
        self._set_headline("scan")
        self._switch(QR, 1)

    def set_qr(self, payload: str, idle: bool = False) -> None:
        """A new code (or the page stopped rotating: ``idle``)."""
        if payload:
            self._payload = payload
            self.qr_view.set_payload(payload)
        if self._mode == STALLED or not self.qr_view.has_code():
            return
        self._set_headline("scan")
        if idle:
            self.note.setText("Codes stop changing after a few minutes when nobody scans them. "
                              "Ask for a new one when your phone is ready.")
        self._switch(EXPIRED if idle else QR, 1)

    def set_state(self, event: StateChanged) -> None:
        self._state, self._reason = event.state, event.reason
        state = event.state
        if state == SessionState.CONNECTED:
            was_linking = self._shown_for_linking and self.isVisible()
            self._payload = None
            self.qr_view.set_payload(None)
            self._shown_for_linking = False
            self._show_loading("Connected", "wait")
            if self.isVisible():
                self.hide()
            if was_linking:
                self.linked.emit()
            return
        if is_link_stalled(state, event.reason):
            if self._mode != STALLED:
                self.finish_failed("")
            self._set_headline("finish")
            self._switch(STALLED, 2)
        elif state in (SessionState.NEEDS_LINK, SessionState.LOGGED_OUT):
            if self.qr_view.has_code():
                self._show_code()
            else:
                self._show_loading("Getting a code from WhatsApp…")
        elif state == SessionState.RESTORING:
            self._show_loading("Restoring your session…", "wait")
        elif state in (SessionState.STARTING, SessionState.BROWSER_CRASHED):
            self._show_loading(state_words(state, event.reason), "wait")
        else:  # offline, conflict, error
            self._show_message(state_words(state, event.reason))
        if state in (SessionState.NEEDS_LINK, SessionState.LOGGED_OUT) and self.isVisible():
            self._shown_for_linking = True

    def begin_relink(self) -> None:
        """The owner confirmed Re-link: show progress until the first code arrives."""
        self._payload = None
        self.qr_view.set_payload(None)
        self._show_loading("Preparing a new code…")
        self.bring_forward()

    def bring_forward(self) -> None:
        if self._state in (SessionState.NEEDS_LINK, SessionState.LOGGED_OUT):
            self._shown_for_linking = True
        self.show()
        self.setWindowState(self.windowState() & ~Qt.WindowState.WindowMinimized)
        self.raise_()
        self.activateWindow()

    # ---- actions ----------------------------------------------------------------------------

    def _ask_new_code(self) -> None:
        self._show_loading("Getting a new code…")
        self.showNewQrRequested.emit()

    def _ask_finish(self) -> None:
        self.finish_button.setEnabled(False)
        self.finish_button.setText("Opening a browser window…")
        self.finishInBrowserRequested.emit()

    def finish_failed(self, message: str) -> None:
        """Re-arm the Finish button (the command failed, or a fresh stalled link)."""
        self.finish_button.setEnabled(True)
        self.finish_button.setText("Finish in a browser window")
        if message:
            self.status.setText(message)

    # ---- Qt plumbing --------------------------------------------------------------------------

    def _place_expired_box(self) -> None:
        self.expired_box.setGeometry(self.qr_view.rect())
        self.expired_box.raise_()

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._place_expired_box()

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self._place_expired_box()
        if self._state in (SessionState.NEEDS_LINK, SessionState.LOGGED_OUT):
            self._shown_for_linking = True

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Escape:
            self.hide()
            return
        super().keyPressEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        event.ignore()  # closing only hides: the app keeps running in the tray
        self.hide()
