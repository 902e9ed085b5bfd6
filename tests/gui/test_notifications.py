"""Notifier: what is said, and that it is said once."""

from __future__ import annotations

import pytest

from linda_desktop.base.events import NoticeKind, SessionState, StateChanged, StateCode
from linda_desktop.ui.notifications import Message, Notifier


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make():
    shown: list[tuple[str, str, str]] = []
    clock = Clock()
    notifier = Notifier(lambda t, b, level: shown.append((t, b, level)), min_interval=600, clock=clock)
    return notifier, shown, clock


def test_same_message_waits_for_the_interval(qtbot):
    notifier, shown, clock = make()
    assert notifier.notify(Message("k", "Title", "Body"))
    clock.now += 599
    assert not notifier.notify(Message("k", "Title", "Body"))
    clock.now += 2
    assert notifier.notify(Message("k", "Title", "Body"))
    assert len(shown) == 2


def test_states_that_need_the_owner(qtbot):
    notifier, shown, _clock = make()
    notifier.on_state(StateChanged(SessionState.STARTING))
    notifier.on_state(StateChanged(SessionState.NEEDS_LINK))
    notifier.on_state(StateChanged(SessionState.NEEDS_LINK))  # a new QR, same state: quiet
    notifier.on_state(StateChanged(SessionState.NEEDS_LINK, code=StateCode.PASSKEY, step="passkey",
                                   details={"stage": "prompt"}))
    notifier.on_state(StateChanged(SessionState.NEEDS_LINK, code=StateCode.PASSKEY, step="passkey",
                                   details={"stage": "code_matching",  # the window says the code
                                            "verification_code": "ABCD-EFGH"}))
    notifier.on_state(StateChanged(SessionState.CONNECTED))
    notifier.on_state(StateChanged(SessionState.OFFLINE))      # transient: not worth a balloon
    notifier.on_state(StateChanged(SessionState.CONNECTED))    # back from offline: not "Linked"
    notifier.on_state(StateChanged(SessionState.LOGGED_OUT, reason="device_removed"))
    titles = [t for t, _, _ in shown]
    assert titles == ["WhatsApp needs linking", "Finish linking in the WhatsApp window",
                      "Linked — WhatsApp is connected", "Logged out by your phone"]
    assert "device removed" in shown[-1][1]


def test_error_reasons_with_a_known_kind(qtbot):
    notifier, shown, _clock = make()
    notifier.on_state(StateChanged(SessionState.ERROR, reason="browser_missing"))
    assert shown[-1][0] == "No browser found" and "Chromium" in shown[-1][1]
    notifier.on_state(StateChanged(SessionState.ERROR, reason="WhatsApp Web did not finish loading"))
    assert shown[-1] == ("Linda Desktop has a problem", "WhatsApp Web did not finish loading", "critical")


def test_notices(qtbot):
    notifier, shown, _clock = make()
    notifier.on_notice("backup_unusable", "Backup x cannot be used")  # informational: log only
    notifier.on_notice("backup_failed", "Backup failed: disk full")
    notifier.on_notice("backup_failed", "Backup failed: disk still full")  # same kind, reworded
    notifier.on_notice("keyring_unavailable", "")
    assert [t for t, _, _ in shown] == ["Backup failed", "Backups cannot be encrypted"]
    assert "Diagnostics" in shown[-1][1]


def test_disabled_records_but_shows_nothing(qtbot):
    notifier, shown, _clock = make()
    notifier.enabled = False
    notifier.on_notice("backup_failed", "Backup failed: disk full")
    assert shown == [] and notifier.sent[-1].title == "Backup failed"


@pytest.mark.parametrize("state, code, title", [
    (SessionState.NEEDS_LINK, StateCode.PASSKEY_NEEDS_DISPLAY, "WhatsApp asks for a passkey"),
    (SessionState.NEEDS_LINK, StateCode.LINK_EXPIRED, "Scan a new code"),
    (SessionState.LOGGED_OUT, StateCode.ACCOUNT_LOCKED, "WhatsApp locked this account"),
    (SessionState.ERROR, StateCode.BANNED, "WhatsApp banned this account"),
    (SessionState.ERROR, StateCode.NETWORK_BLOCKED, "WhatsApp is blocked on this network"),
    (SessionState.NEEDS_LINK, StateCode.NO_USABLE_BACKUP, "Your session is damaged"),
    (SessionState.LOGGED_OUT, StateCode.PHONE_REMOVED, "Logged out by your phone"),
    (SessionState.NEEDS_LINK, StateCode.FIRST_LINK, "WhatsApp needs linking"),
])
def test_each_code_is_said_in_its_own_words(qtbot, state, code, title):
    notifier, shown, _clock = make()
    notifier.on_state(StateChanged(SessionState.STARTING))
    notifier.on_state(StateChanged(state, code=code))
    assert [t for t, _, _ in shown] == [title]
    assert "_" not in shown[0][1]


def test_a_pairing_code_and_a_passkey_stage_change_make_no_balloon(qtbot):
    notifier, shown, _clock = make()
    notifier.on_state(StateChanged(SessionState.NEEDS_LINK, code=StateCode.FIRST_LINK))
    notifier.on_state(StateChanged(SessionState.NEEDS_LINK, code=StateCode.PAIRING_CODE))
    assert [t for t, _, _ in shown] == ["WhatsApp needs linking"]  # the window shows the code


def test_a_passkey_that_expires_then_comes_back_is_said_again(qtbot):
    notifier, shown, _clock = make()
    notifier.on_state(StateChanged(SessionState.NEEDS_LINK, code=StateCode.PASSKEY, step="passkey"))
    notifier.on_state(StateChanged(SessionState.NEEDS_LINK, code=StateCode.LINK_EXPIRED))
    assert [t for t, _, _ in shown] == ["Finish linking in the WhatsApp window", "Scan a new code"]


def test_notice_kinds_of_the_vocabulary(qtbot):
    notifier, shown, _clock = make()
    notifier.on_notice(NoticeKind.STORAGE_FULL.value, "")
    notifier.on_notice(NoticeKind.OTHER_KEY_BACKUPS.value, "3 backups were made with another key; they are kept")
    assert [t for t, _, _ in shown] == ["The disk is full", "Some backups use another key"]
    assert shown[1][1] == "3 backups were made with another key; they are kept"
