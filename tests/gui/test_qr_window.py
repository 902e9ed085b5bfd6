"""The linking window: a real QR drawn from the payload, rotation, expiry, each passkey stage, the pairing
code, closing."""

from __future__ import annotations

import logging

import pytest
import segno
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QLabel

from linda_desktop.base.events import LinkStep, SessionState, StateChanged, StateCode
from linda_desktop.ui import qr_window as qw
from linda_desktop.ui.qr_window import QrWindow
from tests.screenshots.preview import sample_payload

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


def passkey(stage: LinkStep, code: str | None = None) -> StateChanged:
    details = {"stage": stage.value, **({"verification_code": code} if code else {})}
    return StateChanged(SessionState.NEEDS_LINK, code=StateCode.PASSKEY, step="passkey", details=details)


def visible_text(window: QrWindow) -> str:
    """Every label the owner can see right now."""
    return " ".join(label.text() for label in window.findChildren(QLabel) if label.isVisible())


def test_the_passkey_prompt_says_to_press_continue_in_the_whatsapp_window(qtbot, window):
    show_code(qtbot, window)
    window.set_state(passkey(LinkStep.PROMPT))
    assert window.mode == qw.PASSKEY and window.stage == LinkStep.PROMPT
    assert window.title.text() == "Finish linking on this computer"
    assert window.passkey_heading.text() == "Continue in the WhatsApp window"
    assert "Press <b>Continue</b> there" in window.passkey_text.text()
    assert [row.progress for row in window._rows] == ["current", "todo", "todo"]
    assert window.steps[0] == "Press <b>Continue</b> in the WhatsApp window"
    assert window.show_browser_button.isVisible() and window.show_browser_button.text() == "Show the WhatsApp window"
    assert "WhatsApp waits 2:00 more for this step." in window.passkey_timer.text() \
        or "WhatsApp waits 1:59 more for this step." in window.passkey_timer.text()
    assert window.status.text() == "Almost linked — press Continue in the WhatsApp window"
    # The page rotated its ADV secret: the old code must not stay on screen to be scanned.
    assert window.payload is None and not window.qr_view.has_code()
    window.set_qr(OTHER)  # a late rotation must not cover the passkey page
    assert window.mode == qw.PASSKEY
    with qtbot.waitSignal(window.finishLinkRequested, timeout=1000):
        qtbot.mouseClick(window.show_browser_button, Qt.MouseButton.LeftButton)
    assert not window.show_browser_button.isEnabled()
    window.finish_failed("The WhatsApp window is gone")
    assert window.show_browser_button.isEnabled() and window.status.text() == "The WhatsApp window is gone"


def test_waiting_for_the_phone_shows_progress_and_the_time_left(qtbot, window):
    show_code(qtbot, window)
    window.set_state(passkey(LinkStep.PROMPT))
    window.set_state(passkey(LinkStep.WAITING_FOR_PHONE))
    assert window.stage == LinkStep.WAITING_FOR_PHONE
    assert window.passkey_heading.text() == "Waiting for your phone"
    assert window.passkey_spinner.isVisible() and window.passkey_spinner.spinning
    assert [row.progress for row in window._rows] == ["done", "current", "todo"]
    window.stage_seconds = 0  # WhatsApp's 120 s ran out and no event came yet: still not silent
    window._tick()
    assert "stopped waiting" in window.passkey_timer.text()


def test_code_matching_shows_the_code_large_and_asks_to_confirm_it_on_both_sides(qtbot, window):
    show_code(qtbot, window)
    window.set_state(passkey(LinkStep.CODE_MATCHING, code="ABCD-EFGH"))
    assert window.passkey_heading.text() == "Check the code"
    assert window.verification_label.isVisible() and window.verification_label.text() == "ABCD-EFGH"
    assert window.verification_label.font().pointSizeF() >= 2 * window.font().pointSizeF()
    assert "confirm it in the WhatsApp window and on your phone" in window.passkey_text.text()
    assert [row.progress for row in window._rows] == ["done", "done", "current"]
    assert window.status.text() == "Almost linked — confirm the code in the WhatsApp window"


def test_an_error_in_the_passkey_step_says_to_try_continue_again(qtbot, window):
    show_code(qtbot, window)
    window.set_state(passkey(LinkStep.CODE_MATCHING, code="ABCD-EFGH"))
    window.set_state(passkey(LinkStep.ERROR))
    assert window.passkey_heading.text() == "That did not work"
    assert not window.verification_label.isVisible()
    assert "try again" in window.passkey_text.text()


@pytest.mark.parametrize("qr_first", [False, True])
def test_a_timed_out_or_cancelled_step_asks_to_scan_a_new_code(qtbot, window, qr_first):
    show_code(qtbot, window)
    window.set_state(passkey(LinkStep.WAITING_FOR_PHONE))
    if qr_first:  # the fresh code may come before the state that says why
        window.set_qr(OTHER)
    window.set_state(StateChanged(SessionState.NEEDS_LINK, code=StateCode.LINK_EXPIRED))
    assert window.title.text() == "Scan a new code"
    assert "took too long or was cancelled" in window.subtitle.text()
    if not qr_first:
        assert window.mode == qw.LOADING and window.loading_label.text() == "Getting a new code from WhatsApp…"
        window.set_qr(OTHER)
    assert window.mode == qw.QR and window.title.text() == "Scan a new code"
    assert decode_modules(window.qr_view.grab().toImage())[0] == expected(OTHER)
    assert window.steps == qw.SCAN_STEPS


def test_passkey_needs_a_display_names_the_ways_out(qtbot, window):
    show_code(qtbot, window)
    window.set_state(StateChanged(SessionState.NEEDS_LINK, code=StateCode.PASSKEY_NEEDS_DISPLAY, step="passkey",
                                  details={"stage": "prompt"}))  # as the service says it
    assert window.mode == qw.NEEDS_DISPLAY
    assert window.payload is None and not window.qr_view.has_code()  # the scanned code is stale
    assert window.passkey_heading.text() == "WhatsApp asks for a passkey"
    text = window.passkey_text.text()
    assert "phone number" in text and "linda-desktop import" in text
    assert window.passkey_phone_button.isVisible() and not window.show_browser_button.isVisible()
    qtbot.mouseClick(window.passkey_phone_button, Qt.MouseButton.LeftButton)
    assert window.mode == qw.PHONE


@pytest.mark.parametrize("code", [StateCode.BANNED, StateCode.ACCOUNT_LOCKED])
def test_a_banned_or_locked_account_gets_words_and_no_qr(qtbot, window, code):
    show_code(qtbot, window)
    window.set_state(StateChanged(SessionState.LOGGED_OUT, code=code))
    window.set_qr(OTHER)
    assert window.mode == qw.MESSAGE
    assert "WhatsApp" in window.message_label.text() and "account" in window.message_label.text()
    assert not window.steps_holder.isVisible()


def open_phone(qtbot, window: QrWindow) -> None:
    show_code(qtbot, window)
    assert window.switch_button.isVisible() and window.switch_button.text() == "Link with phone number instead"
    qtbot.mouseClick(window.switch_button, Qt.MouseButton.LeftButton)
    assert window.mode == qw.PHONE
    assert window.steps == qw.PHONE_STEPS
    assert "<b>Link with phone number instead</b>" in window.steps[2]
    assert "<b>Linked devices</b> → <b>Link a device</b>" in window.steps[1]
    assert window.status.text() == "Needs linking — type your phone number"


@pytest.mark.parametrize("typed, error", [
    ("", "Type your phone number"),
    ("06 1234 5678", "Start with the country code"),
    ("+31 6 CALL ME", "only digits"),
    ("+31 612", "too short"),
    ("+31 6 1234 5678 9012 34", "too long"),
])
def test_a_bad_phone_number_gets_a_clear_error_and_no_request(qtbot, window, typed, error):
    open_phone(qtbot, window)
    qtbot.keyClicks(window.phone_edit, typed)
    with qtbot.assertNotEmitted(window.pairingCodeRequested):
        qtbot.keyClick(window.phone_edit, Qt.Key.Key_Return)
    assert window.mode == qw.PHONE
    assert window.phone_error.isVisible() and error in window.phone_error.text()
    qtbot.keyClicks(window.phone_edit, "1")  # typing again clears the error
    assert not window.phone_error.isVisible()


def test_a_good_number_is_normalised_then_the_code_is_shown_large_in_groups(qtbot, window):
    open_phone(qtbot, window)
    qtbot.keyClicks(window.phone_edit, "+31 (6) 1234-5678")
    with qtbot.waitSignal(window.pairingCodeRequested, timeout=1000) as asked:
        qtbot.mouseClick(window.get_code_button, Qt.MouseButton.LeftButton)
    assert asked.args == ["31612345678"]
    assert window.mode == qw.LOADING and "+31612345678" in window.loading_label.text()
    window.set_qr(OTHER)  # the QR keeps rotating behind: the owner chose the phone number
    assert window.mode == qw.LOADING
    window.set_state(StateChanged(SessionState.NEEDS_LINK, code=StateCode.PAIRING_CODE))
    window.set_pairing_code("k7qm2xwp")
    assert window.mode == qw.PAIRING and window.pairing_code == "K7QM-2XWP"
    assert window.pairing_code_label.text() == "K7QM-2XWP"
    assert window.pairing_code_label.font().pointSizeF() >= 2.4 * window.font().pointSizeF()
    assert window.pairing_for.text() == "for +31612345678"
    assert window.pairing_heading.text() == "Enter this code on your phone"
    assert not window.new_pairing_button.isVisible()
    assert "more" in window.pairing_timer.text()
    assert window.switch_button.text() == "Scan a QR code instead"
    assert window.status.text() == "Enter the pairing code on your phone"
    assert [row.progress for row in window._rows] == ["done", "current", "current", "current"]


def test_an_expired_pairing_code_offers_a_new_one(qtbot, window):
    open_phone(qtbot, window)
    qtbot.keyClicks(window.phone_edit, "+49 151 23456789")
    window._ask_pairing_code()
    window.set_pairing_code("ABCD-EFGH")
    window.set_state(StateChanged(SessionState.NEEDS_LINK, code=StateCode.LINK_EXPIRED))  # the service says so
    assert window.mode == qw.PAIRING and window.pairing_heading.text() == "This code expired"
    assert window.new_pairing_button.isVisible() and window.new_pairing_button.text() == "Get a new code"
    assert window.status.text() == "The pairing code expired — get a new one"
    with qtbot.waitSignal(window.pairingCodeRequested, timeout=1000) as asked:
        qtbot.mouseClick(window.new_pairing_button, Qt.MouseButton.LeftButton)
    assert asked.args == ["4915123456789"]
    window.set_pairing_code("WXYZ-1234")
    assert window.pairing_heading.text() == "Enter this code on your phone"
    assert not window.new_pairing_button.isVisible()


def test_a_pairing_code_expires_after_its_lifetime_even_without_an_event(qtbot, window):
    open_phone(qtbot, window)
    window.set_pairing_code("ABCD-EFGH")
    window.pairing_code_seconds = 0
    window._tick()
    assert window.pairing_heading.text() == "This code expired" and window.new_pairing_button.isVisible()


def test_a_refused_number_goes_back_to_the_field_with_why(qtbot, window):
    open_phone(qtbot, window)
    qtbot.keyClicks(window.phone_edit, "+1 555 000 1234")
    window._ask_pairing_code()
    window.pairing_failed("WhatsApp refused this number — check the country code")
    assert window.mode == qw.PHONE and window.phone_edit.text() == "+1 555 000 1234"
    assert window.phone_error.text() == "WhatsApp refused this number — check the country code"


def test_back_to_the_qr_asks_the_page_for_a_new_code(qtbot, window):
    open_phone(qtbot, window)
    window.set_pairing_code("ABCD-EFGH")
    with qtbot.waitSignal(window.showNewQrRequested, timeout=1000):
        qtbot.mouseClick(window.switch_button, Qt.MouseButton.LeftButton)
    assert window.mode == qw.LOADING
    window.set_qr(OTHER)
    assert window.mode == qw.QR and window.payload == OTHER


def test_back_to_the_qr_before_any_code_shows_the_current_one(qtbot, window):
    open_phone(qtbot, window)
    with qtbot.assertNotEmitted(window.showNewQrRequested):
        qtbot.mouseClick(window.switch_button, Qt.MouseButton.LeftButton)
    assert window.mode == qw.QR and window.payload == PAYLOAD


def test_connected_after_a_pairing_code_hides_and_forgets_it(qtbot, window):
    open_phone(qtbot, window)
    window.set_pairing_code("ABCD-EFGH")
    with qtbot.waitSignal(window.linked, timeout=1000):
        window.set_state(StateChanged(SessionState.CONNECTED))
    assert window.pairing_code is None and not window.isVisible()
    window.set_state(StateChanged(SessionState.NEEDS_LINK))  # a later link starts with the QR again
    window.set_qr(PAYLOAD)
    assert window.mode == qw.QR


def test_no_window_state_is_a_silent_wait(qtbot, window):
    """Every state the link can be in tells the owner what is happening or what to do."""
    show_code(qtbot, window)
    events = [passkey(stage, "ABCD-EFGH") for stage in LinkStep] + [
        StateChanged(SessionState.NEEDS_LINK, code=code)
        for code in (StateCode.LINK_EXPIRED, StateCode.PASSKEY_NEEDS_DISPLAY, StateCode.FIRST_LINK)]
    for event in events:
        window.set_state(event)
        text = visible_text(window)
        assert len(text) > 60, (event, text)
        assert window.status.text() and "_" not in window.status.text()


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
