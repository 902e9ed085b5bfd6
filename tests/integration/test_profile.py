"""session/profile.py: origin names, session files, validation (real Chromium profiles and damaged
copies of them), swap-in and quarantine."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from linda_desktop.base.errors import StorageError
from linda_desktop.session import profile as prof
from linda_desktop.session.profile import (
    NO_SESSION,
    origin_storage_key,
    quarantine,
    remove_singleton_locks,
    session_files,
    swap_in,
    validate_profile,
)
from tests.helpers.chromium_profile import free_port, open_browser, read_data, write_data

BLOB_JS = """async (text) => {
  const db = await openDb();
  const tx = db.transaction("records", "readwrite");
  tx.objectStore("records").put(new Blob([text], {type: "text/plain"}), "blob");
  await done(tx);
  db.close();
}"""
READ_BLOB_JS = """async () => {
  const db = await openDb();
  const tx = db.transaction("records", "readonly");
  const blob = await new Promise((ok, bad) => { const r = tx.objectStore("records").get("blob");
    r.onsuccess = () => ok(r.result); r.onerror = () => bad(r.error); });
  db.close();
  return blob ? await blob.text() : null;
}"""


def copy_session(src: Path, dst: Path, origin: str) -> list[str]:
    """Build a fresh profile from the session files only (what a backup holds)."""
    files = session_files(src, origin)
    for rel in files:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, dst / rel)
    return files


@pytest.fixture(scope="module")
def real_profile(tmp_path_factory):
    """A profile written by a real Chromium: 6 MB of IndexedDB (so LevelDB has a .ldb table and a
    .log), a Blob (the .indexeddb.blob folder) and localStorage."""
    profile_dir = tmp_path_factory.mktemp("real") / "profile"
    port = free_port()
    with open_browser(profile_dir, port=port) as page:
        written = write_data(page, payload_mb=6)
        page.evaluate(BLOB_JS, "blob-" + written["token"])
        time.sleep(0.5)
    origin = f"http://127.0.0.1:{port}/"
    return {"dir": profile_dir, "port": port, "origin": origin, "written": written}


def idb_store(profile_dir: Path, origin: str) -> Path:
    return profile_dir / "Default" / "IndexedDB" / f"{origin_storage_key(origin)}.indexeddb.leveldb"


# --- origin names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url,key",
    [
        ("https://web.whatsapp.com/", "https_web.whatsapp.com_0"),
        ("https://web.whatsapp.com", "https_web.whatsapp.com_0"),
        ("https://WEB.WhatsApp.com:443/some/path?x=1", "https_web.whatsapp.com_0"),
        ("http://127.0.0.1:8765/", "http_127.0.0.1_8765"),
        ("http://localhost/", "http_localhost_0"),
        ("https://example.org:8443/", "https_example.org_8443"),
    ],
)
def test_origin_storage_key(url, key):
    assert origin_storage_key(url) == key


def test_origin_storage_key_rejects_non_urls():
    with pytest.raises(ValueError):
        origin_storage_key("web.whatsapp.com")


# --- session files (synthetic layout) -----------------------------------------------------


def _touch(root: Path, rel: str, data: bytes = b"x") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_session_files_order_and_exclusions(tmp_path):
    origin = "https://web.whatsapp.com/"
    idb = "Default/IndexedDB/https_web.whatsapp.com_0.indexeddb.leveldb"
    keep = [
        "Local State", "Default/Preferences",
        f"{idb}/000010.log", f"{idb}/000009.ldb", f"{idb}/000007.ldb", f"{idb}/MANIFEST-000008", f"{idb}/CURRENT",
        "Default/IndexedDB/https_web.whatsapp.com_0.indexeddb.blob/1/00/3",
        "Default/Local Storage/leveldb/CURRENT", "Default/Local Storage/leveldb/MANIFEST-000001",
        "Default/Local Storage/leveldb/000003.log",
        "Default/Session Storage/CURRENT", "Default/Session Storage/MANIFEST-000001",
        "Default/Cookies", "Default/Cookies-journal", "Default/Network/Cookies",
    ]
    drop = [
        f"{idb}/LOCK", f"{idb}/LOG", f"{idb}/LOG.old", "Default/Local Storage/leveldb/LOCK",
        "Default/IndexedDB/http_127.0.0.1_9.indexeddb.leveldb/CURRENT",  # another origin
        "Default/Cache/Cache_Data/index", "Default/Code Cache/js/index", "Default/GPUCache/data_0",
        "Default/Service Worker/Database/CURRENT", "Default/Shared Dictionary/db",
        "Default/DawnGraphiteCache/index", "GrShaderCache/data_0", "Crashpad/settings.dat",
        "Default/History", "Default/Sessions/Tabs_1",
    ]
    for rel in keep + drop:
        _touch(tmp_path, rel)
    os.symlink("host-1", tmp_path / "SingletonLock")
    files = session_files(tmp_path, origin)
    assert sorted(files) == sorted(keep)
    store = [f.rsplit("/", 1)[1] for f in files if f.startswith(idb + "/")]
    assert store == ["CURRENT", "MANIFEST-000008", "000007.ldb", "000009.ldb", "000010.log"]


def test_session_files_of_missing_profile_is_empty(tmp_path):
    assert session_files(tmp_path / "nope", "https://web.whatsapp.com/") == []


# --- real Chromium profile ----------------------------------------------------------------


@pytest.mark.browser
def test_real_profile_is_valid_and_session_files_skip_caches(real_profile):
    src, origin = real_profile["dir"], real_profile["origin"]
    report = validate_profile(src, origin)
    assert report.ok and report.has_session and report.exists and report.problems == []
    assert report.to_json() == {"exists": True, "has_session": True, "ok": True, "problems": []}
    files = session_files(src, origin)
    names = {f.rsplit("/", 1)[-1] for f in files}
    assert not names & {"LOCK", "LOG", "LOG.old", "SingletonLock"}
    assert not [f for f in files if "Cache" in f or "Service Worker" in f]
    key = origin_storage_key(origin)
    assert any(f.endswith(".ldb") and key in f for f in files), files  # a compacted table
    assert any(".indexeddb.blob/" in f for f in files), files  # the Blob
    assert "Default/Local Storage/leveldb/CURRENT" in files
    # The profile as Chromium wrote it is much larger than its session parts.
    total = sum(p.stat().st_size for p in src.rglob("*") if p.is_file() and not p.is_symlink())
    assert total > sum((src / f).stat().st_size for f in files)


@pytest.mark.browser
def test_profile_rebuilt_from_session_files_relaunches_with_its_data(real_profile, tmp_path):
    rebuilt = tmp_path / "rebuilt"
    copy_session(real_profile["dir"], rebuilt, real_profile["origin"])
    assert validate_profile(rebuilt, real_profile["origin"]).ok
    with open_browser(rebuilt, port=real_profile["port"]) as page:
        data = read_data(page)
        blob = page.evaluate(READ_BLOB_JS)
    written = real_profile["written"]
    assert data["token"] == written["token"]  # localStorage
    assert [r["token"] for r in data["records"] if "n" in r] == [written["token"]] * 5
    assert data["payload_records"] == written["payload_records"]  # IndexedDB, .ldb + .log
    assert blob == "blob-" + written["token"]  # IndexedDB blob folder


# --- damaged copies -----------------------------------------------------------------------


@pytest.fixture
def damaged(real_profile, tmp_path):
    """A fresh copy of the real profile's session files, to be damaged by the test."""
    dst = tmp_path / "copy"
    copy_session(real_profile["dir"], dst, real_profile["origin"])
    return dst, real_profile["origin"], idb_store(dst, real_profile["origin"])


def _current_manifest(store: Path) -> Path:
    return store / (store / "CURRENT").read_text().strip()


def _problems(dst, origin):
    report = validate_profile(dst, origin)
    assert report.exists and report.has_session and not report.ok
    return " | ".join(report.problems)


@pytest.mark.browser
def test_current_missing(damaged):
    dst, origin, store = damaged
    (store / "CURRENT").unlink()
    assert "IndexedDB: CURRENT is missing" in _problems(dst, origin)


@pytest.mark.browser
def test_current_names_missing_manifest(damaged):
    dst, origin, store = damaged
    _current_manifest(store).unlink()
    assert "named by CURRENT is missing" in _problems(dst, origin)


@pytest.mark.browser
def test_current_without_newline(damaged):
    dst, origin, store = damaged
    (store / "CURRENT").write_text(_current_manifest(store).name)
    assert "CURRENT is truncated" in _problems(dst, origin)


@pytest.mark.browser
def test_zero_length_table(damaged):
    dst, origin, store = damaged
    table = next(store.glob("*.ldb"))
    table.write_bytes(b"")
    text = _problems(dst, origin)
    assert f"{table.name} is empty" in text


@pytest.mark.browser
def test_table_named_by_manifest_missing(damaged):
    dst, origin, store = damaged
    table = next(store.glob("*.ldb"))
    table.unlink()
    assert f"table {table.name} named by" in _problems(dst, origin)


@pytest.mark.browser
def test_truncated_manifest(damaged):
    dst, origin, store = damaged
    manifest = _current_manifest(store)
    data = manifest.read_bytes()
    manifest.write_bytes(data[: len(data) - 5])
    assert "is damaged" in _problems(dst, origin)


@pytest.mark.browser
def test_manifest_bit_flip(damaged):
    dst, origin, store = damaged
    manifest = _current_manifest(store)
    data = bytearray(manifest.read_bytes())
    data[12] ^= 0x40
    manifest.write_bytes(bytes(data))
    assert "checksum mismatch" in _problems(dst, origin)


@pytest.mark.browser
def test_empty_manifest(damaged):
    dst, origin, store = damaged
    _current_manifest(store).write_bytes(b"")
    assert "is empty" in _problems(dst, origin)


@pytest.mark.browser
def test_preferences_and_local_state_garbage(damaged):
    dst, origin, _ = damaged
    (dst / "Default" / "Preferences").write_bytes(b'{"half": ')
    (dst / "Local State").write_bytes(b"\x00\xff garbage")
    text = _problems(dst, origin)
    assert "Preferences is not valid JSON" in text and "Local State is not valid JSON" in text


@pytest.mark.browser
def test_local_storage_missing(damaged):
    dst, origin, _ = damaged
    shutil.rmtree(dst / "Default" / "Local Storage")
    assert "Local Storage: missing" in _problems(dst, origin)


@pytest.mark.browser
def test_local_storage_empty(damaged):
    dst, origin, _ = damaged
    for log in (dst / "Default" / "Local Storage" / "leveldb").glob("*.log"):
        log.write_bytes(b"")
    assert "Local Storage: holds no data" in _problems(dst, origin)


@pytest.mark.browser
def test_store_deleted_means_no_session(damaged):
    dst, origin, store = damaged
    shutil.rmtree(store)
    report = validate_profile(dst, origin)
    assert (report.exists, report.has_session, report.ok) == (True, False, False)
    assert report.problems == [NO_SESSION]


@pytest.mark.browser
def test_other_origin_has_no_session(real_profile):
    report = validate_profile(real_profile["dir"], "https://web.whatsapp.com/")
    assert not report.has_session and not report.ok


def test_empty_and_missing_profile(tmp_path):
    empty = validate_profile(tmp_path, "https://web.whatsapp.com/")
    assert (empty.exists, empty.has_session, empty.ok, empty.problems) == (True, False, False, [NO_SESSION])
    missing = validate_profile(tmp_path / "none", "https://web.whatsapp.com/")
    assert (missing.exists, missing.has_session, missing.ok) == (False, False, False)


# --- singleton locks ----------------------------------------------------------------------


def test_remove_singleton_locks(tmp_path):
    os.symlink("otherhost-123", tmp_path / "SingletonLock")  # dangling, as Chromium leaves it
    os.symlink("/tmp/.org.chromium.Chromium.x/SingletonSocket", tmp_path / "SingletonSocket")
    (tmp_path / "lockfile").write_bytes(b"")
    (tmp_path / "Local State").write_text("{}")
    assert sorted(remove_singleton_locks(tmp_path)) == ["SingletonLock", "SingletonSocket", "lockfile"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Local State"]
    assert remove_singleton_locks(tmp_path) == []


# --- swap_in ------------------------------------------------------------------------------


def _profile(path: Path, marker: str) -> Path:
    _touch(path, "Default/Preferences", marker.encode())
    return path


def test_swap_in_keeps_the_old_profile_aside(tmp_path):
    live = _profile(tmp_path / "data" / "profile", "old")
    new = _profile(tmp_path / "data" / "work" / "new", "new")
    aside = swap_in(new, live, tmp_path / "data" / "quarantine")
    assert (live / "Default" / "Preferences").read_text() == "new"
    assert aside is not None and aside.parent == tmp_path / "data" / "quarantine"
    assert (aside / "Default" / "Preferences").read_text() == "old"
    assert not new.exists()
    # A second swap gets its own aside folder: nothing is overwritten or deleted.
    aside2 = swap_in(_profile(tmp_path / "data" / "work" / "n2", "newer"), live, tmp_path / "data" / "quarantine")
    assert aside2 != aside and (aside2 / "Default" / "Preferences").read_text() == "new"
    assert (aside / "Default" / "Preferences").read_text() == "old"


def test_swap_in_without_live_profile(tmp_path):
    new = _profile(tmp_path / "work" / "new", "new")
    assert swap_in(new, tmp_path / "profile", tmp_path / "aside") is None
    assert (tmp_path / "profile" / "Default" / "Preferences").read_text() == "new"


def test_swap_in_failure_puts_the_old_profile_back(tmp_path, monkeypatch):
    live = _profile(tmp_path / "profile", "old")
    new = _profile(tmp_path / "work" / "new", "new")
    real_rename = os.rename

    def failing_rename(src, dst):
        if Path(dst) == live and Path(src) == new:
            raise OSError(28, "No space left on device")
        return real_rename(src, dst)

    monkeypatch.setattr(prof.os, "rename", failing_rename)
    with pytest.raises(StorageError, match="disk is full"):
        swap_in(new, live, tmp_path / "aside")
    assert (live / "Default" / "Preferences").read_text() == "old"
    assert (new / "Default" / "Preferences").read_text() == "new"
    assert list((tmp_path / "aside").iterdir()) == []


def test_swap_in_refuses_other_filesystem(tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem to test with")
    new = _profile(shm / f"linda-test-{os.getpid()}-{time.time_ns()}", "new")
    try:
        live = _profile(tmp_path / "profile", "old")
        with pytest.raises(StorageError, match="different disks"):
            swap_in(new, live, tmp_path / "aside")
        assert (live / "Default" / "Preferences").read_text() == "old"
        assert new.is_dir()
    finally:
        shutil.rmtree(new, ignore_errors=True)


def test_swap_in_needs_a_folder(tmp_path):
    with pytest.raises(StorageError):
        swap_in(tmp_path / "missing", tmp_path / "profile", tmp_path / "aside")


# --- quarantine ---------------------------------------------------------------------------


def test_quarantine_moves_with_reason_and_keeps_three(tmp_path):
    root = tmp_path / "quarantine"
    made = []
    for i in range(5):
        live = _profile(tmp_path / "profile", f"session-{i}")
        made.append(quarantine(live, root, reason=f"logged out #{i}"))
        assert not live.exists()
    kept = sorted(p for p in root.iterdir())
    assert kept == made[2:]
    for i, folder in zip(range(2, 5), kept, strict=True):
        assert (folder / "Default" / "Preferences").read_text() == f"session-{i}"
        note = json.loads((folder / "reason.json").read_text())
        assert note["reason"] == f"logged out #{i}" and note["quarantined_at"]


def test_quarantine_missing_profile_is_a_storage_error(tmp_path):
    with pytest.raises(StorageError):
        quarantine(tmp_path / "nothing", tmp_path / "q", reason="x")
