"""The vocabulary shared by the service, the CLI (`run --json`) and the tray.

``SessionState`` values and the ``to_json`` shapes are a fixed contract (DESIGN.md §3).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class SessionState(str, enum.Enum):
    STARTING = "starting"
    RESTORING = "restoring"
    CONNECTED = "connected"
    NEEDS_LINK = "needs_link"
    LOGGED_OUT = "logged_out"
    CONFLICT = "conflict"
    OFFLINE = "offline"
    BROWSER_CRASHED = "browser_crashed"
    ERROR = "error"

    def __str__(self) -> str:
        return self.value


class PageState(str, enum.Enum):
    """What the WhatsApp Web page shows right now (browser level, before recovery decisions).

    Read from the page's internal state once it has booted (whatsapp-web-reference.md §1), from
    the DOM otherwise (§2). ``RESUMING`` covers Socket UNLAUNCHED / OPENING / PAIRING: ordinary
    steps of a linked session coming back, not the passkey step (that is ``PASSKEY``).
    """

    LOADING = "loading"                  # splash / booting: nothing to act on yet
    RESUMING = "resuming"                # a linked session is coming back (OPENING, PAIRING)
    QR = "qr"
    QR_IDLE = "qr_idle"                  # the QR list ran out (UNPAIRED_IDLE): ask for new codes
    PASSKEY = "passkey"                  # the Shortcake screens after a scan (snapshot.link_step)
    PAIRING_CODE = "pairing_code"        # a code for "link with phone number" is shown
    CONNECTED = "connected"              # snapshot.synced tells whether the first sync finished
    CONFLICT = "conflict"
    OFFLINE = "offline"
    OUTDATED = "outdated"                # DEPRECATED_VERSION: the WhatsApp build is old; reload
    BANNED = "banned"                    # TOS_BLOCK / SMB_TOS_BLOCK: the account is banned
    NETWORK_BLOCKED = "network_blocked"  # PROXYBLOCK
    UNSUPPORTED = "unsupported_browser"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


class LinkStep(str, enum.Enum):
    """Stages of the passkey step (reference §4), by the Shortcake cards' test ids."""

    PROMPT = "prompt"                    # shortcake_passkey_prompt_card: press Continue
    WAITING_FOR_PHONE = "waiting_for_phone"
    CODE_MATCHING = "code_matching"      # confirm the code shown (snapshot.verification_code)
    ERROR = "error"                      # back on the prompt card with role=alert

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class LogoutInfo:
    """What the page said about a logout: the in-page string reason (captured before WhatsApp's
    reload, e.g. ``missing_enc_salt``), the URL code (``logout_reason=0``), and whether the URL
    carried ``post_logout=1``. Any of them may be missing (reference §3)."""

    reason: str | None = None
    code: str | None = None
    post_logout: bool = False

    def __bool__(self) -> bool:
        return bool(self.reason or self.code or self.post_logout)


@dataclass(frozen=True)
class PageSnapshot:
    """One reading of the page. ``qr`` is the payload (never log it)."""

    state: PageState
    qr: str | None = None
    progress: int | None = None
    account: str | None = None
    synced: bool = False                    # CONNECTED: the first history sync has finished
    logout: LogoutInfo | None = None        # the page came back from a logout
    link_step: LinkStep | None = None       # PASSKEY only
    verification_code: str | None = None    # PASSKEY, CODE_MATCHING: "ABCD-EFGH"
    pairing_code: str | None = None         # PAIRING_CODE: "ABCD-EFGH"
    source: str = "dom"                     # "internal" once read from the page's modules


class StateCode(str, enum.Enum):
    """Why the session is in its state: machine-readable, beside the words in ``reason``."""

    FIRST_LINK = "first_link"                  # never linked: show the QR
    PHONE_REMOVED = "phone_removed"            # the phone (or WhatsApp) removed this computer
    LOCAL_DAMAGE = "local_damage"              # the profile broke here; a backup is being tried
    NO_USABLE_BACKUP = "no_usable_backup"      # damaged and no backup could bring it back
    ACCOUNT_LOCKED = "account_locked"          # logout code 3
    BANNED = "banned"                          # TOS_BLOCK
    NETWORK_BLOCKED = "network_blocked"        # PROXYBLOCK
    OUTDATED_BUILD = "outdated_build"          # DEPRECATED_VERSION, reloading
    SYNCING = "syncing"                        # connected, first history sync still running
    PASSKEY = "passkey"                        # the owner must finish the passkey step
    PASSKEY_NEEDS_DISPLAY = "passkey_needs_display"  # the passkey step cannot happen headless
    LINK_EXPIRED = "link_expired"              # a link step timed out or was cancelled: scan again
    PAIRING_CODE = "pairing_code"              # a pairing code is shown
    RELINK = "relink"                          # the owner asked to link again
    CONFLICT_LIMIT = "conflict_limit"          # another window keeps taking the session
    LIVENESS = "liveness"                      # connected but no events: healing
    BROWSER = "browser"                        # browser missing or failing
    KEYRING = "keyring"
    STORAGE = "storage"                        # disk full, read-only folder

    def __str__(self) -> str:
        return self.value


class NoticeKind(str, enum.Enum):
    """The kinds of Notice (``{"event": "notice", "kind": ...}``)."""

    BACKUP_FAILED = "backup_failed"
    BACKUP_UNUSABLE = "backup_unusable"
    OTHER_KEY_BACKUPS = "other_key_backups"    # backups made with another key: kept, not usable
    KEYRING_UNAVAILABLE = "keyring_unavailable"
    BROWSER_MISSING = "browser_missing"
    SETTINGS_INVALID = "settings_invalid"
    STORAGE_FULL = "storage_full"
    STATE_WRITE_FAILED = "state_write_failed"
    LIVENESS = "liveness"
    BRIDGE = "bridge"
    API = "api"
    LINK = "link"

    def __str__(self) -> str:
        return self.value


class Command(str, enum.Enum):
    """Commands to the running app: the control channel, the tray's bridge and the CLI share them."""

    PING = "ping"
    SHOW = "show"
    STATUS = "status"
    BACKUPS = "backups"
    BACKUP = "backup"
    VERIFY = "verify"
    RESTORE = "restore"
    RELINK = "relink"
    IMPORT = "import"
    FINISH_LINK = "finish_link"
    NEW_QR = "new_qr"
    PAIRING_CODE = "pairing_code"
    QUIT = "quit"

    def __str__(self) -> str:
        return self.value

    @property
    def read_only(self) -> bool:
        """Answered at once, never queued behind a long command."""
        return self in (Command.PING, Command.SHOW, Command.STATUS, Command.BACKUPS)


class ApiState(str, enum.Enum):
    """The bot API's own state, as the tray's Bot API ▸ menu shows it."""

    OFF = "off"
    STARTING = "starting"
    ON = "on"             # listening (ApiStatus.url says where)
    PROBLEM = "problem"   # it could not start (ApiStatus.problem says why)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class StateChanged:
    """``{"event": "state", "state": ..., "code": ..., "step": ..., "reason": ...}`` (DESIGN §3).

    ``reason`` is words for people; ``code`` is why, for programs; ``step`` names a linking
    step the owner is in (``"passkey"``), with ``details`` beside it (``stage``, and during code
    matching ``verification_code``: the code to compare on the phone)."""

    state: SessionState
    reason: str | None = None
    account: str | None = None
    code: StateCode | None = None
    step: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"event": "state", "state": self.state.value}
        if self.code:
            data["code"] = self.code.value
        if self.step:
            data["step"] = self.step
        if self.reason:
            data["reason"] = self.reason
        if self.account:
            data["account"] = self.account
        for key, value in self.details.items():  # details add to the contract's keys, never replace them
            data.setdefault(key, value)
        return data


@dataclass(frozen=True)
class QrCode:
    data: str
    idle: bool = False  # True: the page stopped rotating; ask the owner before reloading

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": "qr", "data": self.data}
        if self.idle:
            out["idle"] = True
        return out


@dataclass(frozen=True)
class PairingCode:
    """``{"event": "pairing_code", "code": "ABCD-EFGH"}``: type it on the phone (Linked devices →
    Link with phone number instead)."""

    code: str
    phone: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": "pairing_code", "code": self.code}
        if self.phone:
            out["phone"] = self.phone
        return out


@dataclass(frozen=True)
class BackupMade:
    id: str
    size: int
    seconds: float
    reason: str = "auto"

    def to_json(self) -> dict[str, Any]:
        return {"event": "backup", "id": self.id, "size": self.size,
                "seconds": round(self.seconds, 3), "reason": self.reason}


@dataclass(frozen=True)
class Restored:
    from_id: str
    seconds: float
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"event": "restore", "from": self.from_id, "seconds": round(self.seconds, 3),
                "reason": self.reason}


@dataclass(frozen=True)
class Notice:
    """Something the owner should hear about that is not a state change (backup failed, …)."""

    kind: NoticeKind | str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        kind = self.kind.value if isinstance(self.kind, NoticeKind) else self.kind
        return {"event": "notice", "kind": kind, "message": self.message, **self.details}


@dataclass(frozen=True)
class MessageReceived:
    """An incoming WhatsApp message (bot API, issue 6). Goes only to API listeners
    (``SessionService.subscribe``), never to the log, stdout or the tray: it carries text."""

    id: str
    chat_id: str
    text: str | None
    sender: str | None = None        # phone number (digits) when WhatsApp shows it
    sender_name: str | None = None
    author: str | None = None        # group messages: the member's id
    type: str = "chat"
    timestamp: int | None = None
    group: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"event": "message", "id": self.id, "chat_id": self.chat_id, "from": self.sender,
                "sender_name": self.sender_name, "author": self.author, "type": self.type,
                "text": self.text, "timestamp": self.timestamp, "group": self.group}


Event = StateChanged | QrCode | PairingCode | BackupMade | Restored | Notice


def event_to_dict(event: Event) -> dict[str, Any]:
    return event.to_json()


__all__ = [
    "ApiState",
    "BackupMade",
    "Command",
    "Event",
    "LinkStep",
    "LogoutInfo",
    "MessageReceived",
    "Notice",
    "NoticeKind",
    "PageSnapshot",
    "PageState",
    "PairingCode",
    "QrCode",
    "Restored",
    "SessionState",
    "StateChanged",
    "StateCode",
    "asdict",
    "event_to_dict",
]
