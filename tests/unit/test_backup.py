"""BackupStore on real files: round trip, listing, rotation, and every bad input refused with a
typed error that leaves the live profile and the older backups exactly as they were."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import multiprocessing
import os
import secrets
import stat
import subprocess
import tarfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linda_desktop.base.errors import BackupCorrupt, BackupNotFound, ProfileInvalid, StorageError, WrongKey
from linda_desktop.session.backup import FORMAT_ARCHIVE, FORMAT_CHUNKED, MANIFEST_NAME, SUFFIX, BackupStore
from linda_desktop.session.chunkstore import MANIFEST_SUFFIX
from linda_desktop.session.crypto import EncryptingWriter
from linda_desktop.session.profile import session_files
from tests.helpers.fake_profile import make_fake_profile, tree_digest

KEY = hashlib.sha256(b"test key").digest()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def profile(data: Path) -> tuple[Path, str]:
    path = data / "profile"
    origin = make_fake_profile(path, idb_mb=2.5, caches_mb=0.3)  # ~3 chunks of 1 MiB
    return path, origin


@pytest.fixture
def store(data: Path) -> BackupStore:
    return BackupStore(data / "backups", KEY, work_dir=data / "work")


def session_digest(profile_dir: Path, origin: str) -> dict[str, str]:
    return {rel: hashlib.sha256((profile_dir / rel).read_bytes()).hexdigest()
            for rel in session_files(profile_dir, origin)}


# ---- crafting archives with the real writer --------------------------------------------------


def new_id(offset_s: int = 0) -> str:
    when = datetime.now(timezone.utc) + timedelta(seconds=offset_s)
    return f"{when:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def regular(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o600
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, None


def manifest_for(backup_id: str, files: dict[str, bytes]) -> dict:
    return {
        "id": backup_id,
        "format": 1,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "reason": "crafted",
        "origin": "http://127.0.0.1:8765/",
        "files": [{"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for p, d in files.items()],
    }


def craft(store: BackupStore, entries: list, manifest: dict | None, backup_id: str, key: bytes = KEY) -> str:
    """Write ``<backup_id>.lindabak`` holding exactly ``entries`` (+ ``manifest``), sealed for real."""
    store.backups_dir.mkdir(parents=True, exist_ok=True)
    meta = {"id": backup_id, "created_at": datetime.now(timezone.utc).isoformat(), "reason": "crafted"}
    with open(store.backups_dir / f"{backup_id}{SUFFIX}", "wb") as raw:
        writer = EncryptingWriter(raw, key, meta)
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for info, payload in entries:
                tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
            if manifest is not None:
                body = json.dumps(manifest).encode()
                info, _ = regular(MANIFEST_NAME, body)
                tar.addfile(info, io.BytesIO(body))
        writer.close()
    return backup_id


# ---- round trip --------------------------------------------------------------------------------


def test_create_list_verify_extract_round_trip(store: BackupStore, profile: tuple[Path, str], data: Path) -> None:
    profile_dir, origin = profile
    info = store.create(profile_dir, origin_url=origin, reason="manual", browser_version="Chromium 156",
                        app_version="9.9")
    assert info.path == store.backups_dir / f"{info.id}{MANIFEST_SUFFIX}" and info.path.is_file()
    assert info.format == FORMAT_CHUNKED and info.to_json()["format"] == "chunked"
    stored = sum(p.stat().st_size for p in (store.backups_dir / "chunks").rglob("*") if p.is_file())
    assert info.reason == "manual" and info.size == info.path.stat().st_size + stored and not info.known_good
    assert info.written == info.size  # the first backup writes every chunk
    assert stat.S_IMODE(store.backups_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(info.path.stat().st_mode) == 0o600
    assert "path" not in info.to_json() and info.to_json()["id"] == info.id

    assert [b.id for b in store.list()] == [info.id] and store.newest() == store.get(info.id)
    manifest = store.verify(info.id)
    assert manifest["origin"] == origin and manifest["browser_version"] == "Chromium 156"
    assert manifest["app_version"] == "9.9" and manifest["reason"] == "manual"
    expected = session_digest(profile_dir, origin)
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == expected
    # Caches and Singleton locks are not in it; the IndexedDB store is, whole.
    assert not any("Cache" in p or "Singleton" in p for p in expected)
    assert any(p.endswith(".ldb") for p in expected)

    dest = data / "extracted"
    store.extract(info.id, dest)
    assert tree_digest(dest) == expected
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in dest.rglob("*") if p.is_file())
    with pytest.raises(FileExistsError):
        store.extract(info.id, dest)  # only into a new or empty folder
    # No leftovers of staging or temp files.
    assert sorted(os.listdir(store.backups_dir)) == [".lock", info.path.name, "chunks"]
    assert not [p for p in store.backups_dir.rglob("*.tmp")]
    assert not [p for p in (data / "work").iterdir() if p.name.startswith(".linda-")]


def test_restore_swaps_in_and_keeps_the_old_profile_aside(store: BackupStore, profile: tuple[Path, str]) -> None:
    profile_dir, origin = profile
    expected = session_digest(profile_dir, origin)
    info = store.create(profile_dir, origin_url=origin)
    (profile_dir / "Default" / "Preferences").write_text("damaged")  # the live profile changes
    old = tree_digest(profile_dir)

    assert store.restore(info.id, profile_dir).id == info.id
    assert tree_digest(profile_dir) == expected
    assert store.last_replaced is not None and tree_digest(store.last_replaced) == old
    assert not (profile_dir / "SingletonLock").is_symlink()


def test_restore_into_a_wiped_profile(store: BackupStore, profile: tuple[Path, str]) -> None:
    profile_dir, origin = profile
    expected = session_digest(profile_dir, origin)
    info = store.create(profile_dir, origin_url=origin)
    import shutil

    shutil.rmtree(profile_dir)
    store.restore(info.id, profile_dir)
    assert tree_digest(profile_dir) == expected and store.last_replaced is None


def test_listing_needs_no_key_and_tells_other_keys_apart(store: BackupStore, profile: tuple[Path, str]) -> None:
    profile_dir, origin = profile
    info = store.create(profile_dir, origin_url=origin, reason="exit")
    other = BackupStore(store.backups_dir, os.urandom(32))
    (listed,) = other.list()
    assert listed.id == info.id and listed.reason == "exit" and listed.created_at == info.created_at
    assert listed.key_matches is False and store.get(info.id).key_matches is True
    before = tree_digest(profile_dir)
    with pytest.raises(WrongKey, match="different key") as err:
        other.verify(info.id)
    assert err.value.fix
    with pytest.raises(WrongKey):
        other.restore(info.id, profile_dir)
    assert tree_digest(profile_dir) == before and info.path.is_file()
    store.verify(info.id)


def test_list_ignores_temp_and_foreign_files_and_get_refuses_odd_ids(store: BackupStore,
                                                                    profile: tuple[Path, str]) -> None:
    profile_dir, origin = profile
    info = store.create(profile_dir, origin_url=origin)
    (store.backups_dir / f".{new_id()}.{os.getpid()}.tmp").write_bytes(b"half")
    (store.backups_dir / "notes.txt").write_text("x")
    (store.backups_dir / f"garbage{SUFFIX}").write_bytes(b"x")
    assert [b.id for b in store.list()] == [info.id]
    for bad in ("nope", "../" + info.id, info.id + "/../x", "", new_id()):
        with pytest.raises(BackupNotFound):
            store.get(bad)


def test_newest_first_and_empty_store(store: BackupStore, profile: tuple[Path, str]) -> None:
    assert store.list() == [] and store.newest() is None and store.known_good() is None
    profile_dir, origin = profile
    ids = [store.create(profile_dir, origin_url=origin).id for _ in range(3)]
    assert [b.id for b in store.list()] == ids[::-1]


def test_no_session_no_backup(store: BackupStore, data: Path) -> None:
    (data / "empty").mkdir(parents=True)
    with pytest.raises(ProfileInvalid, match="no session"):
        store.create(data / "empty", origin_url="http://127.0.0.1:1/")
    assert store.list() == []


# ---- rotation and known-good -------------------------------------------------------------------


def test_rotate_keeps_newest_five_and_the_known_good(store: BackupStore, data: Path) -> None:
    profile_dir = data / "small"
    origin = make_fake_profile(profile_dir, idb_mb=0.05, caches_mb=0.01)
    ids = [store.create(profile_dir, origin_url=origin).id for _ in range(8)]  # oldest first
    store.mark_known_good(ids[1])
    assert store.known_good().id == ids[1] and store.get(ids[1]).known_good

    removed = store.rotate()
    assert sorted(removed) == sorted([ids[0], ids[2]])
    assert {b.id for b in store.list()} == set(ids[3:]) | {ids[1]}

    more = [store.create(profile_dir, origin_url=origin).id for _ in range(4)]
    store.rotate()
    assert {b.id for b in store.list()} == set(more) | {ids[7], ids[1]}  # known-good never rotated away
    assert store.rotate() == []

    store.mark_known_good(more[-1])  # exactly one known-good at a time
    assert [b.id for b in store.list() if b.known_good] == [more[-1]]
    assert sorted(store.rotate()) == [ids[1]]
    with pytest.raises(BackupNotFound):
        store.mark_known_good(ids[0])


def test_rotate_never_removes_backups_made_with_another_key(store: BackupStore, data: Path) -> None:
    profile_dir = data / "small"
    origin = make_fake_profile(profile_dir, idb_mb=0.05, caches_mb=0.01)
    foreign = BackupStore(store.backups_dir, os.urandom(32)).create(profile_dir, origin_url=origin)
    for _ in range(6):
        store.create(profile_dir, origin_url=origin)
    removed = store.rotate()
    assert len(removed) == 1 and foreign.id not in removed
    assert foreign.path.is_file() and len(store.list()) == 6


def test_leftovers_of_dead_backups_are_cleaned(store: BackupStore, profile: tuple[Path, str], data: Path) -> None:
    profile_dir, origin = profile
    dead = subprocess.Popen(["true"])
    dead.wait()
    store.backups_dir.mkdir(parents=True)
    (data / "work").mkdir(parents=True)
    stale_temp = store.backups_dir / f".{new_id()}.{dead.pid}.tmp"
    stale_temp.write_bytes(b"half a backup")
    stale_stage = data / "work" / f".linda-stage-{dead.pid}-abcd1234"
    (stale_stage / "Default").mkdir(parents=True)
    live_temp = store.backups_dir / f".{new_id()}.1.tmp"  # pid 1 is alive: another process's backup
    live_temp.write_bytes(b"in progress")
    assert store.list() == []
    store.create(profile_dir, origin_url=origin)
    assert not stale_temp.exists() and not stale_stage.exists() and live_temp.exists()


# ---- bad archives: typed errors, nothing touched -----------------------------------------------


def backups_digest(store: BackupStore) -> dict[str, str]:
    """Every file under the backups folder (archives, manifests, chunks) and its SHA-256."""
    if not store.backups_dir.exists():
        return {}
    return {
        str(p.relative_to(store.backups_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in store.backups_dir.rglob("*")
        if p.is_file() and p.name != ".lock"
    }


@contextlib.contextmanager
def untouched(store: BackupStore, profile_dir: Path, *, ignore: tuple[str, ...] = ()) -> Iterator[None]:
    """Asserts the live profile and every backup file are byte-for-byte the same after
    (``ignore``: names of files the test itself damages or removes)."""
    profile_before = tree_digest(profile_dir)
    backups_before = backups_digest(store)
    yield
    assert tree_digest(profile_dir) == profile_before
    after = backups_digest(store)
    for name, digest in backups_before.items():
        if not any(name.endswith(part) for part in ignore):
            assert after.get(name) == digest, name
    work = store.work_dir
    leftovers = [p.name for p in work.iterdir() if p.name.startswith(".linda-")] if work and work.exists() else []
    assert leftovers == []


def test_truncated_and_flipped_archives_are_refused(store: BackupStore, profile: tuple[Path, str], data: Path) -> None:
    """The older one-archive format (still restored): cuts and bit flips anywhere are refused."""
    profile_dir, origin = profile
    legacy = BackupStore(store.backups_dir, KEY, work_dir=data / "work", backup_format=FORMAT_ARCHIVE)
    good = legacy.create(profile_dir, origin_url=origin)
    assert good.format == FORMAT_ARCHIVE and good.path.name.endswith(SUFFIX)
    blob = good.path.read_bytes()
    assert len(blob) > 2 * (1 << 20)  # several chunks

    @settings(max_examples=75, deadline=None, suppress_health_check=list(HealthCheck))
    @given(cut=st.integers(min_value=0, max_value=len(blob) - 1))
    def truncated(cut: int) -> None:
        bad_id = new_id(60)
        (store.backups_dir / f"{bad_id}{SUFFIX}").write_bytes(blob[:cut])
        try:
            with untouched(store, profile_dir):
                with pytest.raises(BackupCorrupt) as err:
                    store.restore(bad_id, profile_dir)
                assert err.value.fix
        finally:
            (store.backups_dir / f"{bad_id}{SUFFIX}").unlink()

    @settings(max_examples=75, deadline=None, suppress_health_check=list(HealthCheck))
    @given(pos=st.integers(min_value=0, max_value=len(blob) - 1), mask=st.integers(min_value=1, max_value=255))
    def flipped(pos: int, mask: int) -> None:
        bad_id = new_id(60)
        damaged = bytearray(blob)
        damaged[pos] ^= mask
        (store.backups_dir / f"{bad_id}{SUFFIX}").write_bytes(damaged)
        try:
            with untouched(store, profile_dir), pytest.raises(BackupCorrupt):
                store.restore(bad_id, profile_dir)
        finally:
            (store.backups_dir / f"{bad_id}{SUFFIX}").unlink()

    truncated()
    flipped()
    store.verify(good.id)


@pytest.mark.parametrize(
    "case",
    ["sha256 changed", "size changed", "file missing", "file not listed", "no manifest", "other backup's manifest"],
)
def test_tampered_manifest_is_refused(store: BackupStore, profile: tuple[Path, str], case: str) -> None:
    profile_dir, origin = profile
    older = store.create(profile_dir, origin_url=origin)
    files = {"Default/Preferences": b"{}", "Default/IndexedDB/x.indexeddb.leveldb/CURRENT": b"MANIFEST-000001\n"}
    bad_id = new_id(60)
    manifest = manifest_for(bad_id, files)
    entries = [regular(p, d) for p, d in files.items()]
    if case == "sha256 changed":
        manifest["files"][0]["sha256"] = hashlib.sha256(b"other").hexdigest()
    elif case == "size changed":
        manifest["files"][0]["size"] += 1
    elif case == "file missing":
        manifest["files"].append({"path": "Default/Cookies", "size": 1, "sha256": "0" * 64})
    elif case == "file not listed":
        entries.append(regular("Default/Extra", b"smuggled"))
    elif case == "no manifest":
        manifest = None
    else:
        manifest["id"] = older.id
    craft(store, entries, manifest, bad_id)
    with untouched(store, profile_dir):
        with pytest.raises(BackupCorrupt, match="manifest"):
            store.restore(bad_id, profile_dir)
        with pytest.raises(BackupCorrupt, match="manifest"):
            store.verify(bad_id)
    store.verify(older.id)


UNSAFE = {
    "dot-dot": ([regular("../escaped", b"x")], "'..'"),
    "dot-dot inside": ([regular("Default/../../escaped", b"x")], "'..'"),
    "absolute": ([regular("/tmp/linda-escaped-abs", b"x")], "absolute"),
    "windows absolute": ([regular("C:/escaped", b"x")], "absolute"),
    "backslash": ([regular("Default\\..\\..\\escaped", b"x")], "\\\\"),
    "symlink": ([special("Default/link", tarfile.SYMTYPE, "/etc/passwd")], "symbolic link"),
    "symlink then write through": (
        [special("Default", tarfile.SYMTYPE, "/tmp"), regular("Default/linda-escaped", b"x")],
        "symbolic link",
    ),
    "hard link": ([special("Default/hard", tarfile.LNKTYPE, "/etc/passwd")], "hard link"),
    "char device": ([special("Default/null", tarfile.CHRTYPE)], "device"),
    "block device": ([special("Default/sda", tarfile.BLKTYPE)], "device"),
    "fifo": ([special("Default/pipe", tarfile.FIFOTYPE)], "pipe"),
    "duplicate": ([regular("Default/Preferences", b"a"), regular("Default/Preferences", b"b")], "duplicate"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_entries_are_refused(store: BackupStore, profile: tuple[Path, str], data: Path, case: str) -> None:
    profile_dir, origin = profile
    older = store.create(profile_dir, origin_url=origin)
    entries, why = UNSAFE[case]
    safe = regular("Default/Preferences", b"{}")
    bad_id = new_id(60)
    files = {info.name: payload for info, payload in entries if payload is not None}
    craft(store, [safe, *entries], manifest_for(bad_id, {"Default/Preferences": b"{}", **files}), bad_id)
    outside = [data / "escaped", data.parent / "escaped", Path("/tmp/linda-escaped-abs"), Path("/tmp/linda-escaped")]
    with untouched(store, profile_dir):
        with pytest.raises(BackupCorrupt, match="unsafe entry") as err:
            store.restore(bad_id, profile_dir)
        assert why.replace("\\\\", "\\") in err.value.message
        dest = data / "extract-here"
        with pytest.raises(BackupCorrupt, match="unsafe entry"):
            store.extract(bad_id, dest)
        assert not dest.exists()
    assert not any(p.exists() or p.is_symlink() for p in outside)
    store.verify(older.id)


# ---- storage failures --------------------------------------------------------------------------


def _mount(args: list[str]) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount here ({result.stderr.strip() or result.returncode}): needs root with CAP_SYS_ADMIN")


@contextlib.contextmanager
def mounted(target: Path, *option_sets: list[str]) -> Iterator[None]:
    _mount(option_sets[0] + [str(target)])
    try:
        for options in option_sets[1:]:
            subprocess.run(["mount", *options, str(target)], check=True)
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_read_only_backups_folder(store: BackupStore, profile: tuple[Path, str]) -> None:
    profile_dir, origin = profile
    older = store.create(profile_dir, origin_url=origin)
    folder = store.backups_dir
    # Root ignores chmod 0500, so make the folder truly read-only with a read-only bind mount.
    with mounted(folder, ["--bind", str(folder)], ["-o", "remount,bind,ro"]):
        names = sorted(os.listdir(folder))
        with untouched(store, profile_dir):
            with pytest.raises(StorageError) as err:
                store.create(profile_dir, origin_url=origin)
            assert str(folder) in err.value.message and "not writable" in err.value.message and err.value.fix
            with pytest.raises(StorageError):
                store.mark_known_good(older.id)
            with pytest.raises(StorageError):
                store.rotate()
            assert [b.id for b in store.list()] == [older.id]
            store.verify(older.id)
    assert sorted(os.listdir(folder)) == names


def test_backups_folder_under_a_file(data: Path, profile: tuple[Path, str]) -> None:
    profile_dir, origin = profile
    (data / "a-file").write_text("not a folder")
    store = BackupStore(data / "a-file" / "backups", KEY)
    with pytest.raises(StorageError, match="not writable"):
        store.create(profile_dir, origin_url=origin)


def test_disk_full(store: BackupStore, data: Path) -> None:
    profile_dir = data / "growing"
    origin = make_fake_profile(profile_dir, idb_mb=0.2, caches_mb=0.01)
    store.backups_dir.mkdir(parents=True)
    with mounted(store.backups_dir, ["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"]):
        older = store.create(profile_dir, origin_url=origin)
        make_fake_profile(profile_dir, idb_mb=3, caches_mb=0.01, seed=2)  # now it no longer fits
        before = backups_digest(store)
        with untouched(store, profile_dir):
            with pytest.raises(StorageError, match="Not enough disk space") as err:
                store.create(profile_dir, origin_url=origin)
            assert str(store.backups_dir) in err.value.message and "Free some disk space" in err.value.fix
        assert backups_digest(store) == before  # temp files and the new chunks it wrote removed
        assert sorted(os.listdir(store.backups_dir)) == [".lock", older.path.name, "chunks"]
        store.verify(older.id)


# ---- hot backups: a store that keeps compacting while we copy it ----------------------------


class ChurningStore(multiprocessing.Process):
    """Mimics LevelDB under heavy writes, in its own process (as the browser is): every round
    writes two new tables, appends a version edit (+new, -obsolete) to the MANIFEST, then
    deletes the obsolete table at once; every 25 rounds it starts a new MANIFEST and swaps
    CURRENT (temp + rename), as a reopen does."""

    def __init__(self, store_dir: Path) -> None:
        super().__init__(daemon=True)
        self.dir, self.stop, self.shared_rounds = store_dir, multiprocessing.Event(), multiprocessing.Value("i", 0)
        self.rounds = 0

    @staticmethod
    def table_bytes(number: int) -> bytes:
        return hashlib.sha256(str(number).encode()).digest() * 2048  # 64 KiB, content tied to the name

    def run(self) -> None:
        number, manifest_no, live = 100, 2, [99]
        (self.dir / "000099.ldb").write_bytes(self.table_bytes(99))
        manifest = self.dir / f"MANIFEST-{manifest_no:06d}"
        manifest.write_text("+000099.ldb\n")
        self._point_current_to(manifest)
        while not self.stop.is_set():
            new = [number, number + 1]
            for n in new:
                (self.dir / f"{n:06d}.ldb").write_bytes(self.table_bytes(n))
            obsolete = live[:-1]
            if self.rounds % 25 == 24:
                old_manifest = manifest
                manifest_no += 1
                manifest = self.dir / f"MANIFEST-{manifest_no:06d}"
                manifest.write_text("".join(f"+{n:06d}.ldb\n" for n in [live[-1], *new]))
                self._point_current_to(manifest)
                old_manifest.unlink()
            else:
                with open(manifest, "a") as handle:
                    handle.write("".join(f"+{n:06d}.ldb\n" for n in new) + "".join(f"-{n:06d}.ldb\n" for n in obsolete))
            for n in obsolete:
                (self.dir / f"{n:06d}.ldb").unlink()
            live = [live[-1], *new]
            number += 2
            self.rounds += 1
            self.shared_rounds.value = self.rounds
            time.sleep(0.001)

    def _point_current_to(self, manifest: Path) -> None:
        (self.dir / "000001.dbtmp").write_text(manifest.name + "\n")
        os.replace(self.dir / "000001.dbtmp", self.dir / "CURRENT")

    @staticmethod
    def live_tables(manifest_text: str) -> set[str]:
        live: set[str] = set()
        for line in manifest_text.splitlines():
            (live.add if line.startswith("+") else live.discard)(line[1:])
        return live


def test_hot_backup_of_a_changing_store_is_consistent(store: BackupStore, data: Path) -> None:
    profile_dir = data / "hot"
    origin = make_fake_profile(profile_dir, idb_mb=0.1, caches_mb=0.01)
    idb = next((profile_dir / "Default" / "IndexedDB").iterdir())
    for child in idb.iterdir():
        child.unlink()
    (idb / "MANIFEST-000001").write_text("")
    (idb / "CURRENT").write_text("MANIFEST-000001\n")
    churn = ChurningStore(idb)
    churn.start()
    try:
        time.sleep(0.05)
        ids = [store.create(profile_dir, origin_url=origin).id for _ in range(30)]
    finally:
        churn.stop.set()
        churn.join(5)
    assert churn.shared_rounds.value > 10
    for n, backup_id in enumerate(ids):
        dest = data / f"x{n}"
        store.extract(backup_id, dest)
        copy = dest / idb.relative_to(profile_dir)
        manifest = (copy / "CURRENT").read_text().strip()
        named = ChurningStore.live_tables((copy / manifest).read_text())
        assert named, "the snapshot names its tables"
        for table in named:
            assert (copy / table).read_bytes() == ChurningStore.table_bytes(int(table[:6])), table
