"""What the tray menu shows, as plain data. Pure Python (no Qt) so every state is unit-testable.

``build_menu(view)`` turns a :class:`TrayView` (what the app knows right now) into a list of
:class:`MenuItem`. The tray renders them as QActions and the no-tray StatusWindow renders the
same items as buttons, so both always offer the same actions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import NamedTuple

from linda_desktop.base.events import ApiState, LinkStep, SessionState, StateChanged, StateCode

# Item ids (the tray dispatches on them; tests and the StatusWindow use them too).
STATUS = "status"
LAST_BACKUP = "last_backup"
SHOW_WINDOW = "show_window"
BACKUP_NOW = "backup_now"
RESTORE = "restore"
RESTORE_PREFIX = "restore:"
NO_BACKUPS = "no_backups"
RELINK = "relink"
AUTOSTART = "autostart"
OPEN_DATA = "open_data"
DIAGNOSTICS = "diagnostics"
ABOUT = "about"
QUIT = "quit"
BOT_API = "bot_api"
API_STATUS = "api_status"
API_ENABLED = "api_enabled"
API_COPY_TOKEN = "api_copy_token"
API_DOCS = "api_docs"

# TrayView.api_state values (the same words as linda_desktop.ui.bot_api's states).
API_OFF, API_STARTING, API_ON, API_PROBLEM = ApiState.OFF, ApiState.STARTING, ApiState.ON, ApiState.PROBLEM

# States in which a live, linked session exists on disk (a backup makes sense).
_HAS_SESSION = {SessionState.CONNECTED, SessionState.OFFLINE, SessionState.CONFLICT}
# States in which the service is busy swapping or loading the profile.
_TRANSITIONAL = {SessionState.STARTING, SessionState.RESTORING}
# States that need the owner's phone (the QR window is the useful thing to open).
NEEDS_OWNER = {SessionState.NEEDS_LINK, SessionState.LOGGED_OUT}

# Known machine reasons → owner words (anything else is shown as given).
_REASON_WORDS = {
    "browser_missing": "no browser found",
    "browser_not_found": "no browser found",
    "browser_launch_failed": "the browser could not start",
    "keyring_unavailable": "the system keyring is not available",
    "page_timeout": "WhatsApp did not finish loading",
    "unsupported_browser": "WhatsApp does not support this browser",
    "storage_error": "the disk is full or not writable",
    "profile_in_use": "another program is using the session",
}


# Codes that say more than the state itself (StateChanged.code → owner words).
_CODE_WORDS = {
    StateCode.PASSKEY: "Almost linked — finish in the WhatsApp window",
    StateCode.PASSKEY_NEEDS_DISPLAY: "Almost linked — the passkey step needs a screen",
    StateCode.LINK_EXPIRED: "The link timed out — scan a new code",
    StateCode.PAIRING_CODE: "Enter the pairing code on your phone",
    StateCode.PHONE_REMOVED: "Logged out by your phone",
    StateCode.LOCAL_DAMAGE: "Repairing the session from a backup…",
    StateCode.NO_USABLE_BACKUP: "The session is damaged and no backup could restore it",
    StateCode.ACCOUNT_LOCKED: "WhatsApp locked this account",
    StateCode.BANNED: "WhatsApp banned this account",
    StateCode.NETWORK_BLOCKED: "WhatsApp is blocked on this network",
    StateCode.OUTDATED_BUILD: "Updating WhatsApp Web…",
    StateCode.SYNCING: "Connected — loading your chats…",
    StateCode.CONFLICT_LIMIT: "WhatsApp keeps opening in another window",
    StateCode.LIVENESS: "Not responding — reconnecting…",
}
# The passkey step, stage by stage (StateChanged.details["stage"]).
_STAGE_WORDS = {
    LinkStep.PROMPT: "Almost linked — press Continue in the WhatsApp window",
    LinkStep.WAITING_FOR_PHONE: "Almost linked — waiting for your phone",
    LinkStep.CODE_MATCHING: "Almost linked — confirm the code in the WhatsApp window",
    LinkStep.ERROR: "Almost linked — try Continue again in the WhatsApp window",
}
# Codes with which the QR code cannot help (linking again would loop).
NO_QR_CODES = {StateCode.ACCOUNT_LOCKED, StateCode.BANNED, StateCode.NETWORK_BLOCKED}


def link_stage(event: StateChanged) -> LinkStep | None:
    """The passkey stage ``event`` reports, if it reports one (``step == "passkey"``)."""
    if event.code != StateCode.PASSKEY and (event.code is not None or event.step != "passkey"):
        return None  # PASSKEY_NEEDS_DISPLAY carries step="passkey" too, but nothing to walk through here
    try:
        return LinkStep(str(event.details.get("stage", LinkStep.PROMPT.value)))
    except ValueError:
        return LinkStep.PROMPT


class BackupEntry(NamedTuple):
    id: str
    created_at: datetime
    known_good: bool = False


@dataclass(frozen=True)
class TrayView:
    """Everything the menu needs. Built by the tray from the bridge's signals."""

    state: SessionState = SessionState.STARTING
    reason: str | None = None
    code: StateCode | None = None
    stage: LinkStep | None = None       # the passkey step's stage while it waits for the owner
    account: str | None = None
    last_backup: datetime | None = None
    backups: Sequence[BackupEntry | tuple] = ()
    autostart_enabled: bool = False
    autostart_available: bool = True
    backing_up: bool = False
    restoring: bool = False
    relinking: bool = False
    quitting: bool = False
    # Bot API ▸ (linda_desktop.ui.bot_api): whether this app can run it at all, what
    # settings.json says (the check mark), what the server does, and why it is not running.
    api_available: bool = False
    api_enabled: bool = False
    api_state: ApiState = API_OFF
    api_url: str | None = None
    api_problem: str | None = None


@dataclass(frozen=True)
class MenuItem:
    id: str
    label: str = ""
    enabled: bool = True
    checkable: bool = False
    checked: bool = False
    children: tuple[MenuItem, ...] = field(default_factory=tuple)
    separator: bool = False

    @classmethod
    def sep(cls, n: int) -> MenuItem:
        return cls(id=f"sep{n}", enabled=False, separator=True)


def humanize_reason(reason: str | None) -> str:
    """A machine reason ("browser_missing") in owner words; free text is returned unchanged."""
    if not reason:
        return "something went wrong"
    key = reason.strip()
    if key in _REASON_WORDS:
        return _REASON_WORDS[key]
    if " " not in key and "_" in key and key.lower() == key:
        return key.replace("_", " ")
    return key


def state_words(state: SessionState, reason: str | None = None, code: StateCode | None = None,
                stage: LinkStep | None = None) -> str:
    """The state in plain words for the owner (tooltip, status line, StatusWindow): by ``code``
    (and the passkey ``stage``) when it says more than the state, else by the state."""
    state = SessionState(state)
    if code == StateCode.PASSKEY and stage is not None:
        return _STAGE_WORDS[LinkStep(stage)]
    if code is not None and StateCode(code) in _CODE_WORDS:
        return _CODE_WORDS[StateCode(code)]
    if state == SessionState.STARTING:
        return "Starting…"
    if state == SessionState.RESTORING:
        return "Restoring your session…"
    if state == SessionState.CONNECTED:
        return "Connected"
    if state == SessionState.NEEDS_LINK:
        return "Needs linking — scan the QR code"
    if state == SessionState.LOGGED_OUT:
        return "Logged out by your phone"
    if state == SessionState.CONFLICT:
        return "WhatsApp is open in another window"
    if state == SessionState.OFFLINE:
        return "Offline — waiting for the internet"
    if state == SessionState.BROWSER_CRASHED:
        return "Browser stopped — restarting"
    return f"Problem: {humanize_reason(reason)}"


def format_when(moment: datetime, now: datetime | None = None, *, today: str = "") -> str:
    """Local, short: "10:42" today (``today`` + " 10:42" if given), "Yesterday 18:03",
    "Mon 12 Mar 10:42", "12 Mar 2024 10:42"."""
    local = moment.astimezone() if moment.tzinfo else moment
    ref = now if now is not None else datetime.now(local.tzinfo)
    if ref.tzinfo and local.tzinfo:
        ref = ref.astimezone(local.tzinfo)
    elif ref.tzinfo and not local.tzinfo:
        ref = ref.replace(tzinfo=None)
    clock = local.strftime("%H:%M")
    days = (ref.date() - local.date()).days
    if days == 0:
        return f"{today} {clock}" if today else clock
    if days == 1:
        return f"Yesterday {clock}"
    if local.year == ref.year:
        return f"{local.strftime('%a')} {local.day} {local.strftime('%b')} {clock}"
    return f"{local.day} {local.strftime('%b %Y')} {clock}"


def _entries(backups: Iterable[BackupEntry | tuple]) -> list[BackupEntry]:
    items = [b if isinstance(b, BackupEntry) else BackupEntry(*b) for b in backups]
    return sorted(items, key=lambda b: _sort_key(b.created_at), reverse=True)


def _sort_key(moment: datetime) -> float:
    return moment.timestamp()  # naive datetimes are taken as local time, like format_when


def status_label(view: TrayView) -> str:
    words = state_words(view.state, view.reason, view.code, view.stage)
    if view.quitting:
        words = "Closing — saving your session…"
    elif view.restoring and view.state != SessionState.RESTORING:
        words = "Restoring your session…"
    elif view.relinking:
        words = "Preparing a new link…"
    elif view.backing_up:
        words = f"{words} · backing up…"
    if view.account:
        return f"{words} · {view.account}"
    return words


def last_backup_label(view: TrayView, now: datetime | None = None) -> str:
    if view.last_backup is None:
        return "No backup yet"
    return f"Last backup: {format_when(view.last_backup, now)}"


def api_status_label(view: TrayView) -> str:
    """The Bot API ▸ submenu's status line."""
    if not view.api_available:
        return "Not available"
    if view.api_state == API_ON:
        return f"Listening on {view.api_url}"
    if view.api_state == API_STARTING:
        return "Starting…"
    if view.api_state == API_PROBLEM:
        return f"Problem: {view.api_problem or 'it could not start'}"
    return "Off"


def bot_api_item(view: TrayView) -> MenuItem:
    """Bot API ▸ status line, Enabled (checkable), Copy token, Open API docs."""
    usable = view.api_available and not view.quitting
    return MenuItem(BOT_API, "Bot API", enabled=view.api_available, children=(
        MenuItem(API_STATUS, api_status_label(view), enabled=False),
        MenuItem.sep(4),
        MenuItem(API_ENABLED, "Enabled", enabled=usable, checkable=True,
                 checked=view.api_available and view.api_enabled),
        MenuItem(API_COPY_TOKEN, "Copy token", enabled=usable),
        MenuItem(API_DOCS, "Open API docs", enabled=usable and view.api_state == API_ON),
    ))


_SHOW_WINDOW_LABELS = {
    StateCode.PASSKEY: "Finish linking…",
    StateCode.PASSKEY_NEEDS_DISPLAY: "How to finish linking…",
    StateCode.PAIRING_CODE: "Show the pairing code…",
    StateCode.LINK_EXPIRED: "Scan a new code…",
}


def build_menu(view: TrayView, now: datetime | None = None) -> list[MenuItem]:
    """The tray menu for ``view``. Items that make no sense in a state are disabled, not hidden,
    so the menu keeps its shape and the owner can still see what exists."""
    state = SessionState(view.state)
    busy = view.backing_up or view.restoring or view.relinking or view.quitting
    transitional = state in _TRANSITIONAL

    items: list[MenuItem] = [
        # Enabled so it reads as the menu's headline (not greyed out); clicking it opens the window.
        MenuItem(STATUS, status_label(view), enabled=not view.quitting),
        MenuItem(LAST_BACKUP, last_backup_label(view, now), enabled=False),
        MenuItem.sep(1),
    ]
    if state in NEEDS_OWNER and not view.quitting:
        items.append(MenuItem(SHOW_WINDOW, _SHOW_WINDOW_LABELS.get(view.code, "Show the QR code…") if view.code
                              else "Show the QR code…"))

    items.append(MenuItem(
        BACKUP_NOW, "Backing up…" if view.backing_up else "Back up now",
        enabled=state in _HAS_SESSION and not busy))

    entries = _entries(view.backups)
    newest_good = next((b.id for b in entries if b.known_good), None)
    if entries:
        children = tuple(
            MenuItem(RESTORE_PREFIX + b.id,
                     format_when(b.created_at, now, today="Today")
                     + (" (last known good)" if b.id == newest_good else ""))
            for b in entries)
    else:
        children = (MenuItem(NO_BACKUPS, "No backups yet", enabled=False),)
    # Logged out by the phone: every backup was revoked with the device, restoring cannot help.
    can_restore = not busy and not transitional and state != SessionState.LOGGED_OUT
    items.append(MenuItem(RESTORE, "Restoring…" if view.restoring else "Restore from backup",
                          enabled=can_restore, children=children))
    items.append(MenuItem(RELINK, "Re-link device…",
                          enabled=not busy and state != SessionState.RESTORING))
    items += [
        MenuItem.sep(2),
        MenuItem(AUTOSTART, "Start at login", enabled=view.autostart_available and not view.quitting,
                 checkable=True, checked=view.autostart_enabled and view.autostart_available),
        bot_api_item(view),
        MenuItem(OPEN_DATA, "Open data folder"),
        MenuItem(DIAGNOSTICS, "Diagnostics…"),
        MenuItem(ABOUT, "About Linda Desktop"),
        MenuItem.sep(3),
        MenuItem(QUIT, "Quit", enabled=not view.quitting),
    ]
    return items


def find_item(items: Iterable[MenuItem], item_id: str) -> MenuItem | None:
    """Depth-first lookup by id (tests and the StatusWindow use it)."""
    for item in items:
        if item.id == item_id:
            return item
        found = find_item(item.children, item_id)
        if found is not None:
            return found
    return None


def parse_backups(raw: Iterable[object]) -> list[BackupEntry]:
    """Backups as the service lists them (dicts with id, created_at, known_good) → entries.

    ``created_at`` may be a datetime, an ISO-8601 string or a POSIX timestamp; entries without a
    usable id or time are skipped rather than shown wrong.
    """
    out: list[BackupEntry] = []
    for item in raw:
        if isinstance(item, BackupEntry):
            out.append(item)
            continue
        if isinstance(item, tuple):
            out.append(BackupEntry(*item))
            continue
        if not isinstance(item, dict) or not item.get("id"):
            continue
        moment = _parse_time(item.get("created_at", item.get("created")))
        if moment is None:
            continue
        good = bool(item.get("known_good", item.get("last_known_good", False)))
        out.append(BackupEntry(str(item["id"]), moment, good))
    return out


def _parse_time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None
