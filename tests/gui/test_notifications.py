"""Notifier: what is said, and that it is said once."""

from __future__ import annotations

from linda_desktop.base.events import SessionState, StateChanged
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
    notifier, shown, clock = make()
    notifier.on_state(StateChanged(SessionState.STARTING))
    notifier.on_state(StateChanged(SessionState.NEEDS_LINK))
    notifier.on_state(StateChanged(SessionState.NEEDS_LINK))  # a new QR, same state: quiet
    notifier.on_state(StateChanged(SessionState.NEEDS_LINK, reason="link_stalled: passkey"))
    notifier.on_state(StateChanged(SessionState.CONNECTED))
    notifier.on_state(StateChanged(SessionState.OFFLINE))      # transient: not worth a balloon
    notifier.on_state(StateChanged(SessionState.CONNECTED))    # back from offline: not "Linked"
    notifier.on_state(StateChanged(SessionState.LOGGED_OUT, reason="device_removed"))
    titles = [t for t, _, _ in shown]
    assert titles == ["WhatsApp needs linking", "Finish linking on this computer",
                      "Linked — WhatsApp is connected", "Logged out by your phone"]
    assert "device removed" in shown[-1][1]


def test_error_reasons_with_a_known_kind(qtbot):
    notifier, shown, clock = make()
    notifier.on_state(StateChanged(SessionState.ERROR, reason="browser_missing"))
    assert shown[-1][0] == "No browser found" and "Chromium" in shown[-1][1]
    notifier.on_state(StateChanged(SessionState.ERROR, reason="WhatsApp Web did not finish loading"))
    assert shown[-1] == ("Linda Desktop has a problem", "WhatsApp Web did not finish loading", "critical")


def test_notices(qtbot):
    notifier, shown, clock = make()
    notifier.on_notice("backup_unusable", "Backup x cannot be used")  # informational: log only
    notifier.on_notice("backup_failed", "Backup failed: disk full")
    notifier.on_notice("backup_failed", "Backup failed: disk still full")  # same kind, reworded
    notifier.on_notice("keyring_unavailable", "")
    assert [t for t, _, _ in shown] == ["Backup failed", "Backups cannot be encrypted"]
    assert "Diagnostics" in shown[-1][1]


def test_disabled_records_but_shows_nothing(qtbot):
    notifier, shown, clock = make()
    notifier.enabled = False
    notifier.on_notice("backup_failed", "Backup failed: disk full")
    assert shown == [] and notifier.sent[-1].title == "Backup failed"
