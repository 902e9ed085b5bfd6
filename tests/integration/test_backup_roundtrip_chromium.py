"""Backups of real Chromium profiles: the page reads its IndexedDB + localStorage back after a
backup -> wipe -> restore, also when the backup was taken while the browser kept writing."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from linda_desktop.session.backup import FORMAT_ARCHIVE, BackupStore
from linda_desktop.session.profile import validate_profile
from tests.helpers.chromium_profile import (
    free_port,
    make_real_profile,
    open_browser,
    read_back,
    start_churn,
    stop_churn,
    write_data,
)

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _needs_chromium() -> None:
    browser = os.environ.get("LINDA_BROWSER", "/usr/bin/chromium")
    if not Path(browser).exists():
        pytest.skip(f"no Chromium at {browser}")


def test_backup_wipe_restore_reads_back(tmp_path: Path) -> None:
    port = free_port()
    origin = f"http://127.0.0.1:{port}/"
    data = tmp_path / "data"
    profile = data / "profile"
    written = make_real_profile(profile, port=port, payload_mb=2)
    store = BackupStore(data / "backups", os.urandom(32), work_dir=data / "work")
    info = store.create(profile, origin_url=origin, reason="manual")
    assert store.verify(info.id)["files"]

    shutil.rmtree(profile)  # the session is gone...
    store.restore(info.id, profile)  # ...and comes back from the backup
    assert validate_profile(profile, origin).ok

    seen = read_back(profile, port=port)
    assert seen["token"] == written["token"]  # localStorage
    assert [r["token"] for r in seen["records"]] == [written["token"]] * 5  # IndexedDB
    assert seen["payload_records"] == written["payload_records"] > 0


def test_hot_backup_while_the_page_keeps_writing_restores_to_a_working_profile(tmp_path: Path) -> None:
    port = free_port()
    origin = f"http://127.0.0.1:{port}/"
    data = tmp_path / "data"
    profile = data / "profile"
    profile.mkdir(parents=True)
    store = BackupStore(data / "backups", os.urandom(32), work_dir=data / "work")
    with open_browser(profile, port=port) as page:
        written = write_data(page, payload_mb=3)
        time.sleep(6)  # localStorage reaches the disk a few seconds after the write
        start_churn(page)  # the page keeps writing (and LevelDB compacting) during the backups
        time.sleep(0.5)
        infos = [store.create(profile, origin_url=origin, reason="auto") for _ in range(5)]
        churned = stop_churn(page)
    assert churned > 0
    for info in infos:
        store.verify(info.id)
    # Deduplicated under writes (the page grows its store several-fold meanwhile): a later backup
    # writes only the tables LevelDB wrote since the one before, the rest it shares.
    assert all(info.written is not None and info.written < info.size for info in infos[2:])
    store.mark_known_good(infos[0].id)
    store.keep = 1
    removed = store.rotate()  # garbage collection after the page's compactions: the kept ones still restore
    assert sorted(removed) == sorted(info.id for info in infos[1:-1])
    for info in (infos[0], infos[-1]):
        shutil.rmtree(profile)
        store.restore(info.id, profile)
        assert validate_profile(profile, origin).ok
        seen = read_back(profile, port=port)
        # Chromium wipes an IndexedDB it finds inconsistent: reading it all back proves it was not.
        assert seen["token"] == written["token"]
        assert [r["token"] for r in seen["records"]] == [written["token"]] * 5
        assert seen["payload_records"] >= written["payload_records"]


def test_a_backup_of_the_older_format_restores_to_a_working_profile(tmp_path: Path) -> None:
    port = free_port()
    origin = f"http://127.0.0.1:{port}/"
    data = tmp_path / "data"
    profile = data / "profile"
    written = make_real_profile(profile, port=port, payload_mb=2)
    key = os.urandom(32)
    old = BackupStore(data / "backups", key, work_dir=data / "work", backup_format=FORMAT_ARCHIVE)
    info = old.create(profile, origin_url=origin, reason="manual")
    store = BackupStore(data / "backups", key, work_dir=data / "work")  # today's store
    newer = store.create(profile, origin_url=origin, reason="manual")
    assert {b.id: b.format for b in store.list()} == {info.id: "archive", newer.id: "chunked"}
    shutil.rmtree(profile)
    store.restore(info.id, profile)
    assert validate_profile(profile, origin).ok
    seen = read_back(profile, port=port)
    assert seen["token"] == written["token"] and seen["payload_records"] == written["payload_records"]
