"""Pure decisions of the recovery order (DESIGN.md §4): what a logout means, which backups may be used.

Why the order matters: WhatsApp's keys move forward with every message, so the newest verified
backup is tried first; an older generation only when the page rejected the newest for a local
cause (a kill during a key rotation leaves a structurally perfect profile the server refuses);
and no backup at all once the phone has removed this device (its backups are revoked too).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime
from typing import Protocol, TypeVar

from linda_desktop.base.events import LogoutInfo


class Cause(str, enum.Enum):
    """What a logout means for us (whatsapp-web-reference.md §3)."""

    LOCAL = "local"        # local storage broke: a backup may bring it back (newest, then one older)
    REMOVED = "removed"    # the phone or WhatsApp removed this computer: link again, no restore
    LOCKED = "locked"      # the account is locked: say so, no restore, no QR loop
    SYNC = "sync"          # the session could not sync (codes 1, 2): one restore, then link
    UNKNOWN = "unknown"    # no reason given: one restore of the newest, then link

    def __str__(self) -> str:
        return self.value


# In-page string reasons (WAWebLogoutReason, wa-js enums/LogoutReason.ts).
LOCAL_REASONS = frozenset({
    "web_fail_add_chat", "web_fail_enc_salt", "web_fail_offline_resume", "web_fail_storage_initialization",
    "missing_enc_salt", "missing_screen_lock_salt", "storage_quota_exceeded", "cache_storage_open_failed",
})
REMOVED_REASONS = frozenset({
    "user_initiated", "unknown_companion", "invalid_adv_status", "md_opt_out", "primary_identity_key_change",
})
LOCKED_REASONS = frozenset({"account_locked"})
SYNC_REASONS = frozenset({
    "syncd_failure", "syncd_error_during_bootstrap", "account_sync_error", "syncd_timeout",
    "critical_sync_timeout", "history_sync_timeout",
})
# URL codes (``logout_reason=<n>``), the fallback when the string reason was not captured.
CODE_CAUSES = {"0": Cause.LOCAL, "1": Cause.SYNC, "2": Cause.SYNC, "3": Cause.LOCKED}

# At most this many restores for one logout, by cause (never loop through every backup).
MAX_RESTORES = {Cause.LOCAL: 2, Cause.SYNC: 1, Cause.UNKNOWN: 1, Cause.REMOVED: 0, Cause.LOCKED: 0}


def classify_logout(info: LogoutInfo | None, *, damaged: bool = False) -> Cause:
    """The cause of a logout: the in-page reason first, the URL code as the fallback.

    ``damaged``: start-up found the profile's session data damaged, so a logout that names no
    cause is local damage, not the phone's doing. Reasons outside the table
    (``client_version_outdated``, ``lid_migration_*``, …) get one restore, like no reason."""
    reason = (info.reason or "").strip().lower() if info else ""
    code = (info.code or "").strip() if info else ""
    if reason in LOCAL_REASONS:
        return Cause.LOCAL
    if reason in REMOVED_REASONS:
        return Cause.REMOVED
    if reason in LOCKED_REASONS:
        return Cause.LOCKED
    if reason in SYNC_REASONS:
        return Cause.SYNC
    if not reason and code in CODE_CAUSES:
        return CODE_CAUSES[code]
    return Cause.LOCAL if damaged else Cause.UNKNOWN


class BackupLike(Protocol):
    id: str
    created_at: datetime
    known_good: bool

    @property
    def key_matches(self) -> bool | None:
        """True: our key opens it; False: another key's; None: not checked (no key at hand)."""


B = TypeVar("B", bound=BackupLike)


def usable_backups(backups: Iterable[B], revoked_before: datetime | None) -> list[B]:
    """Backups that may still hold a live session, newest first: made with our key and after
    the last certain removal by the phone."""
    items = sorted((b for b in backups if b.key_matches), key=lambda b: (b.created_at, b.id), reverse=True)
    if revoked_before is None:
        return items
    return [b for b in items if b.created_at > revoked_before]


def next_candidates(backups: Iterable[B], revoked_before: datetime | None, tried: Iterable[str]) -> list[B]:
    """What the next restore may use, best first: usable backups not tried in this recovery and
    older than every one the page rejected (an unreadable one is skipped for the next)."""
    done = set(tried)
    usable = usable_backups(backups, revoked_before)
    last_rejected = max((i for i, b in enumerate(usable) if b.id in done), default=-1)
    return usable[last_rejected + 1:]
