"""`verify [ID]`, `restore` without an ID, and `backups` without a key, as a user types them:
real processes, real files, the real keyring (issue 12 items 7, 8, 9)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from linda_desktop.base.paths import resolve_paths
from linda_desktop.session.backup import BackupStore
from linda_desktop.session.keystore import KeyStore
from tests.e2e.harness import AppProcess, cli
from tests.helpers.fake_profile import make_fake_profile, tree_digest

NO_KEYRING = {"DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent/bus", "LINDA_BACKUP_PASSPHRASE": ""}


def chunks_of(store: BackupStore, backup_id: str) -> set[str]:
    return {item[0] for f in store.verify(backup_id)["files"] for item in f["chunks"]}


@pytest.fixture
def two_backups(tmp_path: Path) -> tuple[Path, BackupStore, str, str, str]:
    """A stopped app's data folder with two backups (the newer one with a table of its own)."""
    data = tmp_path / "data"
    paths = resolve_paths(data)
    paths.ensure(paths.data)
    origin = make_fake_profile(paths.profile, idb_mb=1, table_mb=0.5, caches_mb=0.05)
    key = KeyStore(paths.passphrase_file).load_key(create=True)
    store = BackupStore(paths.backups, key, work_dir=paths.work)
    older = store.create(paths.profile, origin_url=origin)
    idb = next((paths.profile / "Default" / "IndexedDB").glob("*.indexeddb.leveldb"))
    (idb / "000123.ldb").write_bytes(os.urandom(100_000))
    newer = store.create(paths.profile, origin_url=origin)
    return data, store, older.id, newer.id, origin


def test_verify_checks_every_backup_and_names_each_failure(two_backups) -> None:
    data, store, older, newer, _ = two_backups
    out = cli(data, "verify")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"ok      {newer}", f"ok      {older}"]

    victim = sorted(chunks_of(store, newer) - chunks_of(store, older))[0]
    before = tree_digest(data / "profile")
    next((store.backups_dir / "chunks").rglob(victim)).unlink()
    out = cli(data, "verify")
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"FAILED  {newer}: ") and victim in lines[0] and lines[1] == f"ok      {older}"
    (err,) = [line for line in out.stderr.splitlines() if line.strip()]
    assert err.startswith("linda-desktop: 1 of 2 backup(s) failed verification") and newer in err
    assert cli(data, "verify", older).returncode == 0
    assert cli(data, "verify", newer).returncode == 1
    results = json.loads(cli(data, "verify", "--json").stdout)
    assert [(r["id"], r["ok"]) for r in results] == [(newer, False), (older, True)]
    assert tree_digest(data / "profile") == before  # verify never touches the profile


def test_restore_without_an_id_takes_the_newest_that_verifies_and_says_so(two_backups) -> None:
    data, store, older, newer, _ = two_backups
    expected = {f["path"]: f["sha256"] for f in store.verify(older)["files"]}
    victim = sorted(chunks_of(store, newer) - chunks_of(store, older))[0]
    next((store.backups_dir / "chunks").rglob(victim)).unlink()
    out = cli(data, "restore")
    assert out.returncode == 0, out.stderr
    assert f"Skipped backup {newer}: " in out.stdout and victim in out.stdout
    assert f"Restored backup {older} (the newest one that verifies)." in out.stdout
    assert {k: v for k, v in tree_digest(data / "profile").items() if k in expected} == expected
    assert "tries the next one" not in out.stdout + out.stderr


def test_backups_without_a_key_lists_them_and_says_they_cannot_be_opened(two_backups) -> None:
    data, store, older, newer, origin = two_backups
    foreign = BackupStore(store.backups_dir, os.urandom(32)).create(data / "profile", origin_url=origin)
    listed = {b["id"]: b for b in json.loads(cli(data, "backups", "--json").stdout)}
    assert {i: b["key_matches"] for i, b in listed.items()} == {older: True, newer: True, foreign.id: False}
    assert all(b["format"] == "chunked" for b in listed.values())

    out = cli(data, "backups", env=NO_KEYRING)
    assert out.returncode == 0, out.stderr
    assert "No backups yet." not in out.stdout
    assert all(i in out.stdout for i in (older, newer, foreign.id))
    assert "cannot be opened, verified or restored without it" in out.stdout
    keyless = json.loads(cli(data, "backups", "--json", env=NO_KEYRING).stdout)
    assert {b["id"]: b["key_matches"] for b in keyless} == {older: None, newer: None, foreign.id: None}


@pytest.mark.browser
@pytest.mark.slow
def test_verify_and_backups_through_the_running_app(linked: AppProcess, data_dir: Path, sim) -> None:
    backups = json.loads(cli(data_dir, "backups", "--json", wa_url=sim.url).stdout)
    assert backups and all(b["key_matches"] is True for b in backups)
    out = cli(data_dir, "verify", wa_url=sim.url)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"ok      {b['id']}" for b in backups]
    manifest = next(data_dir.joinpath("backups").glob(f"{backups[0]['id']}.*"))
    blob = bytearray(manifest.read_bytes())
    blob[-1] ^= 1
    manifest.write_bytes(blob)
    out = cli(data_dir, "verify", backups[0]["id"], wa_url=sim.url)
    assert out.returncode == 1 and f"FAILED  {backups[0]['id']}: This backup is damaged" in out.stdout
