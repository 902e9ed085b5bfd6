"""Pure decisions of the recovery order (DESIGN.md §4), kept apart so they are easy to test.

Why the order matters: WhatsApp's keys move forward with every message, so the newest verified
backup is tried first; an older known-good one only when the live profile was found damaged; and
no backup at all once the phone has removed this device (its backups are revoked too).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Protocol

# Logout reasons that point at broken local storage rather than the phone removing the device
# (whatsapp-web-reference.md). A backup can help with these; it cannot with a server-side removal.
LOCAL_LOGOUT_REASONS = frozenset({
    "storage_quota_exceeded",
    "missing_enc_salt",
    "web_fail_storage_initialization",
    "client_version_outdated",
})

MAX_RESTORES_PER_RECOVERY = 2


class BackupLike(Protocol):
    id: str
    created_at: datetime
    known_good: bool


def classify_logout(reason: str | None) -> str:
    """'local' (storage broke: a backup may help), 'remote' (the phone removed us), or 'unknown'."""
    if not reason:
        return "unknown"
    return "local" if reason.strip().lower() in LOCAL_LOGOUT_REASONS else "remote"


def usable_backups(backups: Iterable[BackupLike], revoked_before: datetime | None) -> list[BackupLike]:
    """Backups that may still hold a live session: those made after the last known removal."""
    items = sorted(backups, key=lambda b: b.created_at, reverse=True)
    if revoked_before is None:
        return items
    return [b for b in items if b.created_at > revoked_before]


@dataclass
class RecoveryAttempt:
    """How far one recovery has gone; guards the 'never more than two restores' rule."""

    profile_damaged: bool = False
    restores_done: int = 0
    tried: tuple[str, ...] = ()

    def next_candidates(self, backups: list[BackupLike]) -> list[BackupLike]:
        """Backups to try next, best first; empty when recovery must stop and ask for a QR.

        First restore: the newest usable backups (an unreadable one is skipped for the next).
        Second restore: only when the live profile had been found damaged, the last known-good
        one, and only if it is not what was already tried.
        """
        if self.restores_done >= MAX_RESTORES_PER_RECOVERY:
            return []
        fresh = [b for b in backups if b.id not in self.tried]
        if self.restores_done == 0:
            return fresh
        if not self.profile_damaged:
            return []
        return [b for b in fresh if b.known_good]

    def record(self, backup_id: str) -> None:
        self.restores_done += 1
        self.tried = (*self.tried, backup_id)
