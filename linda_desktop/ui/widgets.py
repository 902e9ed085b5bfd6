"""Small shared widgets: a spinner, numbered step rows, a QR code view."""

from __future__ import annotations

import segno
from PySide6.QtCore import QRect, QRectF, QSize, Qt, QTimer
from PySide6.QtGui import QColor, QImage, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSizePolicy, QWidget

from linda_desktop.ui import qt_compat  # noqa: F401 - must load before any emit

QUIET_ZONE = 4  # modules of white around the code (the QR standard asks for 4)
ACCENT = "#16a372"  # the app's green (step numbers, spinner, primary buttons)


def qr_matrix(payload: str) -> list[list[bool]]:
    """The code's modules (True = dark), without the quiet zone."""
    code = segno.make(payload, error="l", micro=False)
    return [[bool(v) for v in row] for row in code.matrix]


def qr_module_image(payload: str, *, border: int = QUIET_ZONE) -> QImage:
    """One pixel per module, with a white quiet zone. Scale it with nearest-neighbour only."""
    matrix = qr_matrix(payload)
    size = len(matrix) + 2 * border
    image = QImage(size, size, QImage.Format.Format_RGB32)
    image.fill(QColor("white"))
    dark = QColor("#111111").rgb()
    for y, row in enumerate(matrix):
        for x, on in enumerate(row):
            if on:
                image.setPixel(x + border, y + border, dark)
    return image


def qr_image(payload: str, module_px: int = 8, *, border: int = QUIET_ZONE) -> QImage:
    """The code as a crisp image, ``module_px`` pixels per module."""
    base = qr_module_image(payload, border=border)
    return base.scaled(base.width() * module_px, base.height() * module_px,
                       Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.FastTransformation)


class QrView(QWidget):
    """Paints the code at the largest whole number of pixels per module that fits, centred."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self._faded = False
        self.setMinimumSize(QSize(232, 232))
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_payload(self, payload: str | None) -> None:
        self._image = qr_module_image(payload) if payload else None
        self.update()

    def set_faded(self, faded: bool) -> None:
        self._faded = faded
        self.update()

    def has_code(self) -> bool:
        return self._image is not None

    def code_rect(self) -> QRect:
        """Where the code (with its quiet zone) is painted, in widget coordinates."""
        if self._image is None:
            return QRect()
        n = self._image.width()
        px = max(1, min(self.width(), self.height()) // n)
        side = n * px
        return QRect((self.width() - side) // 2, (self.height() - side) // 2, side, side)

    def sizeHint(self) -> QSize:
        return QSize(296, 296)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        if self._image is None:
            painter.end()
            return
        rect = self.code_rect()
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        if self._faded:
            painter.setOpacity(0.12)
        painter.drawImage(rect, self._image)
        painter.end()


class Spinner(QWidget):
    """An indeterminate progress arc; animates only while visible."""

    def __init__(self, size: int = 40, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._angle = 0
        self._timer = QTimer(self)
        self._timer.setInterval(30)
        self._timer.timeout.connect(self._tick)
        self.setFixedSize(size, size)

    def _tick(self) -> None:
        self._angle = (self._angle + 12) % 360
        self.update()

    def showEvent(self, event) -> None:
        self._timer.start()
        super().showEvent(event)

    def hideEvent(self, event) -> None:
        self._timer.stop()
        super().hideEvent(event)

    @property
    def spinning(self) -> bool:
        return self._timer.isActive()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        width = max(3.0, self.width() / 10)
        rect = QRectF(width, width, self.width() - 2 * width, self.height() - 2 * width)
        track = QColor(self.palette().color(self.foregroundRole()))
        track.setAlphaF(0.12)
        painter.setPen(QPen(track, width))
        painter.drawEllipse(rect)
        pen = QPen(QColor(ACCENT), width)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        painter.setPen(pen)
        painter.drawArc(rect, -self._angle * 16, 100 * 16)
        painter.end()


TODO, CURRENT, DONE = "todo", "current", "done"


class StepRow(QWidget):
    """"(1) Open WhatsApp on your phone" with a round number badge."""

    def __init__(self, number: int, html: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(12)
        self.number = number
        self.badge = QLabel(str(number))
        self.badge.setObjectName("stepNumber")
        self.badge.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.badge.setFixedSize(26, 26)
        self.text = QLabel(html)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.text.setWordWrap(True)
        layout.addWidget(self.badge, 0, Qt.AlignmentFlag.AlignTop)
        layout.addWidget(self.text, 1)
        self.progress = ""
        self.set_progress(CURRENT)

    def set_progress(self, progress: str, *, bold: bool = False) -> None:
        """``done`` (a check mark), ``current`` (green; ``bold`` words) or ``todo`` (grey)."""
        self.progress = progress
        colour = "#9aa3ab" if progress == TODO else ACCENT
        self.badge.setText("✓" if progress == DONE else str(self.number))
        self.badge.setStyleSheet(f"QLabel#stepNumber {{ background: {colour}; color: white; border-radius: 13px;"
                                 " font-weight: bold; }")
        font = self.text.font()
        font.setBold(progress == CURRENT and bold)
        self.text.setFont(font)
        self.text.setEnabled(progress != TODO)


PRIMARY_STYLE = (
    f"QPushButton {{ background: {ACCENT}; color: white; border: none; border-radius: 6px;"
    " padding: 8px 18px; font-weight: bold; }"
    " QPushButton:hover { background: #13925f; }"
    " QPushButton:pressed { background: #0f7a50; }"
    " QPushButton:disabled { background: #9fcfb9; color: #f3f3f3; }"
)


def primary_button(text: str) -> QPushButton:
    """The one button a page wants pressed (green, like the steps' numbers)."""
    button = QPushButton(text)
    button.setObjectName("primaryButton")
    button.setStyleSheet(PRIMARY_STYLE)
    button.setDefault(True)
    button.setMinimumHeight(36)
    button.setCursor(Qt.CursorShape.PointingHandCursor)
    return button
