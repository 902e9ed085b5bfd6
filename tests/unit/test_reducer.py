"""The session's decisions (service/reducer.py), one test per transition, no browser.

Each test's name starts with the transition's id. D-rows are the DESIGN.md §4 table, I-rows the
bullets of issue 10 (and the hostile probe's findings), the rest the other transitions.

| id  | transition                                                                                        |
| --- | ------------------------------------------------------------------------------------------------- |
| B1  | boot, never linked: launch (hidden window on a desktop, headless without a display); no restore   |
| B2  | boot, linked and damaged: restoring (local_damage), Restore(newest), then launch headless          |
| B3  | boot, damaged and no usable backup: launch anyway; its QR is no_usable_backup (no archive/revoke)  |
| R1  | resume through RESUMING (OPENING/PAIRING) → connected: restore_count +1, exit backup confirmed    |
|     | once the 15 s probation passed (or at a clean exit while connected)                               |
| R2  | a restored backup resumes through RESUMING → connected: counted, marked known-good (verify first)  |
| R7  | a restored backup connects, then is logged out with code 0 seconds later → one older, not good     |
| R3  | CONNECTED not synced: connected(syncing); no reload past the page timeout; no backup until synced  |
| R4  | fresh link: recorded; link backup (flush, known-good) only once synced and the flush delay passed  |
| R5  | hidden-window link synced: close, back up at rest (known-good), relaunch headless                  |
| R6  | issue 12 item 2: no backup since the last link → one once connected and synced                     |
| D1  | local: URL code 0 → newest backup; rejected again → one older generation; then no_usable_backup   |
| D2  | local: in-page reasons (missing_enc_salt, storage_quota_exceeded, web_fail_*) → restore            |
| D3  | removed (user_initiated, unknown_companion, invalid_adv_status, md_opt_out, primary_identity…)    |
|     | → logged_out "unlinked", revoke, archive, QR; no restore                                          |
| D4  | locked (code 3) → logged_out account_locked in words, browser parked, no QR loop                    |
| D5  | banned (TOS_BLOCK) → logged_out banned in words, parked                                            |
| D6  | sync failure (codes 1, 2) → one restore of the newest; still QR → logged_out (a guess: no revoke)  |
| D7  | no reason (post_logout alone, or nothing) → one restore; still QR → logged_out, no revoke/archive  |
| I1  | fresh never-linked profile booting through logout_reason=0 → first_link, no archive, no revoke    |
| I2  | restart before the first link (profile has data, never linked) → first_link, never "unlinked"      |
| I3  | damage with no usable backup (none, or all with another key) → no_usable_backup, in words         |
| I4  | the in-page reason wins over the URL code; the recorded reason is used when the page lost it       |
| I5  | a restored backup answered with a removal reason → removed at once (no second restore)             |
| I6  | damaged profile + QR without a reason → local (two restores), then no_usable_backup               |
| I7  | logout while running → decided by its cause                                                        |
| C1  | conflict → take_over(); at most 3 per 10 minutes, then conflict_limit; the window slides          |
| O1  | OUTDATED (DEPRECATED_VERSION) → reload, with back-off                                               |
| L1  | LOADING / RESUMING / UNKNOWN past the page timeout → error + reload                                |
| N1  | offline; network blocked (PROXYBLOCK) → offline in words                                            |
| U1  | unsupported browser → error (browser)                                                               |
| P1  | periodic backup on the interval; a failure (full disk) retries with back-off; success resets       |
| P2  | a failed link backup is retried later                                                               |
| Q1  | QR rotation: each new payload once; an idle list once                                               |
| K1  | PASSKEY in a hidden window → show that window; needs_link step=passkey with stage and code         |
| K2  | PASSKEY headless → passkey_needs_display naming import, finish-link and run --phone                 |
| K3  | the window could not be shown → passkey_needs_display                                               |
| K4  | a stage past 120 s → link_expired + reload; cancel (back to QR) → link_expired, window hidden       |
| K5  | passkey → connected, synced → back to headless                                                      |
| K6  | pairing code: asked on the QR, emitted once; expired → link_expired and a new one                   |
| K7  | no pairing code → a notice; the QR stays                                                            |
| M1  | relink → starting (relink), hidden-window launch; its QR is relink, never "unlinked"               |
| M2  | owner's restore → restoring, headless launch; connected → known-good                              |
| M3  | browser gone → browser_crashed with the delay                                                       |
| E1  | service: resume through PAIRING with a fake page: restore_count +1 in the real state file          |
| E2  | service: local logout, newest backup rejected, older one connects: known-good, nothing revoked     |
| E3  | service: a stop request before start-up → no error, no browser                                     |
| E4  | service: request_pairing_code validates the number and emits the code                              |
| E5  | service: linked but no backup since the link (a crash right after it) → one once synced            |
| E6  | service: the browser already gone at exit → exit_unclean backup, never confirmed as known-good     |
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from linda_desktop.base.events import LinkStep, LogoutInfo, NoticeKind, PageSnapshot, PageState, SessionState, StateCode
from linda_desktop.service import actions as A
from linda_desktop.service import reducer as R
from tests.helpers.fake_page import connected, logged_out, passkey, qr, snap

T = 1000.0
CFG = R.Config(flush_delay_seconds=6.0, page_timeout_seconds=90.0, backup_interval_seconds=3600.0)


def model(**kw: Any) -> R.Model:
    return R.Model(config=CFG, **kw)


def booted(linked: bool = True, *, ok: bool = True, display: bool = False, **facts: Any) -> R.Model:
    m, _ = R.boot(model(display=display), R.Boot(linked=linked, has_session=linked, profile_ok=ok, **facts))
    return m


def kinds(acts: list[A.Action]) -> list[str]:
    return [type(a).__name__ for a in acts]


def states(acts: list[A.Action]) -> list[tuple[str, str | None]]:
    return [(a.state.value, a.code.value if a.code else None) for a in acts if isinstance(a, A.EmitState)]


def of(acts: list[A.Action], kind: type) -> list[Any]:
    return [a for a in acts if isinstance(a, kind)]


def meta(acts: list[A.Action]) -> list[str]:
    return [a.event for a in acts if isinstance(a, A.RecordMeta)]


def play(m: R.Model, *snaps: PageSnapshot, t: float = T) -> tuple[R.Model, list[A.Action]]:
    out: list[A.Action] = []
    for s in snaps:
        m, acts = R.step(m, s, t)
        out += acts
    return m, out


def no_destruction(acts: list[A.Action]) -> None:
    assert not of(acts, A.MarkRevoked) and not of(acts, A.Archive), kinds(acts)


# ------------------------------------------------------------------------------------ start-up

@pytest.mark.parametrize("display, hidden", [(True, True), (False, False)])
def test_B1_boot_never_linked_launches_for_a_link(display: bool, hidden: bool) -> None:
    m, acts = R.boot(model(display=display), R.Boot(linked=False, has_session=False, profile_ok=False))
    assert acts == [A.Launch(hidden_window=hidden)]
    assert not m.expect_session


def test_B2_boot_damaged_restores_first_then_launches_headless() -> None:
    m, acts = R.boot(model(display=True), R.Boot(linked=True, has_session=True, profile_ok=False,
                                                 problems=("IndexedDB: CURRENT is missing",)))
    assert states(acts) == [("restoring", "local_damage")]
    why = "the live profile is damaged: IndexedDB: CURRENT is missing"
    assert of(acts, A.Restore) == [A.Restore(tried=(), why=why)]
    m, acts = R.restore_done(m, "b3")
    assert acts == [A.Launch(hidden_window=False)] and m.restored_from == "b3"


def test_B3_boot_damaged_without_backup_launches_then_reports_damage() -> None:
    m, _ = R.boot(model(), R.Boot(linked=True, has_session=False, profile_ok=False))
    m, acts = R.restore_done(m, None)
    assert acts == [A.Launch(hidden_window=False)]
    m, acts = play(m, logged_out(code="0"))
    assert ("needs_link", "no_usable_backup") in states(acts)
    assert not of(acts, A.Restore)
    no_destruction(acts)


# ------------------------------------------------------------------------------------ resume

def test_R1_resume_through_resuming_runs_the_connected_bookkeeping() -> None:
    m = booted()
    m, acts = play(m, snap(PageState.LOADING), snap(PageState.RESUMING), snap(PageState.RESUMING), connected())
    assert meta(acts) == ["restore", "connected"]
    assert of(acts, A.RecordMeta)[0].details["source"] == "profile"
    assert states(acts) == [("connected", None)]
    assert not of(acts, A.ConfirmExitBackup), "not before the probation"
    m, acts = R.step(m, connected(), T + R.PROBATION_SECONDS + 1)
    assert of(acts, A.ConfirmExitBackup)
    _m, acts = R.settle_recovery(play(booted(), connected())[0])
    assert of(acts, A.ConfirmExitBackup), "a clean exit while connected confirms it too"


def test_R2_restored_backup_resumes_through_pairing_and_becomes_known_good() -> None:
    m, _ = R.boot(model(), R.Boot(linked=True, has_session=True, profile_ok=False))
    m, _ = R.restore_done(m, "b2")
    m, acts = play(m, snap(PageState.RESUMING), connected())
    assert of(acts, A.RecordMeta)[0] == A.RecordMeta("restore", {"source": "b2", "account": "15550001234"})
    m, acts = R.step(m, connected(), T + R.PROBATION_SECONDS)
    assert of(acts, A.MarkKnownGood) == [A.MarkKnownGood("b2")]
    assert m.restored_from is None and m.restores == ()


def test_R7_restored_backup_rejected_seconds_after_connecting_goes_one_older() -> None:
    m, _ = play(booted(), logged_out(code="0"))
    m, _ = R.restore_done(m, "new")
    m, acts = play(m, snap(PageState.RESUMING), connected())
    assert "restore" in meta(acts)
    m, acts = R.step(m, logged_out(code="0"), T + 7)
    assert of(acts, A.Restore)[0].tried == ("new",) and not of(acts, A.MarkKnownGood)
    m, _ = R.restore_done(m, "mid")
    m, acts = play(m, connected())
    assert "restore" not in meta(acts), "one recovery counts once"
    m, acts = R.step(m, connected(), T + 30)
    assert of(acts, A.MarkKnownGood) == [A.MarkKnownGood("mid")]
    no_destruction(acts)


def test_R3_connected_not_synced_is_loading_without_reload_or_backup() -> None:
    m = booted()
    m, acts = play(m, connected(synced=False))
    assert states(acts) == [("connected", "syncing")]
    m, acts = R.step(m, connected(synced=False), T + 600)  # minutes of first sync: never reloaded
    assert not of(acts, A.Reload) and not of(acts, A.Backup)
    m, acts = R.step(m, connected(synced=True), T + 601)
    assert states(acts) == [("connected", None)]


def test_R4_fresh_link_backs_up_only_after_sync_and_flush_delay() -> None:
    m = booted(linked=False)
    m, acts = play(m, qr(), connected(synced=False))
    assert "link" in meta(acts) and "restore" not in meta(acts)
    m, acts = R.step(m, connected(synced=False), T + 100)
    assert not of(acts, A.Backup), "no flush in the middle of the first sync"
    m, acts = R.step(m, connected(synced=True), T + 200)
    assert not of(acts, A.Backup)
    m, acts = R.step(m, connected(synced=True), T + 206.5)
    assert of(acts, A.Backup) == [A.Backup("link", flush=True, known_good=True)]
    m, acts = R.backup_done(m, "link", True, T + 207)
    m, acts = R.step(m, connected(), T + 208)
    assert not of(acts, A.Backup)


def test_R5_hidden_window_link_goes_back_to_headless_through_a_cold_backup() -> None:
    m = booted(linked=False, display=True)
    assert m.hidden_window
    m, _ = play(m, qr(), connected(synced=True))
    m, acts = R.step(m, connected(), T + 7)
    assert acts == [A.Close(), A.Backup("link", cold=True, known_good=True), A.Launch(hidden_window=False)]
    assert not m.hidden_window


def test_R6_missing_link_backup_is_taken_once_synced() -> None:
    m = booted(link_backup_missing=True)
    m, acts = play(m, connected(synced=False))
    assert not of(acts, A.Backup)
    m, _ = R.step(m, connected(), T + 1)
    m, acts = R.step(m, connected(), T + 8)
    assert of(acts, A.Backup) == [A.Backup("link", flush=True, known_good=True)]


# ------------------------------------------------------------------------------------ DESIGN §4

def test_D1_local_code_0_restores_newest_then_one_older_then_reports_damage() -> None:
    m = booted()
    m, acts = play(m, logged_out(code="0"))
    assert states(acts) == [("restoring", "local_damage")]
    assert acts[-2:] == [A.Close(), A.Restore(tried=(), why=of(acts, A.Restore)[0].why)]
    m, acts = R.restore_done(m, "new")
    m, acts = play(m, snap(PageState.RESUMING), logged_out(code="0"))
    assert of(acts, A.Restore)[0].tried == ("new",), "one older generation"
    m, acts = R.restore_done(m, "mid")
    m, acts = play(m, logged_out(code="0"))
    assert not of(acts, A.Restore), "at most two restores"
    assert ("needs_link", "no_usable_backup") in states(acts)
    assert of(acts, A.EmitState)[-1].reason == R.DAMAGED_WORDS
    no_destruction(acts)


@pytest.mark.parametrize("reason", ["missing_enc_salt", "storage_quota_exceeded", "web_fail_storage_initialization",
                                    "web_fail_enc_salt", "web_fail_add_chat", "web_fail_offline_resume",
                                    "missing_screen_lock_salt", "cache_storage_open_failed"])
def test_D2_local_in_page_reasons_restore(reason: str) -> None:
    _m, acts = play(booted(), logged_out(reason=reason))
    assert of(acts, A.Restore) and reason in of(acts, A.Restore)[0].why
    assert of(acts, A.RecordMeta)[0] == A.RecordMeta("logout_seen", {"reason": reason, "code": "", "cause": "local",
                                                                      "restores_done": 0})
    no_destruction(acts)


@pytest.mark.parametrize("reason", ["user_initiated", "unknown_companion", "invalid_adv_status", "md_opt_out",
                                    "primary_identity_key_change"])
def test_D3_removed_reasons_revoke_archive_and_show_qr(reason: str) -> None:
    m, acts = play(booted(display=True), logged_out(reason=reason))
    assert not of(acts, A.Restore)
    assert states(acts) == [("logged_out", "phone_removed")]
    assert "unlinked" in of(acts, A.EmitState)[0].reason and reason in of(acts, A.EmitState)[0].reason
    assert kinds(acts)[-3:] == ["MarkRevoked", "Archive", "Launch"]
    assert of(acts, A.Launch) == [A.Launch(hidden_window=True)]
    m, acts = play(m, qr("2@fresh,k,k,k,WEB"))
    assert states(acts) == [("needs_link", "phone_removed")] and of(acts, A.EmitQr)


def test_D4_locked_says_so_and_parks_without_a_qr_loop() -> None:
    m, acts = play(booted(), logged_out(code="3"))
    assert states(acts) == [("logged_out", "account_locked")]
    assert of(acts, A.EmitState)[0].reason == R.LOCKED_WORDS
    assert of(acts, A.Park) and not of(acts, A.Restore) and not of(acts, A.EmitQr)
    no_destruction(acts)
    m, acts = play(m, qr("2@again,k,k,k,WEB"))
    assert acts == [] and m.parked


def test_D5_banned_says_so_and_parks() -> None:
    m, acts = play(booted(), snap(PageState.BANNED))
    assert states(acts) == [("logged_out", "banned")] and of(acts, A.Park)
    m, acts = play(m, snap(PageState.BANNED))
    assert acts == []


@pytest.mark.parametrize("code", ["1", "2"])
def test_D6_sync_failure_gets_one_restore_then_a_guess_without_revoking(code: str) -> None:
    m, acts = play(booted(), logged_out(code=code))
    assert of(acts, A.Restore) and states(acts) == [("restoring", None)]
    _m, acts = R.restore_done(m, None)  # no backup at all: the guess names the code, not "no reason"
    assert states(acts) == [("logged_out", "phone_removed")]
    assert f"code {code}" in of(acts, A.EmitState)[0].reason and "without giving" not in of(acts, A.EmitState)[0].reason
    m, _ = R.restore_done(m, "new")
    m, acts = play(m, logged_out(code=code))
    assert not of(acts, A.Restore)
    assert states(acts) == [("logged_out", "phone_removed")]
    assert "Backups are kept" in of(acts, A.EmitState)[0].reason
    no_destruction(acts)


@pytest.mark.parametrize("page", [logged_out(), qr()])
def test_D7_no_reason_gets_one_restore_then_a_guess(page: PageSnapshot) -> None:
    m, acts = play(booted(), page)
    assert of(acts, A.Restore)
    m, _ = R.restore_done(m, "new")
    m, acts = play(m, page)
    assert states(acts) == [("logged_out", "phone_removed")] and not of(acts, A.Restore)
    no_destruction(acts)


# ------------------------------------------------------------------------------------ issue 10

def test_I1_fresh_profile_through_logout_reason_0_is_a_first_link() -> None:
    _m, acts = play(booted(linked=False), logged_out(code="0", payload="2@first,k,k,k,WEB"))
    assert states(acts) == [("needs_link", "first_link")]
    assert of(acts, A.EmitQr) == [A.EmitQr("2@first,k,k,k,WEB")]
    assert "logged_out" not in meta(acts)
    no_destruction(acts)


def test_I2_restart_before_the_first_link_is_never_unlinked() -> None:
    m, acts = R.boot(model(), R.Boot(linked=False, has_session=True, profile_ok=True))
    assert not of(acts, A.Restore)
    m, acts = play(m, logged_out(code="0"), qr("2@next,k,k,k,WEB"))
    assert [s for s in states(acts)] == [("needs_link", "first_link")]
    assert all("unlinked" not in (a.reason or "") for a in of(acts, A.EmitState))
    no_destruction(acts)


def test_I3_damage_without_a_usable_backup_is_called_damage() -> None:
    m, acts = play(booted(), logged_out(reason="missing_enc_salt"))
    m, acts = R.restore_done(m, None)  # none, or all made with another key
    assert states(acts) == [("needs_link", "no_usable_backup")]
    assert of(acts, A.EmitState)[0].reason.startswith("the session data is damaged and no backup could restore it")
    assert of(acts, A.Launch)
    no_destruction(acts)


def test_I4_in_page_reason_wins_and_the_recorded_one_is_used() -> None:
    m, acts = play(booted(), PageSnapshot(PageState.QR, qr="2@x,k,k,k,WEB",
                                          logout=LogoutInfo(reason="user_initiated", code="0")))
    assert states(acts) == [("logged_out", "phone_removed")]
    m = booted(last_logout=LogoutInfo(reason="missing_enc_salt", post_logout=True))
    m, acts = play(m, qr())  # the page's reload dropped the reason: the recorded one decides
    assert of(acts, A.Restore) and of(acts, A.RecordMeta)[0].details["reason"] == "missing_enc_salt"


def test_I5_restored_backup_answered_with_a_removal_is_removed_at_once() -> None:
    m, _ = play(booted(), logged_out(code="0"))
    m, _ = R.restore_done(m, "new")
    m, acts = play(m, logged_out(reason="unknown_companion"))
    assert not of(acts, A.Restore) and of(acts, A.MarkRevoked) and of(acts, A.Archive)


def test_I6_damaged_profile_and_a_qr_without_reason_is_local() -> None:
    m, _ = R.boot(model(), R.Boot(linked=True, has_session=True, profile_ok=False))
    m, _ = R.restore_done(m, "new")
    m, acts = play(m, qr())
    assert of(acts, A.Restore)[0].tried == ("new",)
    m, _ = R.restore_done(m, "mid")
    m, acts = play(m, qr())
    assert ("needs_link", "no_usable_backup") in states(acts)
    no_destruction(acts)


def test_I7_logout_while_running_is_decided_by_its_cause() -> None:
    m, _ = play(booted(), connected())
    _m2, acts = play(m, logged_out(reason="user_initiated"))
    assert of(acts, A.MarkRevoked) and not of(acts, A.Restore)
    _m3, acts = play(m, logged_out(code="0"))
    assert of(acts, A.Restore) and not of(acts, A.MarkRevoked)


# ------------------------------------------------------------------------------------ running

def test_C1_conflict_takes_over_at_most_three_times_in_ten_minutes() -> None:
    m, _ = play(booted(), connected())
    taken = 0
    for i in range(4):
        m, acts = R.step(m, snap(PageState.CONFLICT), T + 10 * i)
        taken += len(of(acts, A.TakeOver))
        m, _ = R.step(m, connected(), T + 10 * i + 1)
    assert taken == 3
    assert (m.session, m.code) == (SessionState.CONNECTED, None)
    m, acts = R.step(m, snap(PageState.CONFLICT), T + 50)
    assert ("conflict", "conflict_limit") in states(acts) and not of(acts, A.TakeOver)
    m, acts = R.step(m, snap(PageState.CONFLICT), T + 10 + 601)  # the oldest left the window
    assert of(acts, A.TakeOver)


def test_O1_outdated_build_reloads_with_back_off() -> None:
    m = booted()
    m, acts = R.step(m, snap(PageState.OUTDATED), T)
    assert states(acts) == [("starting", "outdated_build")] and of(acts, A.Reload)
    m, acts = R.step(m, snap(PageState.OUTDATED), T + 1)
    assert not of(acts, A.Reload)
    m, acts = R.step(m, snap(PageState.OUTDATED), T + 6)
    assert of(acts, A.Reload)
    m, acts = R.step(m, snap(PageState.OUTDATED), T + 12)
    assert not of(acts, A.Reload), "the second wait is longer"
    m, acts = R.step(m, connected(), T + 30)
    assert m.reloads == 0


@pytest.mark.parametrize("state", [PageState.LOADING, PageState.RESUMING, PageState.UNKNOWN])
def test_L1_unsettled_past_the_page_timeout_reloads(state: PageState) -> None:
    m = booted()
    m, acts = R.step(m, snap(state), T)
    m, acts = R.step(m, snap(state), T + 89)
    assert acts == []
    m, acts = R.step(m, snap(state), T + 91)
    assert states(acts) == [("error", None)] and of(acts, A.Reload)


def test_N1_offline_and_network_blocked() -> None:
    m, acts = play(booted(), connected(), snap(PageState.OFFLINE))
    assert states(acts)[-1] == ("offline", None)
    m, acts = play(m, snap(PageState.NETWORK_BLOCKED))
    assert states(acts) == [("offline", "network_blocked")]


def test_U1_unsupported_browser_is_an_error() -> None:
    _m, acts = play(booted(), snap(PageState.UNSUPPORTED))
    assert states(acts) == [("error", "browser")]


def test_P1_periodic_backups_and_retry_after_a_failure() -> None:
    m, _ = play(booted(), connected())
    m, acts = R.step(m, connected(), T + 3599)
    assert not of(acts, A.Backup)
    m, acts = R.step(m, connected(), T + 3601)
    assert of(acts, A.Backup) == [A.Backup("auto")]
    m, _ = R.backup_done(m, "auto", False, T + 3601)  # a full disk: retried in 30 s, not in 6 hours
    m, acts = R.step(m, connected(), T + 3620)
    assert not of(acts, A.Backup)
    m, acts = R.step(m, connected(), T + 3632)
    assert of(acts, A.Backup)
    m, _ = R.backup_done(m, "auto", False, T + 3632)
    assert m.next_backup_at == T + 3632 + 60, "back-off grows"
    m, _ = R.backup_done(m, "auto", True, T + 3700)
    assert m.backup_failures == 0 and m.next_backup_at == T + 3700 + 3600


def test_P2_failed_link_backup_is_retried() -> None:
    m, _ = play(booted(linked=False), qr(), connected())
    m, acts = R.step(m, connected(), T + 7)
    assert of(acts, A.Backup)
    m, _ = R.backup_done(m, "link", False, T + 7)
    assert m.link_backup_due and m.link_backup_at == T + 37
    m, acts = R.step(m, connected(), T + 38)
    assert of(acts, A.Backup) == [A.Backup("link", flush=True, known_good=True)]


def test_Q1_qr_rotation_and_idle() -> None:
    _m, acts = play(booted(linked=False), qr("2@a,k,k,k,WEB"), qr("2@a,k,k,k,WEB"), qr("2@b,k,k,k,WEB"),
                   snap(PageState.QR_IDLE), snap(PageState.QR_IDLE))
    assert of(acts, A.EmitQr) == [A.EmitQr("2@a,k,k,k,WEB"), A.EmitQr("2@b,k,k,k,WEB"),
                                  A.EmitQr("2@b,k,k,k,WEB", idle=True)]
    assert states(acts) == [("needs_link", "first_link")]


# ------------------------------------------------------------------------------------ linking

def test_K1_passkey_in_a_hidden_window_shows_that_window() -> None:
    m, _ = play(booted(linked=False, display=True), qr())
    m, acts = play(m, passkey())
    assert of(acts, A.ShowWindow)
    change = of(acts, A.EmitState)[0]
    assert (change.state, change.code, change.step, dict(change.details)) == \
        (SessionState.NEEDS_LINK, StateCode.PASSKEY, "passkey", {"stage": "prompt"})
    m, acts = play(m, passkey(LinkStep.CODE_MATCHING, "ABCD-EFGH"))
    assert not of(acts, A.ShowWindow), "the same window, shown once"
    assert dict(of(acts, A.EmitState)[0].details) == {"stage": "code_matching", "verification_code": "ABCD-EFGH"}


def test_K2_passkey_headless_names_the_ways_out() -> None:
    _m, acts = play(booted(linked=False, display=False), qr(), passkey())
    change = of(acts, A.EmitState)[-1]
    assert change.code == StateCode.PASSKEY_NEEDS_DISPLAY and change.step == "passkey"
    for way in ("import", "finish-link", "run --phone"):
        assert way in change.reason
    assert not of(acts, A.ShowWindow)


def test_K3_window_that_cannot_be_shown_is_a_display_problem() -> None:
    m, _ = play(booted(linked=False, display=True), qr(), passkey())
    m, acts = R.show_done(m, False)
    assert states(acts) == [("needs_link", "passkey_needs_display")]


def test_K4_stage_timeout_and_cancel_ask_for_a_new_scan() -> None:
    m, _ = play(booted(linked=False, display=True), qr(), passkey())
    _m2, acts = R.step(m, passkey(), T + 131)
    assert states(acts) == [("needs_link", "link_expired")]
    assert of(acts, A.Reload) and of(acts, A.HideWindow)
    _m3, acts = play(m, qr("2@new,k,k,k,WEB"))  # Cancel: the page went back to a QR
    assert states(acts) == [("needs_link", "link_expired")] and of(acts, A.HideWindow)
    assert of(acts, A.EmitQr) == [A.EmitQr("2@new,k,k,k,WEB")]


def test_K5_passkey_link_goes_back_to_headless_once_synced() -> None:
    m, _ = play(booted(linked=False, display=True), qr(), passkey(), passkey(LinkStep.CODE_MATCHING, "ABCD-EFGH"))
    m, acts = play(m, connected(synced=False))
    assert "link" in meta(acts) and not of(acts, A.Launch)
    m, _ = R.step(m, connected(synced=True), T + 1)
    m, acts = R.step(m, connected(synced=True), T + 8)
    assert kinds(acts) == ["Close", "Backup", "Launch"] and of(acts, A.Launch)[0].hidden_window is False


def test_K6_pairing_code_is_asked_emitted_once_and_renewed() -> None:
    m = booted(linked=False)
    m = replace(m, pairing_phone="4915123456789")
    m, acts = play(m, qr())
    assert of(acts, A.RequestPairingCode) == [A.RequestPairingCode("4915123456789")]
    m, acts = R.pairing_done(m, "ABCD-EFGH")
    assert acts == [A.EmitPairingCode("ABCD-EFGH")]
    m, acts = play(m, snap(PageState.PAIRING_CODE, pairing_code="ABCD-EFGH"))
    assert not of(acts, A.EmitPairingCode) and states(acts) == [("needs_link", "pairing_code")]
    m, acts = play(m, qr("2@later,k,k,k,WEB"))  # expired
    assert states(acts) == [("needs_link", "link_expired")]
    assert of(acts, A.EmitState)[0].reason == R.PAIRING_EXPIRED_WORDS
    assert of(acts, A.RequestPairingCode), "a new code for `run --phone`"


def test_K7_no_pairing_code_keeps_the_qr() -> None:
    m = replace(booted(linked=False), pairing_phone="4915123456789")
    m, _ = play(m, qr())
    m, acts = R.pairing_done(m, None, "not accepted")
    assert of(acts, A.Notify)[0].kind == NoticeKind.LINK and m.pairing_phone is None


# ------------------------------------------------------------------------------------ owner's commands

def test_M1_relink_is_never_unlinked() -> None:
    m, _ = play(booted(display=True), connected())
    m, acts = R.relinking(m)
    assert states(acts) == [("starting", "relink")] and acts[-1] == A.Launch(hidden_window=True)
    m, acts = play(m, logged_out(code="0"))
    assert states(acts) == [("needs_link", "relink")]
    no_destruction(acts)


def test_M2_owner_restore_becomes_known_good_once_connected() -> None:
    m, _ = play(booted(), connected())
    m, acts = R.owner_restoring(m, "b1")
    assert states(acts) == [("restoring", None)]
    m, acts = R.owner_restored(m, "b1")
    assert acts == [A.Launch(hidden_window=False)]
    m, _ = play(m, connected())
    m, acts = R.step(m, connected(), T + R.PROBATION_SECONDS)
    assert of(acts, A.MarkKnownGood) == [A.MarkKnownGood("b1")]


def test_M3_browser_gone() -> None:
    _m, acts = R.browser_gone(booted(), 2.0)
    assert states(acts) == [("browser_crashed", "browser")] and "2 s" in of(acts, A.EmitState)[0].reason


# ------------------------------------------------------------------------------------ the service, with a fake page

PORT = 8765


def make_service(tmp_path: Path, scripts: list[list[PageSnapshot]], *, key: bytes | None = None,
                 **kw: Any) -> tuple[Any, Any, list[Any]]:
    from linda_desktop.base.paths import resolve_paths
    from linda_desktop.base.settings import Settings
    from linda_desktop.service.session_service import SessionService
    from linda_desktop.session.backup import BackupStore
    from tests.helpers.fake_page import FakeBrowser

    paths = resolve_paths(tmp_path / "data")
    paths.ensure_all()
    events: list[Any] = []
    browser = FakeBrowser(scripts)
    store = BackupStore(paths.backups, key or os.urandom(32), keep=5, work_dir=paths.work)
    service = SessionService(paths, Settings(flush_delay_seconds=0), wa_url=f"http://127.0.0.1:{PORT}/",
                             browser="/bin/true", on_event=events.append, page_factory=browser,
                             backup_store=store, display=False, **kw)
    return service, browser, events


async def run_until(service: Any, events: list[Any], done: Any, timeout: float = 10.0) -> None:
    task = asyncio.create_task(service.run())
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not done() and asyncio.get_running_loop().time() < deadline and not task.done():
            await asyncio.sleep(0.01)
        assert done(), [e.to_json() for e in events]
    finally:
        service.request_stop()
        await asyncio.wait_for(task, 10)


def state_events(events: list[Any]) -> list[tuple[str, str | None]]:
    from linda_desktop.base.events import StateChanged

    return [(e.state.value, e.code.value if e.code else None) for e in events if isinstance(e, StateChanged)]


def test_E1_service_resume_through_pairing_counts_a_restore(tmp_path: Path) -> None:
    from tests.helpers.fake_page import write_sound_profile

    service, browser, events = make_service(tmp_path, [[snap(PageState.LOADING), snap(PageState.RESUMING),
                                                        connected()]])
    write_sound_profile(service.paths.profile, port=PORT)
    service.meta.record("link", account="15550001234")
    asyncio.run(run_until(service, events, lambda: ("connected", None) in state_events(events)))
    data = json.loads(service.paths.state_file.read_text())
    assert data["restore_count"] == 1
    assert browser.launches == [{"headless": True, "hidden_window": False}]
    assert any(e.to_json().get("reason") == "exit" for e in events if e.to_json()["event"] == "backup")


def test_E2_service_local_logout_falls_back_one_generation(tmp_path: Path) -> None:
    from tests.helpers.fake_page import profile_generation, write_sound_profile

    service, _browser, events = make_service(tmp_path, [[logged_out(code="0")], [logged_out(code="0")],
                                                       [snap(PageState.RESUMING), connected()]])
    store = service._store
    for generation in ("old", "mid", "new"):
        write_sound_profile(service.paths.profile, port=PORT, generation=generation)
        store.create(service.paths.profile, origin_url=service.wa_url, reason="auto")
    service.meta.record("link", account="15550001234")
    ids = [b.id for b in store.list()]  # newest first
    asyncio.run(run_until(service, events, lambda: ("connected", None) in state_events(events)))
    restored = [e.from_id for e in events if type(e).__name__ == "Restored"]
    assert restored == ids[:2], "newest, then one older generation"
    assert store.known_good() is not None and store.known_good().id == ids[1]
    assert profile_generation(service.paths.profile, port=PORT) == "mid"
    assert service.meta.revoked_before() is None, "nothing revoked for a local cause"
    assert not (service.paths.quarantine.exists() and any(service.paths.quarantine.iterdir()))
    data = json.loads(service.paths.state_file.read_text())
    assert [h["details"]["cause"] for h in data["history"] if h["event"] == "logout_seen"] == ["local", "local"]


def test_E3_stop_before_start_up_ends_quietly(tmp_path: Path) -> None:
    service, browser, _events = make_service(tmp_path, [[connected()]])
    service.request_stop()
    asyncio.run(service.run())
    assert service.fatal_error is None and browser.launches == []


def test_E4_request_pairing_code_checks_the_number(tmp_path: Path) -> None:
    from linda_desktop.base.errors import LindaError
    from linda_desktop.base.events import PairingCode
    from linda_desktop.service.session_service import checked_phone

    assert checked_phone("+49 (151) 234-56789") == "4915123456789"
    assert checked_phone("0049 151 23456789") == "4915123456789"
    for bad in ("12345", "phone", "+1 555 12345678901234"):
        with pytest.raises(LindaError):
            checked_phone(bad)
    service, browser, events = make_service(tmp_path, [[qr()]])

    async def scenario() -> None:
        task = asyncio.create_task(service.run())
        while service.state != SessionState.NEEDS_LINK:
            await asyncio.sleep(0.01)
        assert await service.request_pairing_code("+49 151 23456789") == "ABCD-EFGH"
        service.request_stop()
        await task
    asyncio.run(scenario())
    assert [e.code for e in events if isinstance(e, PairingCode)] == ["ABCD-EFGH"]
    assert "pairing_code:4915123456789" in browser.pages[0].calls


def test_E5_service_takes_the_missing_link_backup(tmp_path: Path) -> None:
    from tests.helpers.fake_page import write_sound_profile

    service, _browser, events = make_service(tmp_path, [[snap(PageState.RESUMING), connected(synced=False),
                                                         connected()]])
    write_sound_profile(service.paths.profile, port=PORT)
    service.meta.record("link", account="15550001234")  # then killed before the link backup
    made = lambda: [e for e in events if type(e).__name__ == "BackupMade"]  # noqa: E731
    asyncio.run(run_until(service, events, lambda: bool(made())))
    assert made()[0].reason == "link"
    assert service._store.known_good().id == made()[0].id, "connected and verified: known-good"


def test_E6_exit_backup_after_the_browser_died_is_never_known_good(tmp_path: Path) -> None:
    from tests.helpers.fake_page import write_sound_profile

    key = os.urandom(32)
    service, browser, events = make_service(tmp_path, [[connected()]], key=key)
    write_sound_profile(service.paths.profile, port=PORT)
    service.meta.record("link", account="15550001234")

    async def scenario() -> None:
        task = asyncio.create_task(service.run())
        while service.state != SessionState.CONNECTED:
            await asyncio.sleep(0.01)
        browser.pages[-1].crashed = True  # a stop signal to the group took the browser down
        service.request_stop()
        await asyncio.wait_for(task, 10)
    asyncio.run(scenario())
    exits = [e for e in events if type(e).__name__ == "BackupMade"]
    assert [e.reason for e in exits][-1] == "exit_unclean"
    again, _browser2, events2 = make_service(tmp_path, [[connected()]], key=key)
    asyncio.run(run_until(again, events2, lambda: ("connected", None) in state_events(events2)))
    unclean = next(b for b in again._store.list() if b.reason == "exit_unclean")
    assert unclean.key_matches and not unclean.known_good
    assert again._store.known_good() is None or again._store.known_good().reason != "exit_unclean"
