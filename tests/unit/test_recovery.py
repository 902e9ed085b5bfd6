"""The recovery order's pure decisions (DESIGN.md §4)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from linda_desktop.service import recovery

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)


@dataclass
class B:
    id: str
    created_at: datetime
    known_good: bool = False


def backups() -> list[B]:
    return [B("old", T0, known_good=True), B("mid", T0 + timedelta(hours=1)), B("new", T0 + timedelta(hours=2))]


@pytest.mark.parametrize("reason, kind", [
    (None, "unknown"), ("", "unknown"), ("missing_enc_salt", "local"), ("storage_quota_exceeded", "local"),
    ("web_fail_storage_initialization", "local"), ("client_version_outdated", "local"),
    ("unknown_companion", "remote"), ("device_removed", "remote"),
])
def test_logout_reasons(reason, kind) -> None:
    assert recovery.classify_logout(reason) == kind


def test_usable_backups_are_newest_first_and_skip_revoked() -> None:
    assert [b.id for b in recovery.usable_backups(backups(), None)] == ["new", "mid", "old"]
    cut = T0 + timedelta(minutes=30)
    assert [b.id for b in recovery.usable_backups(backups(), cut)] == ["new", "mid"]


def test_intact_profile_gets_one_restore_only() -> None:
    attempt = recovery.RecoveryAttempt(profile_damaged=False)
    first = attempt.next_candidates(recovery.usable_backups(backups(), None))
    assert first[0].id == "new"
    attempt.record("new")
    assert attempt.next_candidates(backups()) == []


def test_damaged_profile_may_fall_back_to_known_good_once() -> None:
    attempt = recovery.RecoveryAttempt(profile_damaged=True)
    attempt.record(attempt.next_candidates(recovery.usable_backups(backups(), None))[0].id)
    second = attempt.next_candidates(backups())
    assert [b.id for b in second] == ["old"]
    attempt.record("old")
    assert attempt.next_candidates(backups()) == [], "never more than two restores"


def test_known_good_already_tried_is_not_tried_again() -> None:
    items = [B("only", T0, known_good=True)]
    attempt = recovery.RecoveryAttempt(profile_damaged=True)
    attempt.record("only")
    assert attempt.next_candidates(items) == []
