"""Tray messages for the few things an owner must hear about, each said once (rate-limited).

The Notifier decides *what* to say from the bridge's signals; a ``show(title, body, level)``
callable decides *where* (the tray balloon, or the StatusWindow's banner when there is no tray).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QObject, Slot

from linda_desktop.base.events import NoticeKind, SessionState, StateChanged, StateCode
from linda_desktop.ui import qt_compat  # noqa: F401 - must load before any emit
from linda_desktop.ui.menu_model import NEEDS_OWNER, humanize_reason

INFO, WARNING, CRITICAL = "info", "warning", "critical"
ShowFn = Callable[[str, str, str], None]

# Notice kinds (or ERROR reasons) worth a message: title, level, body when the service gave none.
NOTICE_TITLES = {
    NoticeKind.BACKUP_FAILED.value: ("Backup failed", WARNING,
                                     "Your session is still running; Linda Desktop will try again later."),
    NoticeKind.BROWSER_MISSING.value: ("No browser found", CRITICAL, "Install Google Chrome, Microsoft Edge or "
                                       "Chromium, then start Linda Desktop again."),
    NoticeKind.KEYRING_UNAVAILABLE.value: ("Backups cannot be encrypted", CRITICAL,
                                           "No system keyring is available. Open Diagnostics to see how to fix it."),
    NoticeKind.STORAGE_FULL.value: ("The disk is full", WARNING,
                                    "Your session is still running. Free some space; Linda Desktop tries again."),
    NoticeKind.OTHER_KEY_BACKUPS.value: ("Some backups use another key", WARNING,
                                         "They are kept, but this computer's key cannot open them."),
    NoticeKind.SETTINGS_INVALID.value: ("A setting was not valid", WARNING,
                                        "Linda Desktop uses the default for it. Open Diagnostics to see which."),
    "restore_failed": ("Restore failed", WARNING, "The current session was left as it was."),
    "service_failed": ("Linda Desktop stopped", CRITICAL, "Open Diagnostics to see why."),
    "api_unavailable": ("The bot API is off", WARNING, "Open Diagnostics to see why."),
    "webhook_unavailable": ("Webhooks are off", WARNING, "Open Diagnostics to see why."),
}


# Codes worth a message of their own, whatever the state (StateChanged.code).
_CODE_MESSAGES = {
    StateCode.PASSKEY: ("Finish linking in the WhatsApp window", WARNING,
                        "Your phone scanned the code. WhatsApp opened its window on your screen: press "
                        "Continue there and follow its steps."),
    StateCode.PASSKEY_NEEDS_DISPLAY: ("WhatsApp asks for a passkey", WARNING,
                                      "This account must finish linking in a browser window on a screen. "
                                      "Open Linda Desktop to link with your phone number instead."),
    StateCode.LINK_EXPIRED: ("Scan a new code", WARNING,
                             "The last linking step timed out or was cancelled. Scan the new QR code to try "
                             "again."),
    StateCode.ACCOUNT_LOCKED: ("WhatsApp locked this account", CRITICAL,
                               "Open WhatsApp on your phone to unlock it; linking again does not help "
                               "until then."),
    StateCode.BANNED: ("WhatsApp banned this account", CRITICAL,
                       "WhatsApp no longer lets this number use linked devices. Open WhatsApp on your phone "
                       "to see why."),
    StateCode.NETWORK_BLOCKED: ("WhatsApp is blocked on this network", CRITICAL,
                                "A proxy or firewall blocks WhatsApp. Try another network."),
    StateCode.NO_USABLE_BACKUP: ("Your session is damaged", WARNING,
                                 "No backup could bring it back. Scan the QR code to link this computer "
                                 "again."),
}


@dataclass
class Message:
    key: str
    title: str
    body: str
    level: str = INFO


class Notifier(QObject):
    """Turns events into messages. The same message (by key) is not repeated within
    ``min_interval`` seconds, so a flapping connection does not flood the desktop."""

    def __init__(self, show: ShowFn, *, min_interval: float = 600.0,
                 clock: Callable[[], float] = time.monotonic, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._show = show
        self._min_interval = min_interval
        self._clock = clock
        self._last_shown: dict[str, float] = {}
        self._state: SessionState | None = None
        self._reason: str | None = None
        self._code: StateCode | None = None
        self.sent: list[Message] = []  # what was actually shown (tests, diagnostics)
        self.enabled = True  # False: decide and record, but show nothing (screenshots)

    def notify(self, message: Message, *, repeat: bool = False) -> bool:
        """Show ``message`` unless it was just said. ``repeat``: always show it (the answer to
        something the owner just did, e.g. "Token copied")."""
        now = self._clock()
        last = self._last_shown.get(message.key)
        if not repeat and last is not None and now - last < self._min_interval:
            return False
        # The service often reports one problem twice (a Notice, then an error state with the
        # same words): say it once.
        if not repeat and any(m.body == message.body and now - self._last_shown.get(m.key, -1e18) < self._min_interval
               for m in self.sent[-5:]):
            return False
        self._last_shown[message.key] = now
        self.sent.append(message)
        if self.enabled:
            self._show(message.title, message.body, message.level)
        return True

    @Slot(object)
    def on_state(self, event: StateChanged) -> None:
        previous, previous_reason, previous_code = self._state, self._reason, self._code
        self._state, self._reason, self._code = event.state, event.reason, event.code
        state, code = event.state, event.code
        if state == previous and code == previous_code and (event.reason == previous_reason
                                                            or state == SessionState.NEEDS_LINK):
            return  # a new QR, a new passkey stage: the windows show it, no new balloon
        if state == SessionState.CONNECTED and previous in NEEDS_OWNER:
            self.notify(Message("linked", "Linked — WhatsApp is connected",
                                "Linda Desktop keeps this session alive and backs it up."))
        elif code in _CODE_MESSAGES:
            title, level, body = _CODE_MESSAGES[code]
            self.notify(Message(f"code:{code.value}", title, body, level))
        elif state == SessionState.NEEDS_LINK and code != StateCode.PAIRING_CODE:
            self.notify(Message("needs_link", "WhatsApp needs linking",
                                "Scan the QR code with your phone: WhatsApp → Linked devices.", WARNING))
        elif state == SessionState.LOGGED_OUT:
            body = "Your phone removed this computer from its linked devices. Link it again to continue."
            if event.reason:
                body = f"{body} ({humanize_reason(event.reason)})"
            self.notify(Message("logged_out", "Logged out by your phone", body, WARNING))
        elif state == SessionState.ERROR and event.reason:
            kind, _, detail = event.reason.partition(":")
            if kind.strip() in NOTICE_TITLES:
                title, level, default = NOTICE_TITLES[kind.strip()]
                self.notify(Message(kind.strip(), title, detail.strip() or default, level))
            else:
                self.notify(Message(f"error:{event.reason}", "Linda Desktop has a problem",
                                    _sentence(humanize_reason(event.reason)), CRITICAL))

    @Slot(object)
    def on_restored(self, info: dict) -> None:
        self.notify(Message(f"restored:{info.get('from_id', '')}", "Session restored",
                            "WhatsApp was restored from your latest backup and is starting again."))

    @Slot(str, str)
    def on_notice(self, kind: str, message: str) -> None:
        if kind in NOTICE_TITLES:
            title, level, default = NOTICE_TITLES[kind]
        elif kind.endswith(("_failed", "_missing", "_unavailable")):
            title, level, default = kind.replace("_", " ").capitalize(), WARNING, ""
        else:
            return  # informational notices stay in the log
        # Keyed by kind only: the same problem reworded must not show twice in a row.
        self.notify(Message(kind, title, message or default, level))


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]
