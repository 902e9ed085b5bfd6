"""The vocabulary shared by the service, the CLI (`run --json`) and the tray.

``SessionState`` values and the ``to_json`` shapes are a fixed contract (DESIGN.md §3).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any, Union


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
    """What the WhatsApp Web page shows right now (browser level, before recovery decisions)."""

    LOADING = "loading"
    QR = "qr"
    QR_IDLE = "qr_idle"  # the QR list ran out: the page shows a reload button instead
    PAIRING = "pairing"  # phone scanned; the link has not finished (e.g. passkey step)
    CONNECTED = "connected"
    CONFLICT = "conflict"
    OFFLINE = "offline"
    UNSUPPORTED = "unsupported_browser"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class PageSnapshot:
    """One reading of the page. ``qr`` is the payload (never log it); ``reason`` e.g. a logout reason."""

    state: PageState
    qr: str | None = None
    reason: str | None = None
    progress: int | None = None
    account: str | None = None
    post_logout: bool = False


@dataclass(frozen=True)
class StateChanged:
    state: SessionState
    reason: str | None = None
    account: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"event": "state", "state": self.state.value}
        if self.reason:
            data["reason"] = self.reason
        if self.account:
            data["account"] = self.account
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

    kind: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"event": "notice", "kind": self.kind, "message": self.message, **self.details}


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


Event = Union[StateChanged, QrCode, BackupMade, Restored, Notice]


def event_to_dict(event: Event) -> dict[str, Any]:
    return event.to_json()


__all__ = ["SessionState", "PageState", "PageSnapshot", "StateChanged", "QrCode", "BackupMade",
           "Restored", "Notice", "MessageReceived", "Event", "event_to_dict", "asdict"]
