"""session/state.py: counters, history, damaged files, threads."""

from __future__ import annotations

import json
import logging
import os
import threading

from linda_desktop.session.state import HISTORY_LIMIT, SessionStateStore


def test_fresh_store_is_empty_and_writes_nothing(tmp_path):
    store = SessionStateStore(tmp_path / "state" / "session-state.json")
    snap = store.snapshot()
    assert snap["restore_count"] == 0 and snap["linked"] is False and snap["history"] == []
    assert snap["last_backup"] is None and snap["account"] is None
    assert not (tmp_path / "state").exists()


def test_events_update_counters_and_survive_reload(tmp_path):
    path = tmp_path / "state" / "session-state.json"
    store = SessionStateStore(path)
    store.record("link", account={"id": "4915112345678@c.us", "phone": "+4915112345678"})
    store.record("connected")
    store.record("backup", id="20261127T101010Z", size=1234)
    store.record("restore", **{"from": "20261127T101010Z"})
    store.record("restore", **{"from": "20261126T090000Z"})
    store.record("error", message="browser crashed")

    again = SessionStateStore(path).load()
    assert again["restore_count"] == 2
    assert again["last_restore"]["from"] == "20261126T090000Z" and again["last_restore"]["at"]
    assert again["last_backup"]["id"] == "20261127T101010Z" and again["backup_count"] == 1
    assert again["last_link"] and again["last_connected"] and again["linked"] is True
    assert again["account"] == {"id": "4915112345678@c.us", "phone": "+4915112345678"}
    assert again["error_count"] == 1 and again["last_error"]["message"] == "browser crashed"
    assert [h["event"] for h in again["history"]] == ["link", "connected", "backup", "restore", "restore", "error"]
    assert again["history"][2]["details"] == {"id": "20261127T101010Z", "size": 1234}
    if os.name == "posix":
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        assert oct(path.parent.stat().st_mode & 0o777) == "0o700"


def test_logged_out_and_relink_unlink(tmp_path):
    store = SessionStateStore(tmp_path / "s.json")
    store.record("link", account="123@c.us")
    assert store.snapshot()["account"] == {"id": "123@c.us"}
    store.record("logged_out", reason="unpaired")
    snap = store.snapshot()
    assert snap["linked"] is False and snap["logout_count"] == 1 and snap["last_logged_out"]["reason"] == "unpaired"
    store.record("relink")
    assert store.snapshot()["account"] is None
    store.record("import", source_kind="localauth")
    assert store.snapshot()["last_import"]["source_kind"] == "localauth"
    store.record("something_new", note="kept in history only")
    assert store.snapshot()["history"][-1]["event"] == "something_new"


def test_history_is_capped_newest_last(tmp_path):
    store = SessionStateStore(tmp_path / "s.json")
    for i in range(HISTORY_LIMIT + 25):
        store.record("connected", n=i)
    history = SessionStateStore(tmp_path / "s.json").load()["history"]
    assert len(history) == HISTORY_LIMIT
    assert history[0]["details"]["n"] == 25 and history[-1]["details"]["n"] == HISTORY_LIMIT + 24


def test_clear_logs_keeps_counters(tmp_path):
    store = SessionStateStore(tmp_path / "s.json")
    store.record("restore", **{"from": "a"})
    store.record("backup", id="b")
    store.clear_logs()
    snap = SessionStateStore(tmp_path / "s.json").load()
    assert snap["history"] == [] and snap["restore_count"] == 1 and snap["last_backup"]["id"] == "b"


def test_garbage_file_is_set_aside_and_rebuilt(tmp_path, caplog):
    path = tmp_path / "session-state.json"
    path.write_bytes(b'{"restore_count": 3, "history": [ \x00\xff truncated')
    store = SessionStateStore(path)
    with caplog.at_level(logging.WARNING):
        snap = store.load()
    assert snap["restore_count"] == 0 and snap["history"] == []
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("session-state.json.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b'{"restore_count": 3')
    assert json.loads(path.read_text())["restore_count"] == 0  # rebuilt on disk
    assert any("damaged" in r.getMessage() for r in caplog.records)
    store.record("restore", **{"from": "x"})
    assert SessionStateStore(path).load()["restore_count"] == 1


def test_wrong_shape_json_is_set_aside(tmp_path):
    path = tmp_path / "s.json"
    path.write_text('["a", "list"]')
    assert SessionStateStore(path).load()["history"] == []
    assert any(p.name.startswith("s.json.corrupt-") for p in tmp_path.iterdir())


def test_empty_file_is_set_aside(tmp_path):
    path = tmp_path / "s.json"
    path.write_bytes(b"")
    assert SessionStateStore(path).snapshot()["restore_count"] == 0


def test_concurrent_records_from_threads(tmp_path):
    path = tmp_path / "s.json"
    store = SessionStateStore(path)
    per_thread, threads = 25, 8
    barrier = threading.Barrier(threads)

    def worker(t: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            store.record("restore", **{"from": f"t{t}-{i}"})

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    snap = SessionStateStore(path).load()
    assert snap["restore_count"] == per_thread * threads
    assert len(snap["history"]) == per_thread * threads
    seen = {h["details"]["from"] for h in snap["history"]}
    assert len(seen) == per_thread * threads
    assert not [p for p in tmp_path.iterdir() if p.name != "s.json"]  # no temp files left


def test_snapshot_is_a_copy(tmp_path):
    store = SessionStateStore(tmp_path / "s.json")
    store.record("backup", id="x")
    snap = store.snapshot()
    snap["history"].clear()
    snap["restore_count"] = 99
    assert store.snapshot()["restore_count"] == 0 and len(store.snapshot()["history"]) == 1


# -- a write that fails (issue 12 item 1): never raises, kept in memory, reported once ----------

def _blocked(tmp_path):
    """A state path whose folder is a plain file: every write fails with a real OSError."""
    blocker = tmp_path / "state"
    blocker.write_text("not a folder")
    return blocker, blocker / "session-state.json"


def test_failed_write_never_raises_keeps_the_event_and_reports_once(tmp_path):
    blocker, path = _blocked(tmp_path)
    heard = []
    store = SessionStateStore(path, on_write_error=heard.append)
    store.record("link", account="123@c.us")
    store.record("backup_failed", reason="auto", error="disk full")
    store.record("error", message="again")
    assert store.pending and store.write_error is not None
    assert len(heard) == 1 and heard[0] is store.write_error
    assert "writing the session state file" in heard[0].message and heard[0].fix
    snap = store.snapshot()
    assert snap["linked"] is True and [h["event"] for h in snap["history"]] == ["link", "backup_failed", "error"]
    assert store.load()["error_count"] == 1, "memory wins while the disk cannot be written"
    assert store.flush() is False and len(heard) == 1

    blocker.unlink()  # the fault goes away
    assert store.flush() is True
    assert not store.pending and store.write_error is None and heard[-1] is None and len(heard) == 2
    on_disk = json.loads(path.read_text())
    assert [h["event"] for h in on_disk["history"]] == ["link", "backup_failed", "error"]
    assert not [p for p in path.parent.iterdir() if p.name != path.name], "no temp file left behind"


def test_the_next_record_retries_the_write(tmp_path):
    blocker, path = _blocked(tmp_path)
    store = SessionStateStore(path)
    store.record("backup", id="a")
    blocker.unlink()
    store.record("backup", id="b")
    assert not store.pending
    assert [h["details"]["id"] for h in SessionStateStore(path).load()["history"]] == ["a", "b"]


def test_a_second_outage_is_reported_again(tmp_path):
    blocker, path = _blocked(tmp_path)
    heard = []
    store = SessionStateStore(path, on_write_error=heard.append)
    store.record("connected")
    blocker.unlink()
    store.record("connected")
    path.unlink()
    path.parent.rmdir()
    blocker.write_text("again")
    store.record("connected")
    assert [e is None for e in heard] == [False, True, False]


def test_a_broken_listener_does_not_break_the_store(tmp_path):
    _, path = _blocked(tmp_path)

    def listener(error):
        raise RuntimeError("listener bug")

    store = SessionStateStore(path, on_write_error=listener)
    store.record("connected")
    assert store.pending


def test_damaged_file_on_a_failing_disk_is_not_fatal(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("[1]")
    os.chmod(tmp_path, 0o500)
    try:
        snap = SessionStateStore(path).snapshot()
    finally:
        os.chmod(tmp_path, 0o700)
    assert snap["history"] == []


def test_a_failed_write_is_retried_without_a_new_event(tmp_path):
    import time

    blocker, path = _blocked(tmp_path)
    heard = []
    store = SessionStateStore(path, on_write_error=heard.append, retry_seconds=0.1)
    store.record("backup_failed", reason="auto")
    time.sleep(0.35)
    assert store.pending, "still failing: still pending, tried again quietly"
    assert len(heard) == 1
    blocker.unlink()
    deadline = time.monotonic() + 5
    while store.pending and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not store.pending and heard[-1] is None
    assert [h["event"] for h in json.loads(path.read_text())["history"]] == ["backup_failed"]
