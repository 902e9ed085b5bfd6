"""The tray menu for every session state, as plain data (no Qt)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from linda_desktop.base.events import LinkStep, SessionState, StateChanged, StateCode
from linda_desktop.ui import menu_model as mm
from linda_desktop.ui.menu_model import BackupEntry, TrayView, build_menu, find_item, state_words

NOW = datetime(2026, 3, 12, 15, 30, tzinfo=timezone.utc).astimezone()


def item(items, item_id):
    found = find_item(items, item_id)
    assert found is not None, f"no item {item_id}"
    return found


def top_ids(items):
    return [i.id for i in items if not i.separator]


BACKUPS = (
    BackupEntry("b-old", NOW - timedelta(days=3), False),
    BackupEntry("b-good", NOW - timedelta(hours=6), True),
    BackupEntry("b-new", NOW - timedelta(minutes=20), False),
)

# state → (Back up now enabled, Restore enabled, Re-link enabled, window item shown)
EXPECTED = {
    SessionState.STARTING: (False, False, True, False),
    SessionState.RESTORING: (False, False, False, False),
    SessionState.CONNECTED: (True, True, True, False),
    SessionState.NEEDS_LINK: (False, True, True, True),
    SessionState.LOGGED_OUT: (False, False, True, True),
    SessionState.CONFLICT: (True, True, True, False),
    SessionState.OFFLINE: (True, True, True, False),
    SessionState.BROWSER_CRASHED: (False, True, True, False),
    SessionState.ERROR: (False, True, True, False),
}


def test_every_state_has_an_expectation():
    assert set(EXPECTED) == set(SessionState)


@pytest.mark.parametrize("state", list(SessionState))
def test_menu_shape_and_flags_per_state(state):
    items = build_menu(TrayView(state=state, backups=BACKUPS, account="+31 6 1234 5678",
                                last_backup=NOW - timedelta(minutes=20)), NOW)
    backup, restore, relink, window = EXPECTED[state]
    ids = top_ids(items)
    assert ids[:2] == [mm.STATUS, mm.LAST_BACKUP]
    assert ids[-9:-6] == [mm.BACKUP_NOW, mm.RESTORE, mm.RELINK]
    assert ids[-6:] == [mm.AUTOSTART, mm.BOT_API, mm.OPEN_DATA, mm.DIAGNOSTICS, mm.ABOUT, mm.QUIT]
    assert (mm.SHOW_WINDOW in ids) is window
    assert item(items, mm.BACKUP_NOW).enabled is backup
    assert item(items, mm.RESTORE).enabled is restore
    assert item(items, mm.RELINK).enabled is relink
    for always in (mm.STATUS, mm.OPEN_DATA, mm.DIAGNOSTICS, mm.ABOUT, mm.QUIT):
        assert item(items, always).enabled
    assert not item(items, mm.LAST_BACKUP).enabled  # information, not an action
    status = item(items, mm.STATUS).label
    assert status == f"{state_words(state)} · +31 6 1234 5678"


def test_labels_of_the_fixed_items():
    items = build_menu(TrayView(state=SessionState.CONNECTED), NOW)
    labels = {i.id: i.label for i in items if not i.separator}
    assert labels[mm.BACKUP_NOW] == "Back up now"
    assert labels[mm.RESTORE] == "Restore from backup"
    assert labels[mm.RELINK] == "Re-link device…"
    assert labels[mm.AUTOSTART] == "Start at login"
    assert labels[mm.OPEN_DATA] == "Open data folder"
    assert labels[mm.DIAGNOSTICS] == "Diagnostics…"
    assert labels[mm.QUIT] == "Quit"
    separators = [i for i in items if i.separator]
    assert len(separators) == 3 and len({s.id for s in separators}) == 3


def test_backups_submenu_newest_first_with_last_known_good_marked():
    items = build_menu(TrayView(state=SessionState.CONNECTED, backups=BACKUPS), NOW)
    children = item(items, mm.RESTORE).children
    assert [c.id for c in children] == ["restore:b-new", "restore:b-good", "restore:b-old"]
    assert all(c.enabled for c in children)
    labels = [c.label for c in children]
    local_new = (NOW - timedelta(minutes=20)).astimezone()
    assert labels[0] == f"Today {local_new:%H:%M}"
    assert labels[1].endswith("(last known good)")
    assert sum("(last known good)" in label for label in labels) == 1
    assert not labels[2].startswith("Today") and "(last known good)" not in labels[2]


def test_only_the_newest_known_good_is_marked():
    backups = (*BACKUPS, BackupEntry("b-older-good", NOW - timedelta(days=5), True))
    children = item(build_menu(TrayView(state=SessionState.CONNECTED, backups=backups), NOW),
                    mm.RESTORE).children
    marked = [c.id for c in children if "(last known good)" in c.label]
    assert marked == ["restore:b-good"]


def test_empty_backups_shows_a_disabled_placeholder():
    items = build_menu(TrayView(state=SessionState.CONNECTED, backups=()), NOW)
    children = item(items, mm.RESTORE).children
    assert [(c.id, c.label, c.enabled) for c in children] == [(mm.NO_BACKUPS, "No backups yet", False)]
    assert item(items, mm.LAST_BACKUP).label == "No backup yet"


def test_last_backup_line_uses_local_time():
    moment = datetime(2026, 3, 12, 9, 42, tzinfo=timezone.utc)
    items = build_menu(TrayView(state=SessionState.CONNECTED, last_backup=moment), NOW)
    assert item(items, mm.LAST_BACKUP).label == f"Last backup: {moment.astimezone():%H:%M}"


def test_busy_flags_disable_conflicting_actions():
    view = TrayView(state=SessionState.CONNECTED, backups=BACKUPS)
    backing_up = build_menu(TrayView(**{**view.__dict__, "backing_up": True}), NOW)
    assert item(backing_up, mm.BACKUP_NOW).label == "Backing up…"
    assert not item(backing_up, mm.BACKUP_NOW).enabled
    assert not item(backing_up, mm.RESTORE).enabled
    restoring = build_menu(TrayView(**{**view.__dict__, "restoring": True}), NOW)
    assert not item(restoring, mm.RESTORE).enabled and item(restoring, mm.RESTORE).label == "Restoring…"
    assert not item(restoring, mm.RELINK).enabled
    assert item(restoring, mm.STATUS).label.startswith("Restoring your session…")
    quitting = build_menu(TrayView(**{**view.__dict__, "quitting": True}), NOW)
    assert not item(quitting, mm.QUIT).enabled and not item(quitting, mm.BACKUP_NOW).enabled
    assert item(quitting, mm.STATUS).label.startswith("Closing")


def test_autostart_item():
    on = item(build_menu(TrayView(autostart_enabled=True), NOW), mm.AUTOSTART)
    assert on.checkable and on.checked and on.enabled
    off = item(build_menu(TrayView(autostart_enabled=False), NOW), mm.AUTOSTART)
    assert off.checkable and not off.checked
    missing = item(build_menu(TrayView(autostart_enabled=True, autostart_available=False), NOW), mm.AUTOSTART)
    assert not missing.enabled and not missing.checked


def passkey(stage: LinkStep, **details: str) -> StateChanged:
    return StateChanged(SessionState.NEEDS_LINK, code=StateCode.PASSKEY, step="passkey",
                        details={"stage": stage.value, **details})


@pytest.mark.parametrize("stage, words", [
    (LinkStep.PROMPT, "Almost linked — press Continue in the WhatsApp window"),
    (LinkStep.WAITING_FOR_PHONE, "Almost linked — waiting for your phone"),
    (LinkStep.CODE_MATCHING, "Almost linked — confirm the code in the WhatsApp window"),
    (LinkStep.ERROR, "Almost linked — try Continue again in the WhatsApp window"),
])
def test_the_passkey_step_is_named_stage_by_stage(stage, words):
    event = passkey(stage, code="ABCD-EFGH")
    assert mm.link_stage(event) == stage
    view = TrayView(state=SessionState.NEEDS_LINK, code=event.code, stage=mm.link_stage(event))
    items = build_menu(view, NOW)
    assert item(items, mm.SHOW_WINDOW).label == "Finish linking…"
    assert item(items, mm.STATUS).label == words


def test_a_stage_the_ui_does_not_know_reads_as_the_prompt():
    unknown = StateChanged(SessionState.NEEDS_LINK, code=StateCode.PASSKEY, step="passkey",
                           details={"stage": "shortcake_new_card"})
    assert mm.link_stage(unknown) == LinkStep.PROMPT
    assert mm.link_stage(StateChanged(SessionState.NEEDS_LINK)) is None
    assert mm.link_stage(StateChanged(SessionState.NEEDS_LINK, code=StateCode.PASSKEY)) == LinkStep.PROMPT


@pytest.mark.parametrize("code, window_item", [
    (None, "Show the QR code…"),
    (StateCode.FIRST_LINK, "Show the QR code…"),
    (StateCode.PASSKEY_NEEDS_DISPLAY, "How to finish linking…"),
    (StateCode.PAIRING_CODE, "Show the pairing code…"),
    (StateCode.LINK_EXPIRED, "Scan a new code…"),
])
def test_the_window_item_says_what_the_window_shows(code, window_item):
    assert item(build_menu(TrayView(state=SessionState.NEEDS_LINK, code=code), NOW), mm.SHOW_WINDOW).label \
        == window_item


@pytest.mark.parametrize("state, code, words", [
    (SessionState.NEEDS_LINK, StateCode.FIRST_LINK, "Needs linking — scan the QR code"),
    (SessionState.NEEDS_LINK, StateCode.RELINK, "Needs linking — scan the QR code"),
    (SessionState.NEEDS_LINK, StateCode.PASSKEY, "Almost linked — finish in the WhatsApp window"),
    (SessionState.NEEDS_LINK, StateCode.PASSKEY_NEEDS_DISPLAY, "Almost linked — the passkey step needs a screen"),
    (SessionState.NEEDS_LINK, StateCode.LINK_EXPIRED, "The link timed out — scan a new code"),
    (SessionState.NEEDS_LINK, StateCode.PAIRING_CODE, "Enter the pairing code on your phone"),
    (SessionState.LOGGED_OUT, StateCode.PHONE_REMOVED, "Logged out by your phone"),
    (SessionState.RESTORING, StateCode.LOCAL_DAMAGE, "Repairing the session from a backup…"),
    (SessionState.NEEDS_LINK, StateCode.NO_USABLE_BACKUP, "The session is damaged and no backup could restore it"),
    (SessionState.LOGGED_OUT, StateCode.ACCOUNT_LOCKED, "WhatsApp locked this account"),
    (SessionState.ERROR, StateCode.BANNED, "WhatsApp banned this account"),
    (SessionState.ERROR, StateCode.NETWORK_BLOCKED, "WhatsApp is blocked on this network"),
    (SessionState.STARTING, StateCode.OUTDATED_BUILD, "Updating WhatsApp Web…"),
    (SessionState.CONNECTED, StateCode.SYNCING, "Connected — loading your chats…"),
    (SessionState.CONFLICT, StateCode.CONFLICT_LIMIT, "WhatsApp keeps opening in another window"),
    (SessionState.OFFLINE, StateCode.LIVENESS, "Not responding — reconnecting…"),
    (SessionState.ERROR, StateCode.BROWSER, "Problem: no browser found"),
    (SessionState.ERROR, StateCode.KEYRING, "Problem: the system keyring is not available"),
    (SessionState.ERROR, StateCode.STORAGE, "Problem: the disk is full or not writable"),
])
def test_state_words_for_every_code(state, code, words):
    reasons = {StateCode.BROWSER: "browser_missing", StateCode.KEYRING: "keyring_unavailable",
               StateCode.STORAGE: "storage_error"}
    assert state_words(state, reasons.get(code), code) == words


def test_every_state_code_has_words():
    for code in StateCode:
        words = state_words(SessionState.NEEDS_LINK, "browser_missing", code)
        assert words and "_" not in words, code


@pytest.mark.parametrize("state, reason, words", [
    (SessionState.CONNECTED, None, "Connected"),
    (SessionState.RESTORING, None, "Restoring your session…"),
    (SessionState.NEEDS_LINK, None, "Needs linking — scan the QR code"),
    (SessionState.LOGGED_OUT, "revoked", "Logged out by your phone"),
    (SessionState.CONFLICT, None, "WhatsApp is open in another window"),
    (SessionState.OFFLINE, None, "Offline — waiting for the internet"),
    (SessionState.BROWSER_CRASHED, None, "Browser stopped — restarting"),
    (SessionState.ERROR, "browser_missing", "Problem: no browser found"),
    (SessionState.ERROR, "Disk full while writing the backup", "Problem: Disk full while writing the backup"),
    (SessionState.ERROR, "page_stuck_loading", "Problem: page stuck loading"),
    (SessionState.ERROR, None, "Problem: something went wrong"),
    (SessionState.STARTING, None, "Starting…"),
])
def test_state_words(state, reason, words):
    assert state_words(state, reason) == words


def test_state_words_accepts_the_contract_strings():
    assert state_words("offline") == "Offline — waiting for the internet"


def test_format_when():
    now = datetime(2026, 3, 12, 15, 0)
    assert mm.format_when(datetime(2026, 3, 12, 10, 42), now) == "10:42"
    assert mm.format_when(datetime(2026, 3, 12, 10, 42), now, today="Today") == "Today 10:42"
    assert mm.format_when(datetime(2026, 3, 11, 18, 3), now) == "Yesterday 18:03"
    assert mm.format_when(datetime(2026, 3, 9, 8, 5), now) == "Mon 9 Mar 08:05"
    assert mm.format_when(datetime(2025, 12, 24, 8, 5), now) == "24 Dec 2025 08:05"


def test_parse_backups_from_the_service_shape():
    raw = [
        {"id": "a", "created_at": "2026-03-12T09:00:00+00:00", "known_good": True, "size": 3},
        {"id": "b", "created_at": 1773306000.0},
        {"id": "c", "created_at": datetime(2026, 3, 1, tzinfo=timezone.utc)},
        {"id": "", "created_at": "2026-03-12T09:00:00+00:00"},  # no id: skipped
        {"id": "d", "created_at": "not a date"},               # no time: skipped
        ("e", datetime(2026, 3, 2, tzinfo=timezone.utc), False),
    ]
    entries = mm.parse_backups(raw)
    assert [e.id for e in entries] == ["a", "b", "c", "e"]
    assert entries[0].known_good and not entries[1].known_good
    assert entries[0].created_at == datetime(2026, 3, 12, 9, tzinfo=timezone.utc)
    assert entries[1].created_at == datetime.fromtimestamp(1773306000.0, tz=timezone.utc)
