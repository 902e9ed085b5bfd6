"""What the reducer asks the service to do: plain data, carried out by ``SessionService``.

Actions that have a result the decisions depend on (``Restore``, ``Backup``, ``ShowWindow``,
``RequestPairingCode``) are answered by the service through the reducer's ``*_done`` functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from linda_desktop.base.events import NoticeKind, SessionState, StateCode


@dataclass(frozen=True)
class EmitState:
    state: SessionState
    code: StateCode | None = None
    reason: str | None = None
    step: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    account: str | None = None


@dataclass(frozen=True)
class EmitQr:
    data: str
    idle: bool = False


@dataclass(frozen=True)
class EmitPairingCode:
    code: str


@dataclass(frozen=True)
class Notify:
    kind: NoticeKind
    message: str


@dataclass(frozen=True)
class RecordMeta:
    """One entry in the state file (``SessionStateStore.record``); a failed write never raises."""

    event: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Restore:
    """Close the browser and restore the best backup not in ``tried`` and older than every one
    the page rejected; answered with ``reducer.restore_done``."""

    tried: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class Archive:
    """Close the browser and move the dead session to quarantine (never deleted outright)."""

    why: str


@dataclass(frozen=True)
class MarkRevoked:
    """Backups made before now belong to a device the phone removed: recovery never uses them."""


@dataclass(frozen=True)
class Launch:
    """Close the current browser (if any) and start one: headless, or with a real window kept
    out of sight (``hidden_window``) so a passkey step can finish in it."""

    hidden_window: bool = False


@dataclass(frozen=True)
class Close:
    pass


@dataclass(frozen=True)
class Park:
    """Close the browser and wait for the owner (account locked or banned: no QR loop)."""


@dataclass(frozen=True)
class ShowWindow:
    """Bring the linking window on screen; answered with ``reducer.show_done``."""


@dataclass(frozen=True)
class HideWindow:
    pass


@dataclass(frozen=True)
class Reload:
    pass


@dataclass(frozen=True)
class TakeOver:
    pass


@dataclass(frozen=True)
class RefreshQr:
    pass


@dataclass(frozen=True)
class RequestPairingCode:
    phone: str


@dataclass(frozen=True)
class Backup:
    """Take a backup. ``flush``: make localStorage reach the disk first (right after a link).
    ``cold``: the browser is closed (profile at rest). ``known_good``: the session is connected,
    so the backup becomes known-good once it verifies. Answered with ``reducer.backup_done``."""

    reason: str
    flush: bool = False
    cold: bool = False
    known_good: bool = False


@dataclass(frozen=True)
class MarkKnownGood:
    """``backup_id`` reached connected: mark it known-good if it verifies."""

    backup_id: str


@dataclass(frozen=True)
class ConfirmExitBackup:
    """The profile came back connected as it was left at the last clean exit: the backup taken
    at that exit is proven good (if it verifies)."""


Action = (EmitState | EmitQr | EmitPairingCode | Notify | RecordMeta | Restore | Archive | MarkRevoked | Launch
          | Close | Park | ShowWindow | HideWindow | Reload | TakeOver | RefreshQr | RequestPairingCode | Backup
          | MarkKnownGood | ConfirmExitBackup)
