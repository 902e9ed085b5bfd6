"""Backups of real Chromium profiles: the page reads its IndexedDB + localStorage back after a
backup -> wipe -> restore, also when the backup was taken while the browser kept writing."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from linda_desktop.session.backup import BackupStore
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

    for info in (infos[0], infos[-1]):
        shutil.rmtree(profile)
        store.restore(info.id, profile)
        assert validate_profile(profile, origin).ok
        seen = read_back(profile, port=port)
        # Chromium wipes an IndexedDB it finds inconsistent: reading it all back proves it was not.
        assert seen["token"] == written["token"]
        assert [r["token"] for r in seen["records"]] == [written["token"]] * 5
        assert seen["payload_records"] >= written["payload_records"]
