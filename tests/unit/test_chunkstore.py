"""The deduplicated chunk store on real files: dedup, garbage collection (also under SIGKILL),
any damaged byte of any chunk or manifest refused, a missing chunk named, keys told apart,
older-format archives still listed/verified/restored, and the restore fallback."""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import signal
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linda_desktop.base.errors import BackupCorrupt, NoBackups, WrongKey
from linda_desktop.session.backup import (
    CHUNKED_FORMAT,
    FORMAT_ARCHIVE,
    FORMAT_CHUNKED,
    BackupStore,
    count_other_key,
    list_backups,
)
from linda_desktop.session.chunkstore import MANIFEST_SUFFIX, PIECE_SIZE, ChunkKeys, seal_chunk, seal_manifest
from tests.helpers.fake_profile import make_fake_profile, tree_digest
from tests.unit.test_backup import new_id, session_digest, untouched
from tests.unit.test_backup_kill import check_every_backup, chunk_files, start_worker

KEY = hashlib.sha256(b"chunk test key").digest()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def profile(data: Path) -> tuple[Path, str]:
    path = data / "profile"
    origin = make_fake_profile(path, idb_mb=3, table_mb=1, caches_mb=0.1)
    return path, origin


@pytest.fixture
def store(data: Path) -> BackupStore:
    return BackupStore(data / "backups", KEY, work_dir=data / "work")


def chunk_paths(store: BackupStore) -> list[Path]:
    return sorted(p for p in (store.backups_dir / "chunks").rglob("*") if p.is_file())


def idb_dir(profile_dir: Path) -> Path:
    return next((profile_dir / "Default" / "IndexedDB").glob("*.indexeddb.leveldb"))


# ---- dedup ----------------------------------------------------------------------------------


def test_unchanged_profile_writes_only_a_manifest(store: BackupStore, profile: tuple[Path, str]) -> None:
    profile_dir, origin = profile
    first = store.create(profile_dir, origin_url=origin)
    chunks_before = {p: p.stat().st_mtime_ns for p in chunk_paths(store)}
    second = store.create(profile_dir, origin_url=origin)
    assert {p: p.stat().st_mtime_ns for p in chunk_paths(store)} == chunks_before  # no chunk rewritten
    assert second.written == second.path.stat().st_size < 0.02 * first.written
    assert second.size == first.size - first.path.stat().st_size + second.path.stat().st_size
    def content(backup_id: str) -> list[tuple]:
        return [(f["path"], f["sha256"], f["chunks"]) for f in store.verify(backup_id)["files"]]

    assert content(second.id) == content(first.id)


def test_a_compaction_writes_only_the_new_tables(store: BackupStore, profile: tuple[Path, str]) -> None:
    profile_dir, origin = profile
    first = store.create(profile_dir, origin_url=origin)
    idb = idb_dir(profile_dir)
    (idb / "000099.ldb").write_bytes(os.urandom(300_000))
    (idb / "000005.ldb").unlink()
    second = store.create(profile_dir, origin_url=origin)
    manifest_bytes = second.path.stat().st_size
    # The new table plus the small files that changed or were copied: nowhere near a full backup.
    assert 300_000 < second.written - manifest_bytes < 300_000 + 200_000 < first.written / 4
    for info in (first, second):
        dest = profile_dir.parent / f"x-{info.id}"
        store.extract(info.id, dest)
    assert (profile_dir.parent / f"x-{second.id}" / (idb / "000099.ldb").relative_to(profile_dir)).is_file()
    assert tree_digest(profile_dir.parent / f"x-{second.id}") == session_digest(profile_dir, origin)


def test_a_table_rewritten_in_place_is_read_again(store: BackupStore, profile: tuple[Path, str]) -> None:
    """The unchanged-table shortcut trusts path, size, inode and mtime: any of them moving means
    the file is read and hashed again (here: same size, same inode, new bytes)."""
    profile_dir, origin = profile
    store.create(profile_dir, origin_url=origin)
    table = sorted(idb_dir(profile_dir).glob("*.ldb"))[0]
    size, inode = table.stat().st_size, table.stat().st_ino
    with open(table, "r+b") as handle:
        handle.write(os.urandom(size))
    assert (table.stat().st_size, table.stat().st_ino) == (size, inode)
    second = store.create(profile_dir, origin_url=origin)
    rel = table.relative_to(profile_dir).as_posix()
    entry = next(f for f in store.verify(second.id)["files"] if f["path"] == rel)
    assert entry["sha256"] == hashlib.sha256(table.read_bytes()).hexdigest()
    assert second.written > size


def test_big_files_are_split_and_equal_content_is_stored_once(store: BackupStore, data: Path) -> None:
    profile_dir = data / "big"
    origin = make_fake_profile(profile_dir, idb_mb=0.1, caches_mb=0.01)
    idb = idb_dir(profile_dir)
    big = os.urandom(PIECE_SIZE * 2 + 1000)
    (idb / "000050.ldb").write_bytes(big)
    (idb / "000051.ldb").write_bytes(big)  # same bytes, other name: the same chunks
    info = store.create(profile_dir, origin_url=origin)
    entries = {f["path"]: f for f in store.verify(info.id)["files"]}
    rel = (idb / "000050.ldb").relative_to(profile_dir).as_posix()
    parts = entries[rel]["chunks"]
    assert [p[1] for p in parts] == [PIECE_SIZE, PIECE_SIZE, 1000]
    assert entries[rel.replace("000050", "000051")]["chunks"] == parts
    assert len({p.name for p in chunk_paths(store)} & {p[0] for p in parts}) == 3
    assert info.size < len(big) * 1.2  # stored once


def test_chunk_names_are_keyed_and_chunks_are_encrypted(store: BackupStore, profile: tuple[Path, str]) -> None:
    profile_dir, origin = profile
    info = store.create(profile_dir, origin_url=origin)
    prefs = (profile_dir / "Default" / "Preferences").read_bytes()
    names = {p.name for p in chunk_paths(store)}
    assert hashlib.sha256(prefs).hexdigest() not in names  # names are not plain hashes
    assert ChunkKeys.derive(KEY).name(prefs) in names
    assert ChunkKeys.derive(os.urandom(32)).name(prefs) not in names
    for path in chunk_paths(store):
        assert prefs not in path.read_bytes() and b"exit_type" not in path.read_bytes()
    assert b"Preferences" not in info.path.read_bytes() and b"origin" not in info.path.read_bytes()


# ---- damage -----------------------------------------------------------------------------------


def test_any_flipped_or_cut_byte_of_a_manifest_or_chunk_is_refused(store: BackupStore, data: Path) -> None:
    profile_dir = data / "small"
    origin = make_fake_profile(profile_dir, idb_mb=0.3, table_mb=0.1, caches_mb=0.01)
    older = store.create(profile_dir, origin_url=origin)
    (idb_dir(profile_dir) / "000077.ldb").write_bytes(os.urandom(50_000))  # the target has its own chunk
    target = store.create(profile_dir, origin_url=origin)
    needed = {item[0] for f in store.verify(target.id)["files"] for item in f["chunks"]}
    files = [target.path] + [p for p in chunk_paths(store) if p.name in needed]
    blobs = {p: p.read_bytes() for p in files}

    def damaged(path: Path, blob: bytes) -> None:
        path.write_bytes(blob)
        try:
            with untouched(store, profile_dir, ignore=(path.name,)):
                with pytest.raises(BackupCorrupt) as err:
                    store.verify(target.id)
                assert err.value.fix
                with pytest.raises(BackupCorrupt):
                    store.restore(target.id, profile_dir)
        finally:
            path.write_bytes(blobs[path])

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(which=st.integers(0, len(files) - 1), where=st.floats(0, 1, exclude_max=True), mask=st.integers(1, 255))
    def flipped(which: int, where: float, mask: int) -> None:
        path = files[which]
        blob = bytearray(blobs[path])
        blob[int(where * len(blob))] ^= mask
        damaged(path, bytes(blob))

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(which=st.integers(0, len(files) - 1), where=st.floats(0, 1, exclude_max=True))
    def cut(which: int, where: float) -> None:
        path = files[which]
        damaged(path, blobs[path][: int(where * len(blobs[path]))])

    flipped()
    cut()
    store.verify(target.id)
    store.verify(older.id)


def test_a_missing_chunk_is_reported_by_name(store: BackupStore, profile: tuple[Path, str]) -> None:
    profile_dir, origin = profile
    info = store.create(profile_dir, origin_url=origin)
    victim = chunk_paths(store)[3]
    victim.unlink()
    with untouched(store, profile_dir):
        with pytest.raises(BackupCorrupt, match=f"chunk {victim.name} of .* is missing") as err:
            store.verify(info.id)
        assert "incomplete" in err.value.message and err.value.fix
        with pytest.raises(BackupCorrupt, match=victim.name):
            store.restore(info.id, profile_dir)
    (result,) = store.verify_all()
    assert result["id"] == info.id and not result["ok"] and victim.name in result["error"]


def test_a_chunk_cannot_stand_in_for_another(store: BackupStore, profile: tuple[Path, str]) -> None:
    profile_dir, origin = profile
    info = store.create(profile_dir, origin_url=origin)
    one, other = chunk_paths(store)[:2]
    one.write_bytes(other.read_bytes())  # a valid chunk, under another chunk's name
    with untouched(store, profile_dir, ignore=(one.name,)), \
            pytest.raises(BackupCorrupt, match=f"chunk {one.name[:16]} failed authentication"):
        store.verify(info.id)


def test_a_manifest_cannot_stand_in_for_another(store: BackupStore, profile: tuple[Path, str]) -> None:
    profile_dir, origin = profile
    first = store.create(profile_dir, origin_url=origin)
    second = store.create(profile_dir, origin_url=origin)
    second.path.write_bytes(first.path.read_bytes())
    with pytest.raises(BackupCorrupt, match="belongs to another backup"):
        store.verify(second.id)


@pytest.mark.parametrize(
    "path, why",
    [("../escaped", "'..'"), ("/tmp/linda-escaped-abs", "absolute"), ("Default\\..\\x", "\\"),
     ("Default/Preferences", "duplicate")],
)
def test_unsafe_paths_in_a_manifest_are_refused(store: BackupStore, profile: tuple[Path, str], data: Path,
                                                path: str, why: str) -> None:
    profile_dir, origin = profile
    older = store.create(profile_dir, origin_url=origin)
    keys = ChunkKeys.derive(KEY)
    body = b"x"
    name = keys.name(body)
    (store.backups_dir / "chunks" / keys.key_id.hex() / name[:2]).mkdir(parents=True, exist_ok=True)
    chunk = store.backups_dir / "chunks" / keys.key_id.hex() / name[:2] / name
    chunk.write_bytes(seal_chunk(keys, name, body, compress=False))
    entry = {"path": "Default/Preferences", "size": 1, "sha256": hashlib.sha256(body).hexdigest(),
             "chunks": [[name, 1, 1]]}
    bad_id = new_id(60)
    meta = {"id": bad_id, "created_at": datetime.now(timezone.utc).isoformat(), "reason": "crafted"}
    manifest = {**meta, "format": CHUNKED_FORMAT, "files": [entry, {**entry, "path": path}]}
    (store.backups_dir / f"{bad_id}{MANIFEST_SUFFIX}").write_bytes(seal_manifest(KEY, meta, manifest))
    with untouched(store, profile_dir):
        with pytest.raises(BackupCorrupt, match="unsafe entry") as err:
            store.restore(bad_id, profile_dir)
        assert why in err.value.message
    assert not (data / "escaped").exists() and not Path("/tmp/linda-escaped-abs").exists()
    store.verify(older.id)


# ---- keys -------------------------------------------------------------------------------------


def test_key_matches_is_truthful(store: BackupStore, profile: tuple[Path, str]) -> None:
    profile_dir, origin = profile
    other_key = os.urandom(32)
    mine = store.create(profile_dir, origin_url=origin)
    theirs = BackupStore(store.backups_dir, other_key).create(profile_dir, origin_url=origin)
    legacy_store = BackupStore(store.backups_dir, other_key, backup_format=FORMAT_ARCHIVE)
    legacy = legacy_store.create(profile_dir, origin_url=origin)
    by_id = {b.id: b for b in store.list()}
    assert by_id[mine.id].key_matches is True
    assert by_id[theirs.id].key_matches is False and by_id[legacy.id].key_matches is False
    keyless = {b.id: b.key_matches for b in list_backups(store.backups_dir)}
    assert keyless == {mine.id: None, theirs.id: None, legacy.id: None}
    assert all(b["key_matches"] is None for b in [i.to_json() for i in list_backups(store.backups_dir)])
    assert {b.id: b.key_matches for b in list_backups(store.backups_dir, KEY)} == {
        mine.id: True, theirs.id: False, legacy.id: False}
    assert count_other_key(store.backups_dir, KEY) == 2 and count_other_key(store.backups_dir, other_key) == 1
    with pytest.raises(WrongKey, match="different key"):
        store.verify(theirs.id)
    # A manifest that names our key but cannot be opened is damage, not another key.
    blob = bytearray(mine.path.read_bytes())
    blob[-5] ^= 1
    mine.path.write_bytes(blob)
    assert store.get(mine.id).key_matches is True and count_other_key(store.backups_dir, KEY) == 2
    with pytest.raises(BackupCorrupt):
        store.verify(mine.id)


def test_chunks_of_other_keys_survive_rotation(store: BackupStore, data: Path) -> None:
    profile_dir = data / "small"
    origin = make_fake_profile(profile_dir, idb_mb=0.2, table_mb=0.1, caches_mb=0.01)
    foreign_store = BackupStore(store.backups_dir, os.urandom(32), work_dir=data / "work")
    foreign = foreign_store.create(profile_dir, origin_url=origin)
    foreign_chunks = {p: p.read_bytes() for p in chunk_paths(store)}
    for n in range(8):
        (idb_dir(profile_dir) / f"{100 + n:06d}.ldb").write_bytes(os.urandom(20_000))
        store.create(profile_dir, origin_url=origin)
        store.rotate()
    assert all(p.read_bytes() == blob for p, blob in foreign_chunks.items())
    foreign_store.verify(foreign.id)
    assert len([b for b in store.list() if b.key_matches]) == 5


# ---- garbage collection -----------------------------------------------------------------------


def test_rotation_collects_exactly_the_chunks_no_backup_needs(store: BackupStore, data: Path) -> None:
    profile_dir = data / "small"
    origin = make_fake_profile(profile_dir, idb_mb=0.2, table_mb=0.1, caches_mb=0.01)
    rng = random.Random(3)
    ids = []
    for n in range(9):
        idb = idb_dir(profile_dir)
        (idb / f"{200 + n:06d}.ldb").write_bytes(os.urandom(30_000))
        tables = sorted(idb.glob("*.ldb"))
        if len(tables) > 4:
            tables[0].unlink()
        ids.append(store.create(profile_dir, origin_url=origin).id)
    store.mark_known_good(ids[0])
    removed = store.rotate()
    assert sorted(removed) == sorted(ids[1:4])
    referenced = check_every_backup(store, data, rng)
    assert chunk_files(store) == referenced
    # The oldest kept backup (the known-good) still restores though its tables left the profile.
    dest = data / "old"
    manifest = store.extract(ids[0], dest)
    assert tree_digest(dest) == {f["path"]: f["sha256"] for f in manifest["files"]}


def test_a_damaged_manifest_of_this_key_stops_the_sweep(store: BackupStore, data: Path) -> None:
    profile_dir = data / "small"
    origin = make_fake_profile(profile_dir, idb_mb=0.2, table_mb=0.1, caches_mb=0.01)
    first = store.create(profile_dir, origin_url=origin)
    (idb_dir(profile_dir) / "000300.ldb").write_bytes(os.urandom(30_000))
    second = store.create(profile_dir, origin_url=origin)
    orphan_dir = chunk_paths(store)[0].parent
    orphan = orphan_dir / (orphan_dir.name + "0" * 62)
    orphan.write_bytes(b"left by a killed backup")
    blob = bytearray(second.path.read_bytes())
    blob[-3] ^= 0x40
    second.path.write_bytes(blob)
    assert store.collect_garbage() == 0 and orphan.exists()  # cannot prove it unreferenced
    second.path.unlink()
    assert store.collect_garbage() >= 1 and not orphan.exists()
    store.verify(first.id)


GC_ITERATIONS = 30


def test_sigkill_during_garbage_collection_never_loses_a_chunk(tmp_path: Path) -> None:
    rng = random.Random(os.environ.get("LINDA_KILL_SEED", str(time.time_ns())))
    key = os.urandom(32)
    data = tmp_path / "data"
    profile = data / "profile"
    origin = make_fake_profile(profile, idb_mb=0.5, table_mb=0.05, caches_mb=0.01)
    store = BackupStore(data / "backups", key, keep=2, work_dir=data / "work")
    store.create(profile, origin_url=origin)
    churn = ("--churn", "40:4", "--keep", "2")  # 40 new tables a round: every rotation sweeps ~40 chunks

    # Measure how long one rotation takes here, to aim the kills inside it.
    worker = start_worker(store, data, profile, origin, key, *churn)
    assert worker.stdout is not None
    durations = []
    while len(durations) < 5:
        line = worker.stdout.readline()
        if line.startswith("gc-done"):
            durations.append(float(line.split()[1]))
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    worker.stdout.close()
    gc_seconds = sorted(durations)[len(durations) // 2]

    killed_in_gc = swept_partly = 0
    for _ in range(GC_ITERATIONS):
        worker = start_worker(store, data, profile, origin, key, *churn)
        assert worker.stdout is not None
        for _ in range(rng.randint(1, 2)):
            while not worker.stdout.readline().startswith("gc-start"):
                pass
        time.sleep(rng.uniform(0, gc_seconds * 1.2))
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        rest = worker.stdout.read().split()
        worker.stdout.close()
        killed_in_gc += "gc-done" not in rest
        referenced = check_every_backup(store, data, rng)  # every listed backup verifies and restores
        swept_partly += bool(chunk_files(store) - referenced)

    print(f"rotation takes ~{gc_seconds * 1000:.1f} ms; kills inside it: {killed_in_gc}/{GC_ITERATIONS}, "
          f"of which left unswept chunks: {swept_partly}")
    assert killed_in_gc >= GC_ITERATIONS // 4, f"only {killed_in_gc} kills landed during garbage collection"
    store.rotate()
    assert chunk_files(store) == check_every_backup(store, data, rng)


# ---- older format, verify and restore fallback -------------------------------------------------


def test_older_archives_are_listed_verified_restored_and_rotated(store: BackupStore, profile: tuple[Path, str],
                                                                  data: Path) -> None:
    profile_dir, origin = profile
    expected = session_digest(profile_dir, origin)
    legacy_store = BackupStore(store.backups_dir, KEY, work_dir=data / "work", backup_format=FORMAT_ARCHIVE)
    old = [legacy_store.create(profile_dir, origin_url=origin) for _ in range(3)]
    new = [store.create(profile_dir, origin_url=origin) for _ in range(4)]
    listed = store.list()
    assert [b.id for b in listed] == [b.id for b in reversed(old + new)]
    assert {b.format for b in listed} == {FORMAT_ARCHIVE, FORMAT_CHUNKED}
    assert all(r["ok"] for r in store.verify_all()) and len(store.verify_all()) == 7
    shutil.rmtree(profile_dir)
    store.restore(old[-1].id, profile_dir)
    assert tree_digest(profile_dir) == expected
    assert sorted(store.rotate()) == sorted(b.id for b in old[:2])
    assert not old[0].path.exists() and old[2].path.exists()
    assert all(r["ok"] for r in store.verify_all())


def test_verify_all_and_restore_fall_back_to_the_newest_that_verifies(store: BackupStore,
                                                                      profile: tuple[Path, str]) -> None:
    profile_dir, origin = profile
    good = store.create(profile_dir, origin_url=origin)
    (idb_dir(profile_dir) / "000400.ldb").write_bytes(os.urandom(40_000))
    broken = store.create(profile_dir, origin_url=origin)
    foreign = BackupStore(store.backups_dir, os.urandom(32)).create(profile_dir, origin_url=origin)
    needed = {item[0] for f in store.verify(broken.id)["files"] for item in f["chunks"]}
    only_broken = needed - {item[0] for f in store.verify(good.id)["files"] for item in f["chunks"]}
    victim = next(p for p in chunk_paths(store) if p.name in only_broken)
    victim.unlink()

    results = {r["id"]: r for r in store.verify_all()}
    assert results[good.id]["ok"] and not results[broken.id]["ok"] and not results[foreign.id]["ok"]
    assert victim.name in results[broken.id]["error"] and "different key" in results[foreign.id]["error"]
    assert [r["id"] for r in store.verify_all(good.id)] == [good.id]

    with untouched(store, profile_dir):
        target, skipped = store.newest_verified()
    assert target.id == good.id and [s["id"] for s in skipped] == [foreign.id, broken.id]
    good.path.unlink()
    with pytest.raises(NoBackups, match=re.escape(broken.id)):
        store.newest_verified()


def test_listing_checks_the_key_when_it_can_be_had(data: Path, profile: tuple[Path, str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from linda_desktop.session.backup import list_backups_checked
    from linda_desktop.session.keystore import KeyStore

    profile_dir, origin = profile
    passphrase_file = data / "backup-passphrase.json"
    KeyStore(passphrase_file).enable_passphrase("correct horse")
    monkeypatch.setenv("LINDA_BACKUP_PASSPHRASE", "correct horse")
    key = KeyStore(passphrase_file).load_key(create=False)
    mine = BackupStore(data / "backups", key).create(profile_dir, origin_url=origin)
    theirs = BackupStore(data / "backups", os.urandom(32)).create(profile_dir, origin_url=origin)
    checked = {b.id: b.key_matches for b in list_backups_checked(data / "backups", passphrase_file)}
    assert checked == {mine.id: True, theirs.id: False}
    monkeypatch.delenv("LINDA_BACKUP_PASSPHRASE")  # no key at hand: listed, nothing claimed
    checked = {b.id: b.key_matches for b in list_backups_checked(data / "backups", passphrase_file)}
    assert checked == {mine.id: None, theirs.id: None}
