"""The linking window: a real QR drawn from the payload, rotation, expiry, stalled link, closing."""

from __future__ import annotations

import logging

import pytest
import segno
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from linda_desktop.base.events import SessionState, StateChanged
from linda_desktop.ui import qr_window as qw
from tests.screenshots.preview import sample_payload
from linda_desktop.ui.qr_window import QrWindow

PAYLOAD = sample_payload(1)
OTHER = sample_payload(2)


def decode_modules(image: QImage) -> tuple[list[list[bool]], int, tuple[int, int, int, int]]:
    """Read the modules back from pixels: bounding box of dark pixels = the symbol; sample the
    centre of every module. Returns (matrix, pixels per module, bbox)."""
    image = image.convertToFormat(QImage.Format.Format_RGB32)
    dark = lambda x, y: QImage.pixelColor(image, x, y).lightness() < 100  # noqa: E731
    xs, ys = [], []
    for y in range(image.height()):
        for x in range(image.width()):
            if dark(x, y):
                xs.append(x)
                ys.append(y)
    assert xs, "no dark pixels: no code on screen"
    left, right, top, bottom = min(xs), max(xs), min(ys), max(ys)
    return _sample(image, dark, left, top, right, bottom)


def _sample(image, dark, left, top, right, bottom):
    size = right - left + 1
    n = len(segno.make(PAYLOAD, error="l").matrix)  # same version for both sample payloads
    assert size % n == 0, f"{size} px is not a whole number of {n} modules: not crisp"
    px = size // n
    matrix = [[dark(left + c * px + px // 2, top + r * px + px // 2) for c in range(n)] for r in range(n)]
    return matrix, px, (left, top, right, bottom)


def expected(payload: str) -> list[list[bool]]:
    return [[bool(v) for v in row] for row in segno.make(payload, error="l", micro=False).matrix]


@pytest.fixture
def window(qtbot):
    w = QrWindow()
    qtbot.addWidget(w)
    return w


def show_code(qtbot, window: QrWindow, payload: str = PAYLOAD) -> None:
    window.set_state(StateChanged(SessionState.NEEDS_LINK))
    window.set_qr(payload)
    window.bring_forward()
    qtbot.waitExposed(window)


def test_the_code_on_screen_is_the_payload_module_for_module(qtbot, window):
    show_code(qtbot, window)
    assert window.mode == qw.QR
    matrix, px, (left, top, right, bottom) = decode_modules(window.qr_view.grab().toImage())
    assert matrix == expected(PAYLOAD)
    assert px >= 4  # big enough for a phone camera
    # Every module is a solid square of px×px pixels (nearest-neighbour, no smoothing).
    image = window.qr_view.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    greys = {image.pixelColor(x, y).lightness() for y in range(top, bottom + 1, 3)
             for x in range(left, right + 1, 3)}
    assert all(g < 40 or g > 220 for g in greys), "blurred edges: the code was scaled smoothly"
    # A white quiet zone of at least 4 modules around it.
    for x in range(max(0, left - 4 * px), left):
        assert image.pixelColor(x, (top + bottom) // 2).lightness() > 220


def test_the_window_follows_each_rotation(qtbot, window):
    show_code(qtbot, window)
    window.set_qr(OTHER)
    matrix, _, _ = decode_modules(window.qr_view.grab().toImage())
    assert matrix == expected(OTHER) and matrix != expected(PAYLOAD)
    assert window.payload == OTHER


def test_instructions_are_the_four_steps(qtbot, window):
    show_code(qtbot, window)
    steps = window.steps
    assert len(steps) == 4
    assert "Open <b>WhatsApp</b> on your phone" in steps[0]
    assert "<b>Menu</b> or <b>Settings</b> → <b>Linked devices</b>" in steps[1]
    assert "<b>Link a device</b>" in steps[2]
    assert "Point your phone at this screen" in steps[3]
    assert window.steps_holder.isVisible()


def test_an_idle_page_greys_the_code_and_offers_a_new_one(qtbot, window):
    show_code(qtbot, window)
    window.set_qr(PAYLOAD, idle=True)
    assert window.mode == qw.EXPIRED
    assert window.expired_box.isVisible() and window.expired_label.text() == "This code expired"
    assert window.new_code_button.isVisible() and window.new_code_button.text() == "Show a new code"
    # Greyed out: the finder pattern in the corner is no longer dark enough to scan.
    image = window.qr_view.grab().toImage()
    rect = window.qr_view.code_rect()
    px = rect.width() // (len(expected(PAYLOAD)) + 8)
    corner = image.pixelColor(rect.x() + 4 * px + px // 2, rect.y() + 4 * px + px // 2)
    assert corner.lightness() > 180
    with qtbot.waitSignal(window.showNewQrRequested, timeout=1000):
        qtbot.mouseClick(window.new_code_button, Qt.MouseButton.LeftButton)
    assert window.mode == qw.LOADING and window.spinner.spinning
    window.set_qr(OTHER)  # the page rotated again
    assert window.mode == qw.QR and not window.expired_box.isVisible()
    assert decode_modules(window.qr_view.grab().toImage())[0] == expected(OTHER)


def test_a_stalled_link_offers_to_finish_in_a_browser_window(qtbot, window):
    show_code(qtbot, window)
    window.set_state(StateChanged(SessionState.NEEDS_LINK, reason="link_stalled: passkey asked"))
    assert window.mode == qw.STALLED
    assert window.title.text() == "Finish linking on this computer"
    assert window.finish_button.isVisible() and window.finish_button.text() == "Finish in a browser window"
    window.set_qr(OTHER)  # a late rotation must not cover the stalled page
    assert window.mode == qw.STALLED
    with qtbot.waitSignal(window.finishInBrowserRequested, timeout=1000):
        qtbot.mouseClick(window.finish_button, Qt.MouseButton.LeftButton)
    assert not window.finish_button.isEnabled()
    window.finish_failed("Could not open a browser window")
    assert window.finish_button.isEnabled()
    assert window.status.text() == "Could not open a browser window"


def test_closes_by_itself_once_connected_and_says_linked(qtbot, window):
    show_code(qtbot, window)
    with qtbot.waitSignal(window.linked, timeout=1000):
        window.set_state(StateChanged(SessionState.CONNECTED, account="+31 6 1234 5678"))
    assert not window.isVisible()
    assert window.payload is None and not window.qr_view.has_code()


def test_connected_without_having_shown_a_code_says_nothing(qtbot, window):
    window.set_state(StateChanged(SessionState.RESTORING))
    with qtbot.assertNotEmitted(window.linked):
        window.set_state(StateChanged(SessionState.CONNECTED))


def test_logged_out_asks_to_link_again(qtbot, window):
    window.set_state(StateChanged(SessionState.LOGGED_OUT, reason="removed_by_phone"))
    window.set_qr(PAYLOAD)
    window.bring_forward()
    assert window.title.text() == "Link this computer again"
    assert "logged this computer out" in window.subtitle.text()
    assert window.mode == qw.QR


def test_restoring_shows_progress_without_steps(qtbot, window):
    window.set_state(StateChanged(SessionState.RESTORING))
    window.bring_forward()
    qtbot.waitExposed(window)
    assert window.mode == qw.LOADING
    assert window.spinner.isVisible() and window.spinner.spinning
    assert window.loading_label.text() == "Restoring your session…"
    assert not window.steps_holder.isVisible()
    window.hide()
    assert not window.spinner.spinning  # no animation while hidden


def test_closing_only_hides(qtbot, window):
    show_code(qtbot, window)
    window.close()
    assert not window.isVisible()
    window.set_qr(OTHER)
    window.bring_forward()
    assert window.isVisible() and window.mode == qw.QR


def test_the_payload_is_never_logged(qtbot, window, caplog):
    caplog.set_level(logging.DEBUG)
    show_code(qtbot, window)
    window.set_qr(OTHER)
    window.set_qr(OTHER, idle=True)
    window.set_state(StateChanged(SessionState.CONNECTED))
    assert PAYLOAD not in caplog.text and OTHER not in caplog.text
