"""The linking window: the QR code (drawn from the payload, never a screenshot), what to do with
it, and what is happening meanwhile. It hides itself once WhatsApp is connected.

Three ways through it:

- **QR**: the phone scans the code.
- **The passkey step** (reference §4): after the scan WhatsApp may ask this computer for a
  passkey. The service brings the very browser window that showed the QR on screen; this window
  explains each stage (``StateChanged.details["stage"]``) while the owner completes it there.
  A stage that times out or is cancelled ends in a fresh QR: "Scan a new code".
- **Pairing code**: "Link with phone number instead" asks for the number, then shows the
  8-character code (``ABCD-EFGH``) to type on the phone.

Never log the QR payload or the codes: they are live credentials for a few minutes.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QFont, QFontDatabase, QKeyEvent, QPalette
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QLineEdit, QPushButton, QStackedWidget, QVBoxLayout, QWidget

from linda_desktop import APP_NAME
from linda_desktop.base.events import LinkStep, SessionState, StateChanged, StateCode
from linda_desktop.base.phone import PhoneNumberError, format_pairing_code, format_phone, normalize_phone
from linda_desktop.ui import qt_compat  # noqa: F401 - must load before any emit
from linda_desktop.ui.icons import app_icon
from linda_desktop.ui.menu_model import NO_QR_CODES, humanize_reason, link_stage, state_words
from linda_desktop.ui.widgets import CURRENT, DONE, TODO, QrView, Spinner, StepRow, primary_button

LOADING, QR, EXPIRED, PASSKEY, NEEDS_DISPLAY, MESSAGE, PHONE, PAIRING = (
    "loading", "qr", "expired", "passkey", "needs_display", "message", "phone", "pairing")
_PAGE = {LOADING: 0, QR: 1, EXPIRED: 1, PASSKEY: 2, NEEDS_DISPLAY: 2, MESSAGE: 3, PHONE: 4, PAIRING: 5}

STAGE_SECONDS = 120      # WhatsApp's timeout per passkey stage (reference §4)
PAIRING_CODE_SECONDS = 180  # a pairing code lives about 3 minutes on the real site

SCAN_STEPS = (
    "Open <b>WhatsApp</b> on your phone",
    "Tap <b>Menu</b> or <b>Settings</b> → <b>Linked devices</b>",
    "Tap <b>Link a device</b>",
    "Point your phone at this screen to scan the code",
)
PASSKEY_STEPS = (
    "Press <b>Continue</b> in the WhatsApp window",
    "Confirm it is you when Chrome asks for your passkey (your phone's screen lock, or its QR code)",
    "Check that the code is the same in the WhatsApp window and on your phone, then confirm it",
)
PHONE_STEPS = (
    "Type your phone number here, with the country code",
    "On your phone: <b>WhatsApp</b> → <b>Linked devices</b> → <b>Link a device</b>",
    "Tap <b>Link with phone number instead</b>",
    "Type the 8-character code shown here on your phone",
)
# Which PASSKEY_STEPS row each stage is on.
_STAGE_ROW = {LinkStep.PROMPT: 0, LinkStep.ERROR: 0, LinkStep.WAITING_FOR_PHONE: 1, LinkStep.CODE_MATCHING: 2}

_STAGE_TEXT = {
    LinkStep.PROMPT: ("Continue in the WhatsApp window",
                      "Your phone scanned the code. WhatsApp now asks this computer for a passkey, in its "
                      "own window that came on screen. Press <b>Continue</b> there."),
    LinkStep.WAITING_FOR_PHONE: ("Waiting for your phone",
                                 "Follow the steps Chrome shows: confirm with your phone (it says "
                                 "“Continue on WhatsApp Web”) or with this computer's passkey."),
    LinkStep.CODE_MATCHING: ("Check the code",
                             "Is this the code your phone and the WhatsApp window show? Then confirm it in "
                             "the WhatsApp window and on your phone."),
    LinkStep.ERROR: ("That did not work",
                     "WhatsApp could not check the passkey. Press <b>Continue</b> in the WhatsApp window "
                     "to try again."),
}
NEEDS_DISPLAY_TEXT = (
    "WhatsApp asks this account for a passkey, which needs a browser window on a screen, and "
    "none can be shown here.<br><br>Ways out: link with your phone number instead; or link once "
    "on a computer with a screen and copy the session here with <tt>linda-desktop import</tt>.")


def _font(widget: QWidget, scale: float, bold: bool = False) -> QFont:
    font = QFont(widget.font())
    font.setPointSizeF(max(8.0, font.pointSizeF() * scale))
    font.setBold(bold)
    return font


def _code_font(widget: QWidget, scale: float) -> QFont:
    font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    font.setPointSizeF(max(12.0, QFont(widget.font()).pointSizeF() * scale))
    font.setBold(True)
    font.setLetterSpacing(QFont.SpacingType.PercentageSpacing, 110)
    return font


def _muted(label: QLabel) -> QLabel:
    palette = label.palette()
    palette.setColor(QPalette.ColorRole.WindowText, palette.color(QPalette.ColorRole.PlaceholderText))
    label.setPalette(palette)
    return label


def _link_button(text: str) -> QPushButton:
    button = QPushButton(text)
    button.setFlat(True)
    button.setCursor(Qt.CursorShape.PointingHandCursor)
    button.setStyleSheet("QPushButton { color: #128c5e; text-decoration: underline; border: none;"
                         " padding: 2px 0; text-align: left; }")
    return button


class QrWindow(QWidget):
    """Signals ask the app to act; the window itself never talks to the service."""

    showNewQrRequested = Signal()
    finishLinkRequested = Signal()       # bring the passkey step's browser window on screen again
    pairingCodeRequested = Signal(str)   # digits with the country code ("31612345678")
    linked = Signal()  # connected after the owner was shown a code (window hid itself)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setObjectName("qrWindow")
        self.setWindowTitle(f"Link WhatsApp — {APP_NAME}")
        self.setWindowIcon(app_icon())
        self._payload: str | None = None
        self._state = SessionState.STARTING
        self._reason: str | None = None
        self._code: StateCode | None = None
        self._stage: LinkStep | None = None
        self._stage_since = 0.0
        self._verification: str | None = None
        self._mode = LOADING
        self._headline = "wait"             # which steps the left column shows
        self._use_phone = False            # the owner chose "Link with phone number instead"
        self._phone: str | None = None
        self._pairing_code: str | None = None
        self._pairing_since = 0.0
        self._pairing_expired = False
        self._shown_for_linking = False
        self._steps: tuple[str, ...] | None = None
        self._rows: list[StepRow] = []
        self.stage_seconds = STAGE_SECONDS
        self.pairing_code_seconds = PAIRING_CODE_SECONDS
        self._clock = QTimer(self)
        self._clock.setInterval(1000)
        self._clock.timeout.connect(self._tick)
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
        self.note = _muted(QLabel())
        self.note.setWordWrap(True)
        holder.addWidget(self.note)
        self.switch_button = _link_button("Link with phone number instead")
        self.switch_button.setObjectName("switchButton")
        self.switch_button.clicked.connect(self._switch_method)
        holder.addWidget(self.switch_button, 0, Qt.AlignmentFlag.AlignLeft)
        self.steps_holder.setMinimumWidth(340)
        body.addWidget(self.steps_holder, 1, Qt.AlignmentFlag.AlignTop)
        self._body = body

        self.pages = QStackedWidget()
        self.pages.setObjectName("pages")
        self.pages.setStyleSheet("QStackedWidget#pages { background: palette(base); border-radius: 10px; }")
        self.pages.setFixedSize(QSize(340, 340))
        self.pages.addWidget(self._build_loading_page())
        self.pages.addWidget(self._build_qr_page())
        self.pages.addWidget(self._build_passkey_page())
        self.pages.addWidget(self._build_message_page())
        self.pages.addWidget(self._build_phone_page())
        self.pages.addWidget(self._build_pairing_page())
        body.addWidget(self.pages, 0, Qt.AlignmentFlag.AlignTop)
        outer.addLayout(body, 1)

        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        line.setFrameShadow(QFrame.Shadow.Sunken)
        outer.addWidget(line)
        footer = QHBoxLayout()
        self.status = _muted(QLabel())
        self.status.setObjectName("statusLine")
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

    def _build_passkey_page(self) -> QWidget:
        page, layout = self._page()
        layout.setContentsMargins(24, 20, 24, 20)
        layout.setSpacing(10)
        top = QHBoxLayout()
        self.passkey_icon = QLabel()
        self.passkey_icon.setPixmap(app_icon().pixmap(QSize(44, 44)))
        self.passkey_spinner = Spinner(36)
        top.addWidget(self.passkey_icon)
        top.addWidget(self.passkey_spinner)
        top.addStretch(1)
        self.passkey_heading = QLabel()
        self.passkey_heading.setFont(_font(self, 1.2, bold=True))
        self.passkey_heading.setWordWrap(True)
        self.passkey_text = QLabel()
        self.passkey_text.setWordWrap(True)
        self.passkey_text.setTextFormat(Qt.TextFormat.RichText)
        self.verification_label = QLabel()
        self.verification_label.setObjectName("verificationCode")
        self.verification_label.setFont(_code_font(self, 2.3))
        self.verification_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.verification_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.verification_label.setStyleSheet("QLabel#verificationCode { background: #e6f4ea; color: #0b3d24;"
                                              " border-radius: 8px; padding: 10px; }")
        self.passkey_timer = _muted(QLabel())
        self.passkey_timer.setObjectName("passkeyTimer")
        self.passkey_timer.setWordWrap(True)
        self.show_browser_button = QPushButton("Show the WhatsApp window")
        self.show_browser_button.setObjectName("showBrowserButton")
        self.show_browser_button.clicked.connect(self._ask_finish)
        self.passkey_phone_button = primary_button("Link with phone number instead")
        self.passkey_phone_button.clicked.connect(self._choose_phone)
        layout.addLayout(top)
        layout.addWidget(self.passkey_heading)
        layout.addWidget(self.passkey_text)
        layout.addWidget(self.verification_label)
        layout.addStretch(1)
        layout.addWidget(self.passkey_timer)
        layout.addWidget(self.show_browser_button, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.passkey_phone_button, 0, Qt.AlignmentFlag.AlignLeft)
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

    def _build_phone_page(self) -> QWidget:
        page, layout = self._page()
        layout.setContentsMargins(24, 20, 24, 20)
        layout.setSpacing(10)
        heading = QLabel("Link with your phone number")
        heading.setFont(_font(self, 1.2, bold=True))
        heading.setWordWrap(True)
        label = QLabel("Your WhatsApp number, starting with the country code:")
        label.setWordWrap(True)
        self.phone_edit = QLineEdit()
        self.phone_edit.setObjectName("phoneEdit")
        self.phone_edit.setPlaceholderText("+31 6 1234 5678")
        self.phone_edit.setFont(_font(self, 1.25))
        self.phone_edit.setMinimumHeight(38)
        self.phone_edit.setInputMethodHints(Qt.InputMethodHint.ImhDialableCharactersOnly)
        self.phone_edit.returnPressed.connect(self._ask_pairing_code)
        label.setBuddy(self.phone_edit)
        self.phone_error: QLabel = QLabel()
        self.phone_error.setObjectName("phoneError")
        self.phone_error.setWordWrap(True)
        self.phone_error.setStyleSheet("QLabel#phoneError { color: #b3261e; }")
        self.phone_error.hide()
        self.phone_edit.textEdited.connect(lambda _text: self.phone_error.hide())
        self.get_code_button = primary_button("Get a code")
        self.get_code_button.clicked.connect(self._ask_pairing_code)
        layout.addWidget(heading)
        layout.addWidget(label)
        layout.addWidget(self.phone_edit)
        layout.addWidget(self.phone_error)
        layout.addStretch(1)
        layout.addWidget(self.get_code_button, 0, Qt.AlignmentFlag.AlignLeft)
        return page

    def _build_pairing_page(self) -> QWidget:
        page, layout = self._page()
        layout.setContentsMargins(20, 20, 20, 20)
        layout.setSpacing(10)
        self.pairing_heading = QLabel("Enter this code on your phone")
        self.pairing_heading.setFont(_font(self, 1.2, bold=True))
        self.pairing_heading.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.pairing_code_label = QLabel()
        self.pairing_code_label.setObjectName("pairingCode")
        self.pairing_code_label.setFont(_code_font(self, 2.6))
        self.pairing_code_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.pairing_code_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.pairing_code_label.setMinimumHeight(84)
        self.pairing_for = _muted(QLabel())
        self.pairing_for.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.pairing_timer = _muted(QLabel())
        self.pairing_timer.setObjectName("pairingTimer")
        self.pairing_timer.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.pairing_timer.setWordWrap(True)
        self.new_pairing_button = primary_button("Get a new code")
        self.new_pairing_button.clicked.connect(self._ask_new_pairing_code)
        layout.addStretch(1)
        layout.addWidget(self.pairing_heading)
        layout.addWidget(self.pairing_code_label)
        layout.addWidget(self.pairing_for)
        layout.addWidget(self.pairing_timer)
        layout.addWidget(self.new_pairing_button, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(1)
        return page

    def _set_steps(self, steps: tuple[str, ...]) -> None:
        if self._steps == steps:
            return
        while self.steps_box.count():
            item = self.steps_box.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.hide()
                widget.deleteLater()
        self._rows = [StepRow(number, html) for number, html in enumerate(steps, start=1)]
        for row in self._rows:
            self.steps_box.addWidget(row)
        self._steps = steps
        # Nothing to do for the owner: centre the progress/message instead of an empty column.
        self.steps_holder.setVisible(bool(steps))
        align = Qt.AlignmentFlag.AlignTop
        if not steps:
            align |= Qt.AlignmentFlag.AlignHCenter
        self._body.setAlignment(self.pages, align)

    def _mark_steps(self, current: int, *, rest_too: bool = False) -> None:
        """Done before ``current``; ``current`` highlighted and the rest still to do, or, with
        ``rest_too``, every step from ``current`` on is the owner's now (nothing highlighted)."""
        for index, row in enumerate(self._rows):
            if index < current:
                row.set_progress(DONE)
            elif index == current or rest_too:
                row.set_progress(CURRENT, bold=not rest_too)
            else:
                row.set_progress(TODO)

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

    @property
    def stage(self) -> LinkStep | None:
        return self._stage if self._mode == PASSKEY else None

    @property
    def pairing_code(self) -> str | None:
        return self._pairing_code

    def _switch(self, mode: str) -> None:
        self._mode = mode
        self.pages.setCurrentIndex(_PAGE[mode])
        self.expired_box.setVisible(mode == EXPIRED)
        self.qr_view.set_faded(mode == EXPIRED)
        if mode == EXPIRED:
            self._place_expired_box()
        scanning = mode in (QR, EXPIRED) or (mode == LOADING and self._headline == "scan")
        phoning = mode in (PHONE, PAIRING) or (mode == LOADING and self._headline == "phone")
        self.switch_button.setVisible(scanning or phoning)
        self.switch_button.setText("Scan a QR code instead" if phoning else "Link with phone number instead")
        self.status.setText(self._status_words(mode))
        if mode in (PASSKEY, PAIRING):
            self._clock.start()
            self._tick()
        else:
            self._clock.stop()

    def _status_words(self, mode: str) -> str:
        if mode == PHONE:
            return "Needs linking — type your phone number"
        if mode == LOADING and self._headline == "phone":
            return "Needs linking — asking WhatsApp for a pairing code…"
        if mode == PAIRING and self._pairing_expired:
            return "The pairing code expired — get a new one"
        if mode == PAIRING:
            return "Enter the pairing code on your phone"
        return state_words(self._state, self._reason, self._code, self.stage)

    def _show_loading(self, text: str, kind: str = "scan") -> None:
        self.loading_label.setText(text)
        self._set_headline(kind)
        self._switch(LOADING)

    def _show_message(self, text: str) -> None:
        self.message_label.setText(text)
        self._set_headline("wait")
        self._switch(MESSAGE)

    def _set_headline(self, kind: str) -> None:
        """``scan``: the four steps; ``passkey``, ``phone``: their steps; ``wait``: nothing to do."""
        self._headline = kind
        if kind == "passkey":
            self._set_steps(PASSKEY_STEPS)
            self.title.setText("Finish linking on this computer")
            self.subtitle.setText("WhatsApp asks to confirm this computer with a passkey, in the WhatsApp "
                                  "window on your screen. This window says what to do at each step.")
            self.note.setText("WhatsApp waits about 2 minutes for each step. If it stops waiting, a new "
                              "code appears here to scan.")
            return
        if kind == "phone":
            self._set_steps(PHONE_STEPS)
            self.title.setText("Link with your phone number")
            self.subtitle.setText("Instead of scanning a code, type a code on your phone.")
            self.note.setText("A code works for about 3 minutes; you can get a new one at any time.")
            return
        if kind == "wait":
            self._set_steps(())
            if self._state == SessionState.RESTORING:
                self.title.setText("Restoring your session")
                self.subtitle.setText("This takes a few seconds. You do not need your phone for this.")
            elif self._code in NO_QR_CODES:
                self.title.setText("WhatsApp cannot be linked right now")
                self.subtitle.setText("Linking again would not help; the reason is below.")
            else:
                self.title.setText("WhatsApp on this computer")
                self.subtitle.setText(f"{APP_NAME} reconnects by itself; you do not need to do anything.")
            return
        self._set_steps(SCAN_STEPS if kind == "scan" else ())
        self.note.setText("The code changes every few seconds. Keep this window open until "
                          "your phone says the device is linked.")
        if kind == "needs_display":
            self.title.setText("Finish linking with a passkey")
            self.subtitle.setText("Your phone scanned the code, but this account must confirm the link "
                                  "with a passkey.")
        elif self._code == StateCode.LINK_EXPIRED:
            self.title.setText("Scan a new code")
            self.subtitle.setText("The last step took too long or was cancelled, so WhatsApp made a new "
                                  "code. Scan it with your phone to try again.")
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

    def _show_code(self) -> None:
        self._set_headline("scan")
        self._switch(QR)

    def _show_scan(self) -> None:
        if self.qr_view.has_code():
            self._show_code()
        elif self._code == StateCode.LINK_EXPIRED:
            self._show_loading("Getting a new code from WhatsApp…")
        else:
            self._show_loading("Getting a code from WhatsApp…")

    def _show_passkey(self, stage: LinkStep, verification: str | None) -> None:
        if stage != self._stage or self._mode != PASSKEY:
            self._stage_since = time.monotonic()
        self._stage = stage
        self._verification = format_pairing_code(verification) if verification else None
        heading, text = _STAGE_TEXT[stage]
        self.passkey_heading.setText(heading)
        self.passkey_text.setText(text)
        matching = stage == LinkStep.CODE_MATCHING and bool(self._verification)
        self.verification_label.setVisible(matching)
        self.verification_label.setText(self._verification or "")
        self.passkey_icon.setVisible(stage != LinkStep.WAITING_FOR_PHONE)
        self.passkey_spinner.setVisible(stage == LinkStep.WAITING_FOR_PHONE)
        self.passkey_timer.show()
        self.show_browser_button.show()
        self.show_browser_button.setEnabled(True)
        self.show_browser_button.setText("Show the WhatsApp window")
        self.passkey_phone_button.hide()
        self._set_headline("passkey")
        self._mark_steps(_STAGE_ROW[stage])
        self._switch(PASSKEY)

    def _show_needs_display(self) -> None:
        self._stage = None
        self.passkey_heading.setText("WhatsApp asks for a passkey")
        self.passkey_text.setText(NEEDS_DISPLAY_TEXT)
        for widget in (self.verification_label, self.passkey_spinner, self.passkey_timer, self.show_browser_button):
            widget.hide()
        self.passkey_icon.show()
        self.passkey_phone_button.show()
        self._set_headline("needs_display")
        self._switch(NEEDS_DISPLAY)

    def _show_phone(self, error: str = "") -> None:
        self._use_phone = True
        self._set_headline("phone")
        self._mark_steps(0)
        if self._phone and not self.phone_edit.text():
            self.phone_edit.setText(format_phone(self._phone))
        self.phone_error.setText(error)
        self.phone_error.setVisible(bool(error))
        self.get_code_button.setEnabled(True)
        self._switch(PHONE)
        self.phone_edit.setFocus()

    def _show_pairing(self) -> None:
        self._set_headline("phone")
        self._mark_steps(1, rest_too=True)
        self.pairing_code_label.setText(self._pairing_code or "")
        self.pairing_for.setText(f"for {format_phone(self._phone)}" if self._phone else "")
        self._render_pairing_expiry()
        self._switch(PAIRING)

    def _render_pairing_expiry(self) -> None:
        expired = self._pairing_expired
        self.pairing_heading.setText("This code expired" if expired else "Enter this code on your phone")
        colour = "#9aa3ab" if expired else "#0b3d24"
        self.pairing_code_label.setStyleSheet(f"QLabel#pairingCode {{ background: #e6f4ea; color: {colour};"
                                              " border-radius: 8px; padding: 12px 6px; }")
        self.new_pairing_button.setVisible(expired)

    def set_qr(self, payload: str, idle: bool = False) -> None:
        """A new code (or the page stopped rotating: ``idle``)."""
        if payload:
            self._payload = payload
            self.qr_view.set_payload(payload)
        if self._mode in (PASSKEY, NEEDS_DISPLAY, PHONE, PAIRING) or not self.qr_view.has_code():
            return  # kept for later; the owner is busy with another step
        if self._code in NO_QR_CODES:
            return  # a QR cannot help a banned or locked account
        if self._use_phone and self._mode == LOADING:
            return
        self._set_headline("scan")
        if idle:
            self.note.setText("Codes stop changing after a few minutes when nobody scans them. "
                              "Ask for a new one when your phone is ready.")
        self._switch(EXPIRED if idle else QR)

    def set_pairing_code(self, code: str) -> None:
        """WhatsApp gave a pairing code: show it large, in two groups of four."""
        self._use_phone = True
        self._pairing_code = format_pairing_code(code)
        self._pairing_since = time.monotonic()
        self._pairing_expired = False
        self._show_pairing()

    def pairing_failed(self, message: str) -> None:
        """The number was refused or no code came: back to the number, with why."""
        self._show_phone(message or "WhatsApp gave no code. Check the number and try again.")

    def set_state(self, event: StateChanged) -> None:
        self._state, self._reason, self._code = event.state, event.reason, event.code
        state = event.state
        stage = link_stage(event)
        if state == SessionState.CONNECTED:
            was_linking = self._shown_for_linking and self.isVisible()
            self._forget_link()
            self._show_loading("Connected", "wait")
            if self.isVisible():
                self.hide()
            if was_linking:
                self.linked.emit()
            return
        if stage is None:
            self._stage = None
        if event.code in NO_QR_CODES:
            self._show_message(state_words(state, event.reason, event.code))
        elif stage is not None:
            if self._mode != PASSKEY:
                # The page regenerated its ADV secret: the code on screen no longer links (reference §4).
                self._payload = None
                self.qr_view.set_payload(None)
            self._show_passkey(stage, event.details.get("verification_code"))
        elif event.code == StateCode.PASSKEY_NEEDS_DISPLAY:
            self._payload = None  # stale here too: the scan already happened
            self.qr_view.set_payload(None)
            self._show_needs_display()
        elif state in (SessionState.NEEDS_LINK, SessionState.LOGGED_OUT):
            self._show_link_state(event.code)
        elif state == SessionState.RESTORING:
            self._show_loading("Restoring your session…", "wait")
        elif state in (SessionState.STARTING, SessionState.BROWSER_CRASHED):
            self._show_loading(state_words(state, event.reason, event.code), "wait")
        else:  # offline, conflict, error
            self._show_message(state_words(state, event.reason, event.code))
        if state in (SessionState.NEEDS_LINK, SessionState.LOGGED_OUT) and self.isVisible():
            self._shown_for_linking = True

    def _show_link_state(self, code: StateCode | None) -> None:
        if code == StateCode.LINK_EXPIRED and self._use_phone and self._pairing_code:
            self._pairing_expired = True
            self._show_pairing()
            self.pairing_timer.setText("Codes work for about 3 minutes. Get a new one when your phone is ready.")
        elif code == StateCode.LINK_EXPIRED:
            self._use_phone = False
            self._show_scan()
        elif code == StateCode.PAIRING_CODE or self._use_phone:
            if self._mode in (PHONE, PAIRING) or (self._mode == LOADING and self._headline == "phone"):
                self.status.setText(state_words(self._state, self._reason, self._code))
            elif self._pairing_code:
                self._show_pairing()
            else:
                self._show_phone()
        else:
            self._show_scan()

    def _forget_link(self) -> None:
        self._payload = None
        self.qr_view.set_payload(None)
        self._shown_for_linking = False
        self._use_phone = False
        self._pairing_code = None
        self._stage = None

    def begin_relink(self) -> None:
        """The owner confirmed Re-link: show progress until the first code arrives."""
        self._forget_link()
        self._show_loading("Preparing a new code…")
        self.bring_forward()

    def bring_forward(self) -> None:
        if self._state in (SessionState.NEEDS_LINK, SessionState.LOGGED_OUT):
            self._shown_for_linking = True
        self.show()
        self.setWindowState(self.windowState() & ~Qt.WindowState.WindowMinimized)
        self.raise_()
        self.activateWindow()

    # ---- timers -----------------------------------------------------------------------------

    def _tick(self) -> None:
        now = time.monotonic()
        if self._mode == PASSKEY:
            left = int(self.stage_seconds - (now - self._stage_since))
            if left > 0:
                self.passkey_timer.setText(f"WhatsApp waits {left // 60}:{left % 60:02d} more for this step.")
            else:
                self.passkey_timer.setText("WhatsApp stopped waiting for this step: a new code to scan "
                                           "comes up in a moment.")
        elif self._mode == PAIRING and not self._pairing_expired:
            left = int(self.pairing_code_seconds - (now - self._pairing_since))
            if left <= 0:
                self._pairing_expired = True
                self._render_pairing_expiry()
                self.status.setText(self._status_words(PAIRING))
                self.pairing_timer.setText("Codes work for about 3 minutes. Get a new one when your phone "
                                           "is ready.")
            else:
                self.pairing_timer.setText(f"Works for about {left // 60}:{left % 60:02d} more.")
        elif self._mode == PAIRING:
            self.pairing_timer.setText("Codes work for about 3 minutes. Get a new one when your phone is ready.")

    # ---- actions ----------------------------------------------------------------------------

    def _ask_new_code(self) -> None:
        self._show_loading("Getting a new code…")
        self.showNewQrRequested.emit()

    def _ask_finish(self) -> None:
        self.show_browser_button.setEnabled(False)
        self.show_browser_button.setText("Bringing it forward…")
        self.finishLinkRequested.emit()
        QTimer.singleShot(2000, self._rearm_finish)

    def _rearm_finish(self) -> None:
        self.show_browser_button.setEnabled(True)
        self.show_browser_button.setText("Show the WhatsApp window")

    def finish_failed(self, message: str) -> None:
        """The WhatsApp window could not be brought forward: say why, keep the button usable."""
        self._rearm_finish()
        if message:
            self.status.setText(message)

    def _switch_method(self) -> None:
        if self._mode in (PHONE, PAIRING) or self._headline == "phone":
            self._choose_qr()
        else:
            self._choose_phone()

    def _choose_phone(self) -> None:
        if self._pairing_code and not self._pairing_expired:
            self._use_phone = True
            self._show_pairing()
        else:
            self._show_phone()

    def _choose_qr(self) -> None:
        self._use_phone = False
        if self._code == StateCode.PAIRING_CODE or self._pairing_code:
            # The page shows its phone-number screen now: ask it for a QR again.
            self._pairing_code = None
            self._payload = None
            self.qr_view.set_payload(None)
            self._show_loading("Getting a code from WhatsApp…")
            self.showNewQrRequested.emit()
        else:
            self._show_scan()

    def _ask_pairing_code(self) -> None:
        try:
            digits = normalize_phone(self.phone_edit.text())
        except PhoneNumberError as exc:
            self.phone_error.setText(str(exc))
            self.phone_error.show()
            self.phone_edit.setFocus()
            return
        self._phone = digits
        self._show_loading(f"Asking WhatsApp for a code for {format_phone(digits)}…", "phone")
        self.pairingCodeRequested.emit(digits)

    def _ask_new_pairing_code(self) -> None:
        if not self._phone:
            self._show_phone()
            return
        self._show_loading(f"Asking WhatsApp for a new code for {format_phone(self._phone)}…", "phone")
        self.pairingCodeRequested.emit(self._phone)

    # ---- Qt plumbing --------------------------------------------------------------------------

    def _place_expired_box(self) -> None:
        self.expired_box.setGeometry(self.qr_view.rect())
        self.expired_box.raise_()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._place_expired_box()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._place_expired_box()
        if self._state in (SessionState.NEEDS_LINK, SessionState.LOGGED_OUT):
            self._shown_for_linking = True

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            self.hide()
            return
        super().keyPressEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:
        event.ignore()  # closing only hides: the app keeps running in the tray
        self.hide()
