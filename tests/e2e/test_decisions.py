"""The decision table, end to end: the real `linda-desktop run --json` against the simulator.

One test per row of DESIGN.md §4's table and per bullet of issue 10. Each asserts the events,
`restore_count`, the backups left usable (none revoked where the cause was local or a guess) and
that nothing went to quarantine that should not. The conflict and loading rows also run with a
German browser (Chromium's language preference in the profile, the page following
``navigator.language``).

| test                                   | row / bullet                                                       |
| -------------------------------------- | ------------------------------------------------------------------ |
| test_local_code_0_restores_one_older   | local, code 0: newest rejected the same way → one older generation |
|   [late]                               | bullet: … answered with code 0 ~seconds after it connected         |
| test_local_in_page_reason_is_captured  | local, in-page reason with no URL code (storage_quota_exceeded)    |
| test_local_at_most_two_restores        | local, every backup rejected: two restores, then damage in words   |
| test_removed_by_the_phone              | removed (user_initiated): no restore, archive, QR                  |
| test_removed_after_14_days             | removed (unknown_companion, phone unused 14 days)                  |
| test_account_locked                    | locked (code 3): words, no QR loop                                 |
| test_banned                            | banned (TOS_BLOCK): words, no QR loop                              |
| test_no_reason_gets_one_restore        | unknown (post_logout alone): one restore of the newest, then QR    |
| test_no_reason_while_still_linked      | bullet: post_logout=1, no reason, the phone still lists the device |
| test_sync_failure_gets_one_restore     | sync failure (code 2): one restore, then QR; backups stay usable   |
| test_fresh_profile_is_a_first_link     | bullet: a never-linked profile boots through logout_reason=0       |
| test_restart_before_linking            | bullet: a restart before the first link is never "unlinked"        |
| test_damage_without_usable_backup      | bullet: damage and no usable backup is damage, not the phone       |
| test_pairing_resume_is_counted         | bullet: a resume through PAIRING counts and confirms its backup    |
| test_flipped_byte_never_known_good     | bullet: a backup becomes known-good only after it verifies         |
| test_conflict_taken_over[en/de]        | bullet: conflict taken over without clicking on text, any language |
| test_outdated_build_is_reloaded        | bullet: DEPRECATED_VERSION is cured by a reload                    |
| test_first_sync_is_not_cut[en/de]      | bullet: CONNECTED-not-synced is loading: no reload, flush after it |
| test_dom_only_main_scenarios           | the DOM-only path (internals hidden): link, conflict, resume,      |
|                                        | local failure (two restores), removal                              |
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import AppProcess, cli, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]



def german_profile(data_dir: Path) -> None:
    """A German owner's browser: Chromium's language preference in the profile (headless Chromium
    ignores LANG), so ``navigator.language`` is ``de-DE`` and the page speaks German."""
    prefs = data_dir / "profile" / "Default" / "Preferences"
    prefs.parent.mkdir(parents=True, exist_ok=True)
    prefs.write_text(json.dumps({"intl": {"accept_languages": "de-DE,de", "selected_languages": "de-DE,de"}}))


# ------------------------------------------------------------------------------------ helpers

def backup_ids(data_dir: Path) -> set[str]:
    folder = data_dir / "backups"
    return {p.name.split(".")[0] for p in folder.iterdir() if p.suffix in (".lindabak", ".lindaman")} \
        if folder.is_dir() else set()


def backups_json(data_dir: Path, sim: Any) -> list[dict[str, Any]]:
    out = cli(data_dir, "backups", "--json", wa_url=sim.url)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    return data["backups"] if isinstance(data, dict) else data


def state_file(data_dir: Path) -> dict[str, Any]:
    path = data_dir / "state" / "session-state.json"
    return json.loads(path.read_text()) if path.exists() else {"history": []}


def quarantined(data_dir: Path) -> list[Path]:
    folder = data_dir / "quarantine"
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def stop(app: AppProcess) -> None:
    assert app.terminate() == 0, app.stderr_lines[-10:]


def codes(app: AppProcess, after: int = 0) -> list[tuple[str, str | None]]:
    return [(e["state"], e.get("code")) for e in app.events[after:] if e.get("event") == "state"]


def relaunch_cycle(start_app: Any, app: AppProcess) -> AppProcess:
    """Stop cleanly (exit backup), start again until connected: one more key generation and one
    more backup of it."""
    stop(app)
    again = start_app()
    again.wait_state("connected", 60)
    return again


def assert_backups_usable(data_dir: Path, before: set[str]) -> None:
    assert before <= backup_ids(data_dir), "no backup was rotated or deleted on a guess"
    assert state_file(data_dir).get("revoked_before") is None, "no backup was revoked"


def logout_seen(data_dir: Path) -> list[dict[str, Any]]:
    return [h["details"] for h in state_file(data_dir)["history"] if h["event"] == "logout_seen"]


# ------------------------------------------------------------------------------------ DESIGN §4, local

@pytest.mark.parametrize("late", [False, True], ids=["at_once", "late"])
def test_local_code_0_restores_one_older(late: bool, linked: AppProcess, start_app, data_dir: Path, sim) -> None:
    if late:  # the field report: the page connects, then is logged out with code 0 seconds later
        sim.configure(rejection_delay_seconds=4)
    second = relaunch_cycle(start_app, linked)  # backups: link, exit (gen n), ...
    stop(second)                                # ... exit (gen n+1): the newest holds the newest generation
    before = backup_ids(data_dir)
    newest_first = [b["id"] for b in backups_json(data_dir, sim)]
    count = state_file(data_dir)["restore_count"]
    sim.tear_rotation()  # the server rejects the newest generation with code 0 (web_fail_offline_resume)
    app = start_app()
    app.wait_for(lambda e: e.get("event") == "restore" and e["from"] == newest_first[1], 120)
    app.wait_state("connected", 60, after=len(app.events) - 1)
    restores = [e["from"] for e in app.of("restore")]
    assert restores == newest_first[:2], f"newest, then one older: {app.summary()}"
    assert ("restoring", "local_damage") in codes(app)
    assert "logged_out" not in app.states() and app.of("qr") == []
    assert state_file(data_dir)["restore_count"] == count + 1
    assert [d["cause"] for d in logout_seen(data_dir)] == ["local", "local"]
    assert quarantined(data_dir) == []
    assert_backups_usable(data_dir, before)
    stop(app)
    known = [b["id"] for b in backups_json(data_dir, sim) if b.get("known_good")]
    assert known == [newest_first[1]], "the generation that connected is the known-good one"


def test_local_in_page_reason_is_captured(linked: AppProcess, start_app, data_dir: Path, sim) -> None:
    second = relaunch_cycle(start_app, linked)
    stop(second)
    before = backup_ids(data_dir)
    sim.tear_rotation(reason="storage_quota_exceeded")  # no URL code: only the in-page reason says "local"
    app = start_app()
    app.wait_state("connected", 120)
    assert 1 <= len(app.of("restore")) <= 2 and app.of("qr") == []
    seen = logout_seen(data_dir)
    assert seen and seen[0]["reason"] == "storage_quota_exceeded" and seen[0]["cause"] == "local"
    assert quarantined(data_dir) == []
    assert_backups_usable(data_dir, before)


def test_local_at_most_two_restores(linked: AppProcess, start_app, data_dir: Path, sim) -> None:
    stop(linked)
    for _ in range(3):
        assert cli(data_dir, "backup", wa_url=sim.url).returncode == 0
    before = backup_ids(data_dir)
    sim.revoke(reason="missing_enc_salt")  # every copy is refused with a local reason
    app = start_app()
    change = app.wait_for(lambda e: e.get("event") == "state" and e.get("code") == "no_usable_backup", 120)
    assert change["state"] == "needs_link"
    assert change["reason"].startswith("the session data is damaged and no backup could restore it")
    app.wait_for(lambda e: e.get("event") == "qr", 30)
    assert len(app.of("restore")) == 2, app.summary()
    assert "logged_out" not in app.states()
    assert quarantined(data_dir) == []
    assert_backups_usable(data_dir, before)


# ------------------------------------------------------------------------------------ DESIGN §4, removed

def test_removed_by_the_phone(linked: AppProcess, start_app, data_dir: Path, sim) -> None:
    stop(linked)
    before = backup_ids(data_dir)
    sim.revoke()  # user_initiated: the phone removed this computer
    app = start_app()
    out = app.wait_state("logged_out", 90)
    assert out["code"] == "phone_removed" and "unlinked" in out["reason"] and "user_initiated" in out["reason"]
    app.wait_state("needs_link", 60)
    app.wait_for(lambda e: e.get("event") == "qr", 30)
    assert app.of("restore") == []
    assert len(quarantined(data_dir)) == 1, "the dead session is archived, not deleted"
    assert before <= backup_ids(data_dir), "backups are kept"
    assert state_file(data_dir)["revoked_before"], "but never used for recovery again"
    assert state_file(data_dir)["restore_count"] == 0


def test_removed_after_14_days(linked: AppProcess, start_app, data_dir: Path, sim) -> None:
    stop(linked)
    sim.age_phone(14)
    app = start_app()
    out = app.wait_state("logged_out", 90)
    assert out["code"] == "phone_removed" and "unknown_companion" in out["reason"]
    app.wait_for(lambda e: e.get("event") == "qr", 60)
    assert app.of("restore") == [] and len(quarantined(data_dir)) == 1


# ------------------------------------------------------------------------------------ DESIGN §4, locked / banned

def test_account_locked(linked: AppProcess, start_app, data_dir: Path, sim) -> None:
    stop(linked)
    before = backup_ids(data_dir)
    sim.revoke(reason="account_locked")  # URL logout_reason=3
    app = start_app()
    out = app.wait_state("logged_out", 90)
    assert out["code"] == "account_locked" and "locked" in out["reason"]
    mark = len(app.events)
    assert not wait_until(lambda: len(app.events) > mark, 8), f"no QR loop: {app.summary()}"
    assert app.of("restore") == [] and app.of("qr") == []
    assert quarantined(data_dir) == []
    assert wait_until(lambda: not app.browser_pids(), 10), "the browser is closed while locked"
    assert before <= backup_ids(data_dir)


def test_banned(linked: AppProcess, start_app, data_dir: Path, sim) -> None:
    stop(linked)
    sim.ban()
    app = start_app()
    out = app.wait_state("logged_out", 90)
    assert out["code"] == "banned" and "banned" in out["reason"]
    mark = len(app.events)
    assert not wait_until(lambda: len(app.events) > mark, 8), f"no QR loop: {app.summary()}"
    assert app.of("restore") == [] and app.of("qr") == [] and quarantined(data_dir) == []


# ------------------------------------------------------------------------------------ DESIGN §4, unknown

def test_no_reason_gets_one_restore(linked: AppProcess, start_app, data_dir: Path, sim) -> None:
    stop(linked)
    before = backup_ids(data_dir)
    sim.revoke(reason="")  # post_logout=1 and nothing else
    app = start_app()
    out = app.wait_state("logged_out", 90)
    assert out["code"] == "phone_removed" and "Backups are kept" in out["reason"]
    app.wait_for(lambda e: e.get("event") == "qr", 60)
    assert len(app.of("restore")) == 1, app.summary()
    assert quarantined(data_dir) == [], "a guess archives nothing"
    assert_backups_usable(data_dir, before)


def test_no_reason_while_still_linked(linked: AppProcess, data_dir: Path, sim) -> None:
    mark = len(linked.events)
    assert wait_until(lambda: sim.logout_pages() >= 1, 15), "no live page to log out"
    linked.wait_for(lambda e: e.get("event") == "restore", 60, after=mark)
    linked.wait_state("connected", 60, after=mark)
    assert len(linked.of("restore")) == 1 and linked.of("qr")[-1:] == [e for e in linked.of("qr")
                                                                         if linked.events.index(e) < mark][-1:]
    assert "logged_out" not in [e["state"] for e in linked.events[mark:] if e.get("event") == "state"]
    assert [d["cause"] for d in logout_seen(data_dir)] == ["unknown"]
    assert quarantined(data_dir) == [] and state_file(data_dir).get("revoked_before") is None


def test_sync_failure_gets_one_restore(linked: AppProcess, start_app, data_dir: Path, sim) -> None:
    stop(linked)
    before = backup_ids(data_dir)
    sim.revoke(reason="history_sync_timeout")  # URL logout_reason=2
    app = start_app()
    app.wait_state("logged_out", 90)
    app.wait_for(lambda e: e.get("event") == "qr", 60)
    assert len(app.of("restore")) == 1
    assert [d["cause"] for d in logout_seen(data_dir)][:1] == ["sync"]
    assert quarantined(data_dir) == []
    assert_backups_usable(data_dir, before)


# ------------------------------------------------------------------------------------ issue 10 bullets

def test_fresh_profile_is_a_first_link(start_app, data_dir: Path, sim) -> None:
    app = start_app()
    change = app.wait_state("needs_link", 60)
    assert change["code"] == "first_link"
    app.wait_for(lambda e: e.get("event") == "qr", 30)
    assert sim.counters()["boots"] >= 1
    assert "logged_out" not in app.states() and app.of("restore") == []
    assert quarantined(data_dir) == []
    assert state_file(data_dir).get("revoked_before") is None and not state_file(data_dir).get("logout_count")


def test_restart_before_linking(start_app, data_dir: Path, sim) -> None:
    for _ in range(4):  # more than the 3 quarantine slots
        app = start_app()
        assert app.wait_state("needs_link", 60)["code"] == "first_link"
        app.wait_for(lambda e: e.get("event") == "qr", 30)
        stop(app)
        assert "logged_out" not in app.states()
        assert all("unlinked" not in (e.get("reason") or "") for e in app.of("state"))
    assert quarantined(data_dir) == []


def test_damage_without_usable_backup(linked: AppProcess, start_app, data_dir: Path, sim) -> None:
    import shutil

    stop(linked)
    shutil.rmtree(data_dir / "profile" / "Default" / "IndexedDB")
    for path in (data_dir / "backups").iterdir():  # no backup at all
        if path.is_file() and path.suffix in (".lindabak", ".lindaman"):
            path.unlink()
    app = start_app()
    change = app.wait_for(lambda e: e.get("event") == "state" and e.get("code") == "no_usable_backup", 90)
    assert change["state"] == "needs_link"
    assert "the session data is damaged and no backup could restore it" in change["reason"]
    assert "logged_out" not in app.states()
    assert all("unlinked" not in (e.get("reason") or "") for e in app.of("state"))
    assert quarantined(data_dir) == [] and state_file(data_dir).get("revoked_before") is None


def test_pairing_resume_is_counted(linked: AppProcess, start_app, data_dir: Path, sim) -> None:
    stop(linked)
    exit_backup = backups_json(data_dir, sim)[0]
    assert exit_backup["reason"] == "exit" and not exit_backup.get("known_good")
    count = state_file(data_dir)["restore_count"]
    sim.reset_counters()
    app = start_app()
    app.wait_state("connected", 60)  # the page resumes UNLAUNCHED → OPENING → PAIRING → CONNECTED
    assert app.of("qr") == [] and app.of("restore") == []
    assert wait_until(lambda: state_file(data_dir)["restore_count"] == count + 1, 10)
    assert sim.counters()["require_calls_before_boot"] == 0
    stop(app)
    confirmed = {b["id"]: b for b in backups_json(data_dir, sim)}[exit_backup["id"]]
    assert confirmed["known_good"], "the exit backup the session came back from is proven good"


def test_flipped_byte_never_known_good(linked: AppProcess, start_app, data_dir: Path, sim) -> None:
    stop(linked)
    listed = backups_json(data_dir, sim)
    exit_backup, link_backup = listed[0], next(b for b in listed if b["reason"] == "link")
    path = next(p for p in (data_dir / "backups").iterdir() if p.name.startswith(exit_backup["id"]))
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    app = start_app()
    app.wait_state("connected", 60)
    app.wait_for(lambda e: e.get("event") == "notice" and e.get("kind") == "backup_unusable", 30)
    stop(app)
    known = [b["id"] for b in backups_json(data_dir, sim) if b.get("known_good")]
    assert exit_backup["id"] not in known and link_backup["id"] in known


@pytest.mark.parametrize("language", ["en", "de"])
def test_conflict_taken_over(language: str, apps, data_dir: Path, sim) -> None:
    if language == "de":
        german_profile(data_dir)
    app = AppProcess(data_dir, sim.url).start()
    apps.append(app)
    app.wait_for(lambda e: e.get("event") == "qr", 60)
    sim.link()
    app.wait_for(lambda e: e.get("event") == "backup" and e.get("reason") == "link", 60)
    assert wait_until(lambda: any(p["live"] and p["lang"].startswith(language) for p in sim.pages()), 10), \
        sim.pages()
    sim.reset_counters()
    mark = len(app.events)
    assert wait_until(lambda: sim.conflict() >= 1, 15), "no connected page to put in conflict"
    app.wait_state("conflict", 30, after=mark)
    app.wait_state("connected", 30, after=mark)
    counters = sim.counters()
    assert counters["takeover_calls"] >= 1 and counters["text_clicks"] == 0, counters


def test_outdated_build_is_reloaded(linked: AppProcess, start_app, data_dir: Path, sim) -> None:
    stop(linked)
    sim.deprecate_build(1)
    app = start_app()
    outdated = app.wait_for(lambda e: e.get("event") == "state" and e.get("code") == "outdated_build", 60)
    assert outdated["state"] != "error"
    app.wait_state("connected", 60)
    assert app.of("qr") == [] and app.of("restore") == []
    assert sim.counters()["deprecated_loads"] == 1


@pytest.mark.parametrize("language", ["en", "de"])
def test_first_sync_is_not_cut(language: str, apps, data_dir: Path, sim) -> None:
    sim.configure(sync_seconds=12)  # a big account: minutes on the real page
    if language == "de":
        german_profile(data_dir)
    app = AppProcess(data_dir, sim.url).start()
    apps.append(app)
    app.wait_for(lambda e: e.get("event") == "qr", 60)
    sim.reset_counters()
    sim.link()
    assert wait_until(lambda: any(p["live"] and p["lang"].startswith(language) for p in sim.pages()), 10)
    syncing = app.wait_for(lambda e: e.get("event") == "state" and e.get("code") == "syncing", 30)
    synced = app.wait_for(lambda e: e.get("event") == "state" and e.get("state") == "connected"
                          and not e.get("code"), 60)
    assert synced["_t"] - syncing["_t"] >= 10, "the sync ran to its end"
    backup = app.wait_for(lambda e: e.get("event") == "backup" and e.get("reason") == "link", 60)
    assert backup["_t"] > synced["_t"], "the storage flush waited for the first sync"
    counters = sim.counters()
    assert counters["logouts"] == 0, "no reload cut into the first sync (that logs out with code 1/2)"
    assert "logged_out" not in app.states() and app.of("restore") == []


# ------------------------------------------------------------------------------------ DOM only

def test_dom_only_main_scenarios(start_app, data_dir: Path, sim) -> None:
    """The page's internals hidden (``window.require`` never serves WhatsApp's modules): link,
    conflict, resume, a local failure and a removal still end where they should."""
    sim.configure(internals=False)
    app = start_app()
    assert app.wait_state("needs_link", 60)["code"] == "first_link"
    app.wait_for(lambda e: e.get("event") == "qr", 30)
    sim.link()
    app.wait_for(lambda e: e.get("event") == "backup" and e.get("reason") == "link", 60)
    mark = len(app.events)
    assert wait_until(lambda: sim.conflict() >= 1, 15)
    app.wait_state("conflict", 30, after=mark)
    app.wait_state("connected", 30, after=mark)
    again = relaunch_cycle(start_app, app)  # a resume from the DOM alone
    assert again.of("qr") == []
    stop(again)
    before = backup_ids(data_dir)
    sim.tear_rotation()
    local = start_app()
    local.wait_state("connected", 120)
    assert len(local.of("restore")) == 2 and local.of("qr") == [], local.summary()
    assert_backups_usable(data_dir, before)
    stop(local)
    sim.revoke()
    removed = start_app()
    removed.wait_state("logged_out", 90)
    removed.wait_for(lambda e: e.get("event") == "qr", 60)
    assert len(removed.of("restore")) <= 1
