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
