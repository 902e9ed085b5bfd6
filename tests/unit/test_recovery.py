"""The recovery order's pure decisions (DESIGN.md §4): what a logout means, which backups may be used."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from linda_desktop.base.events import LogoutInfo
from linda_desktop.service import recovery
from linda_desktop.service.recovery import Cause

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)


@dataclass
class B:
    id: str
    created_at: datetime
    known_good: bool = False
    key_matches: bool = True


def backups() -> list[B]:
    return [B("old", T0, known_good=True), B("mid", T0 + timedelta(hours=1)), B("new", T0 + timedelta(hours=2))]


@pytest.mark.parametrize("info, cause", [
    (None, Cause.UNKNOWN),
    (LogoutInfo(post_logout=True), Cause.UNKNOWN),
    (LogoutInfo(code="0"), Cause.LOCAL),
    (LogoutInfo(code="1"), Cause.SYNC),
    (LogoutInfo(code="2"), Cause.SYNC),
    (LogoutInfo(code="3"), Cause.LOCKED),
    (LogoutInfo(reason="missing_enc_salt"), Cause.LOCAL),
    (LogoutInfo(reason="storage_quota_exceeded"), Cause.LOCAL),
    (LogoutInfo(reason="web_fail_storage_initialization", code="0"), Cause.LOCAL),
    (LogoutInfo(reason="unknown_companion"), Cause.REMOVED),
    (LogoutInfo(reason="user_initiated", code="0"), Cause.REMOVED),   # the in-page reason wins
    (LogoutInfo(reason="primary_identity_key_change"), Cause.REMOVED),
    (LogoutInfo(reason="account_locked", code="3"), Cause.LOCKED),
    (LogoutInfo(reason="history_sync_timeout", code="2"), Cause.SYNC),
    (LogoutInfo(reason="client_version_outdated"), Cause.UNKNOWN),     # reload / one restore
    (LogoutInfo(reason="lid_migration_failed"), Cause.UNKNOWN),
])
def test_logout_causes(info: LogoutInfo | None, cause: Cause) -> None:
    assert recovery.classify_logout(info) == cause


def test_a_damaged_profile_makes_a_logout_without_reason_local() -> None:
    assert recovery.classify_logout(None, damaged=True) == Cause.LOCAL
    assert recovery.classify_logout(LogoutInfo(reason="unknown_companion"), damaged=True) == Cause.REMOVED


def test_usable_backups_are_newest_first_and_skip_revoked_and_other_keys() -> None:
    assert [b.id for b in recovery.usable_backups(backups(), None)] == ["new", "mid", "old"]
    cut = T0 + timedelta(minutes=30)
    assert [b.id for b in recovery.usable_backups(backups(), cut)] == ["new", "mid"]
    other = [*backups(), B("foreign", T0 + timedelta(hours=3), key_matches=False)]
    assert [b.id for b in recovery.usable_backups(other, None)] == ["new", "mid", "old"]


def test_next_candidates_go_one_generation_older_than_the_rejected_one() -> None:
    assert [b.id for b in recovery.next_candidates(backups(), None, ())] == ["new", "mid", "old"]
    assert [b.id for b in recovery.next_candidates(backups(), None, ("new",))] == ["mid", "old"]
    assert [b.id for b in recovery.next_candidates(backups(), None, ("mid",))] == ["old"], \
        "an unreadable newest skipped for mid: after mid's rejection only older ones remain"
    assert recovery.next_candidates(backups(), None, ("old",)) == []


def test_restore_limits_by_cause() -> None:
    assert recovery.MAX_RESTORES == {Cause.LOCAL: 2, Cause.SYNC: 1, Cause.UNKNOWN: 1, Cause.REMOVED: 0,
                                     Cause.LOCKED: 0}
