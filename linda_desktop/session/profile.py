"""The Chromium profile (user-data dir): which files hold the WhatsApp session, how to check them,
how to clear stale locks and how to swap a restored copy in.

Pure file work: no Qt, no Playwright. See the design's whatsapp-web-reference.md ("Where the page keeps
the session") for the on-disk layout this module relies on.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import socket
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from linda_desktop.base.atomic import atomic_write_json, fsync_dir
from linda_desktop.base.errors import ProfileInUse, StorageError
from linda_desktop.base.paths import ensure_private_dir

# Process lookups live in linda_desktop.system.processes; these names stay importable from here
# for callers that have not switched yet.
from linda_desktop.system.processes import browser_owns_profile as browser_owns_profile
from linda_desktop.system.processes import find_browser_processes as find_browser_processes
from linda_desktop.system.processes import pid_alive as pid_alive
from linda_desktop.system.processes import terminate_orphan_browsers as terminate_orphan_browsers

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

# Lock files Chromium leaves behind when killed (POSIX symlinks; ``lockfile`` on Windows).
SINGLETON_NAMES = ("SingletonLock", "SingletonSocket", "SingletonCookie", "lockfile")

# Files inside a LevelDB store that are per-process bookkeeping, never data.
_LEVELDB_SKIP = {"LOCK", "LOG", "LOG.old"}


def origin_storage_key(origin_url: str) -> str:
    """Chromium's on-disk name for an origin: ``scheme_host_port``, port ``0`` when it is the
    scheme's default (``https://web.whatsapp.com/`` -> ``https_web.whatsapp.com_0``)."""
    parts = urlsplit(origin_url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if not scheme or not host:
        raise ValueError(f"not an origin URL: {origin_url!r}")
    port = parts.port
    if port is None or port == DEFAULT_PORTS.get(scheme):
        port = 0
    return f"{scheme}_{host}_{port}"


def _leveldb_order(name: str) -> tuple[int, str]:
    """Copy order within one LevelDB store: CURRENT, MANIFEST-*, then tables/logs by name."""
    if name == "CURRENT":
        return (0, name)
    if name.startswith("MANIFEST-"):
        return (1, name)
    return (2, name)


def _is_leveldb_data(name: str) -> bool:
    return (
        name == "CURRENT"
        or name.startswith("MANIFEST-")
        or name.endswith((".ldb", ".log", ".sst"))
    )


def _leveldb_files(profile_dir: Path, rel_store: str) -> list[str]:
    store = profile_dir / rel_store
    if not store.is_dir():
        return []
    names = [
        entry.name
        for entry in os.scandir(store)
        if entry.is_file(follow_symlinks=False)
        and entry.name not in _LEVELDB_SKIP
        and _is_leveldb_data(entry.name)
    ]
    return [f"{rel_store}/{name}" for name in sorted(names, key=_leveldb_order)]


def _tree_files(profile_dir: Path, rel_dir: str) -> list[str]:
    """Every regular file under ``rel_dir``, in sorted order (IndexedDB blob folders)."""
    root = profile_dir / rel_dir
    if not root.is_dir():
        return []
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath).relative_to(profile_dir).as_posix()
        for name in sorted(filenames):
            if (Path(dirpath) / name).is_file() and not (Path(dirpath) / name).is_symlink():
                found.append(f"{base}/{name}")
    return found


def _plain_files(profile_dir: Path, rel_paths: tuple[str, ...]) -> list[str]:
    out = []
    for rel in rel_paths:
        path = profile_dir / rel
        if path.is_file() and not path.is_symlink():
            out.append(rel)
    return out


def session_files(profile_dir: Path, origin_url: str) -> list[str]:
    """Relative POSIX paths of the files that hold the session, in copy order.

    Each LevelDB store is listed CURRENT, MANIFEST-*, then ``*.ldb``/``*.log`` by name, so a copy
    taken in this order never names a table that is not there yet. ``LOCK``/``LOG`` files, the
    Singleton locks and every cache (Cache, Code Cache, GPUCache, Service Worker, ...) are left out.
    """
    profile_dir = Path(profile_dir)
    key = origin_storage_key(origin_url)
    files: list[str] = []
    files += _plain_files(profile_dir, ("Local State",))
    files += _plain_files(profile_dir, ("Default/Preferences",))
    files += _leveldb_files(profile_dir, f"Default/IndexedDB/{key}.indexeddb.leveldb")
    files += _tree_files(profile_dir, f"Default/IndexedDB/{key}.indexeddb.blob")
    files += _leveldb_files(profile_dir, "Default/Local Storage/leveldb")
    files += _leveldb_files(profile_dir, "Default/Session Storage")
    files += _plain_files(
        profile_dir,
        (
            "Default/Cookies",
            "Default/Cookies-journal",
            "Default/Network/Cookies",
            "Default/Network/Cookies-journal",
        ),
    )
    return files


def remove_singleton_locks(profile_dir: Path) -> list[str]:
    """Remove Chromium's Singleton*/lockfile unconditionally (for a freshly restored copy, which
    no browser can hold yet). Returns the names removed."""
    removed = []
    for name in SINGLETON_NAMES:
        path = Path(profile_dir) / name
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except IsADirectoryError:
            continue
        removed.append(name)
    return removed


def _aside_name(aside_root: Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S-%fZ")
    candidate = aside_root / stamp
    n = 1
    while candidate.exists() or candidate.is_symlink():
        candidate = aside_root / f"{stamp}-{n}"
        n += 1
    return candidate


def _same_fs(a: Path, b: Path) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev


def swap_in(new_profile: Path, live_profile: Path, aside_root: Path) -> Path | None:
    """Atomically make ``new_profile`` the live profile.

    The old live profile (if any) is renamed to ``aside_root/<timestamp>`` and that path returned;
    nothing is ever deleted. If putting the new one in place fails, the old one is moved back.
    All three locations must be on one filesystem (renames only, never a copy).
    """
    new_profile, live_profile, aside_root = Path(new_profile), Path(live_profile), Path(aside_root)
    if not new_profile.is_dir():
        raise StorageError(f"The new profile {new_profile} is not a folder", "Restore it again")
    live_parent = live_profile.parent
    ensure_private_dir(live_parent)
    ensure_private_dir(aside_root)
    if not (_same_fs(new_profile, live_parent) and _same_fs(aside_root, live_parent)):
        raise StorageError(
            "The restored profile, the live profile and the set-aside folder are on different disks",
            "Keep the whole data folder on one disk",
        )
    aside: Path | None = None
    if live_profile.exists() or live_profile.is_symlink():
        aside = _aside_name(aside_root)
        try:
            os.rename(live_profile, aside)
        except OSError as exc:
            raise _storage_error("Could not move the current profile aside", exc) from exc
    try:
        os.rename(new_profile, live_profile)
    except OSError as exc:
        if aside is not None:
            os.rename(aside, live_profile)
        raise _storage_error("Could not put the restored profile in place", exc) from exc
    for folder in {live_parent, aside_root, new_profile.parent}:
        fsync_dir(folder)
    return aside


def _storage_error(what: str, exc: OSError) -> StorageError:
    if exc.errno == errno.EXDEV:
        return StorageError(f"{what}: folders are on different disks", "Keep the whole data folder on one disk")
    if exc.errno == errno.ENOSPC:
        return StorageError(f"{what}: the disk is full", "Free some disk space and try again")
    return StorageError(f"{what}: {exc.strerror or exc}", "Check that the data folder is writable")


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

NO_SESSION = "no WhatsApp session in this profile"


@dataclass
class ProfileReport:
    """What ``validate_profile`` found. ``ok``: a launch can be expected to come up with the session."""

    exists: bool
    has_session: bool
    ok: bool
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_MANIFEST_RE = re.compile(r"^MANIFEST-[0-9]+$")
_TABLE_RE = re.compile(r"^([0-9]+)\.(ldb|sst)$")
_BLOCK = 32768
_HEADER = 7
# LevelDB VersionEdit tags (db/version_edit.cc).
_TAG_COMPARATOR, _TAG_LOG, _TAG_NEXT, _TAG_SEQ, _TAG_COMPACT = 1, 2, 3, 4, 5
_TAG_DELETED, _TAG_NEW, _TAG_PREV_LOG = 6, 7, 9
_CRC_CHECK_LIMIT = 2 * 1024 * 1024  # pure-Python CRC32C: only for manifests below this size


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def _crc32c(data: bytes, crc: int = 0) -> int:
    crc ^= 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _unmask_crc(masked: int) -> int:
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


class _Corrupt(Exception):
    pass


def _log_records(data: bytes, check_crc: bool) -> list[bytes]:
    """Split a LevelDB log file (the MANIFEST format) into records; raise _Corrupt on bad framing."""
    records: list[bytes] = []
    pending: bytearray | None = None
    pos = 0
    size = len(data)
    while pos < size:
        left_in_block = _BLOCK - (pos % _BLOCK)
        if left_in_block < _HEADER:
            pos += left_in_block  # block trailer (zero padding)
            continue
        if size - pos < _HEADER:
            raise _Corrupt("truncated record header")
        masked = int.from_bytes(data[pos:pos + 4], "little")
        length = int.from_bytes(data[pos + 4:pos + 6], "little")
        rtype = data[pos + 6]
        if rtype == 0 and length == 0:
            # Zero-filled tail (pre-allocated space): nothing more was written.
            if any(data[pos:]):
                raise _Corrupt("garbage after zero record")
            break
        if _HEADER + length > left_in_block:
            raise _Corrupt("record crosses a block boundary")
        if pos + _HEADER + length > size:
            raise _Corrupt("truncated record")
        payload = data[pos + _HEADER:pos + _HEADER + length]
        if check_crc and _unmask_crc(masked) != _crc32c(bytes([rtype]) + payload):
            raise _Corrupt("checksum mismatch")
        pos += _HEADER + length
        if rtype == 1:  # FULL
            if pending is not None:
                raise _Corrupt("unfinished fragmented record")
            records.append(payload)
        elif rtype == 2:  # FIRST
            if pending is not None:
                raise _Corrupt("unfinished fragmented record")
            pending = bytearray(payload)
        elif rtype == 3:  # MIDDLE
            if pending is None:
                raise _Corrupt("stray middle fragment")
            pending += payload
        elif rtype == 4:  # LAST
            if pending is None:
                raise _Corrupt("stray last fragment")
            pending += payload
            records.append(bytes(pending))
            pending = None
        else:
            raise _Corrupt(f"unknown record type {rtype}")
    if pending is not None:
        raise _Corrupt("truncated fragmented record")
    return records


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Corrupt("bad varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _slice(buf: bytes, pos: int) -> tuple[bytes, int]:
    length, pos = _varint(buf, pos)
    if pos + length > len(buf):
        raise _Corrupt("bad length-prefixed field")
    return buf[pos:pos + length], pos + length


def _live_tables(records: list[bytes]) -> dict[int, int]:
    """Replay the manifest's version edits: table number -> size of every table still in use."""
    live: dict[tuple[int, int], int] = {}
    for rec in records:
        pos = 0
        while pos < len(rec):
            tag, pos = _varint(rec, pos)
            if tag == _TAG_COMPARATOR:
                _, pos = _slice(rec, pos)
            elif tag in (_TAG_LOG, _TAG_NEXT, _TAG_SEQ, _TAG_PREV_LOG):
                _, pos = _varint(rec, pos)
            elif tag == _TAG_COMPACT:
                _, pos = _varint(rec, pos)
                _, pos = _slice(rec, pos)
            elif tag == _TAG_DELETED:
                level, pos = _varint(rec, pos)
                number, pos = _varint(rec, pos)
                live.pop((level, number), None)
            elif tag == _TAG_NEW:
                level, pos = _varint(rec, pos)
                number, pos = _varint(rec, pos)
                fsize, pos = _varint(rec, pos)
                _, pos = _slice(rec, pos)
                _, pos = _slice(rec, pos)
                live[(level, number)] = fsize
            else:
                raise _Corrupt(f"unknown version edit tag {tag}")
    return {number: fsize for (_, number), fsize in live.items()}


def _check_leveldb(store: Path, label: str) -> list[str]:
    """Structural checks of one LevelDB folder; returns problems (empty when sound)."""
    if not store.is_dir():
        return [f"{label}: missing"]
    problems: list[str] = []
    current = store / "CURRENT"
    try:
        text = current.read_bytes().decode("ascii")
    except FileNotFoundError:
        return [f"{label}: CURRENT is missing"]
    except (OSError, UnicodeDecodeError):
        return [f"{label}: CURRENT is unreadable"]
    if not text.endswith("\n"):
        return [f"{label}: CURRENT is truncated"]
    manifest_name = text[:-1]
    if not _MANIFEST_RE.match(manifest_name):
        return [f"{label}: CURRENT does not name a MANIFEST"]
    manifest = store / manifest_name
    try:
        data = manifest.read_bytes()
    except FileNotFoundError:
        return [f"{label}: {manifest_name} named by CURRENT is missing"]
    except OSError:
        return [f"{label}: {manifest_name} is unreadable"]
    if not data:
        return [f"{label}: {manifest_name} is empty"]
    try:
        records = _log_records(data, check_crc=len(data) <= _CRC_CHECK_LIMIT)
        if not records:
            raise _Corrupt("no records")
        live = _live_tables(records)
    except _Corrupt as exc:
        return [f"{label}: {manifest_name} is damaged ({exc})"]

    tables: dict[int, int] = {}
    has_data = False
    for entry in os.scandir(store):
        if not entry.is_file(follow_symlinks=False):
            continue
        match = _TABLE_RE.match(entry.name)
        size = entry.stat(follow_symlinks=False).st_size
        if match:
            tables[int(match.group(1))] = size
            if size == 0:
                problems.append(f"{label}: {entry.name} is empty")
            else:
                has_data = True
        elif entry.name.endswith(".log") and size > 0:
            has_data = True
    for number, expected in sorted(live.items()):
        actual = tables.get(number)
        if actual is None:
            problems.append(f"{label}: table {number:06d}.ldb named by {manifest_name} is missing")
        elif actual != expected:
            problems.append(f"{label}: table {number:06d}.ldb has {actual} bytes, expected {expected}")
    if not has_data:
        problems.append(f"{label}: holds no data")
    return problems


def _check_json(path: Path, label: str) -> list[str]:
    if not path.exists():
        return []
    try:
        json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return [f"{label} is not valid JSON"]
    return []


def validate_profile(profile_dir: Path, origin_url: str) -> ProfileReport:
    """Check, quickly and without a browser, that the profile's session parts are sound.

    Each LevelDB store (the origin's IndexedDB, Local Storage) must have a CURRENT naming an
    intact MANIFEST whose live tables exist at their recorded size, and hold some data;
    Preferences and Local State must parse. Chromium wipes an IndexedDB store it finds corrupt,
    so launching on a damaged one would lose the session for good: better to restore first.
    """
    profile_dir = Path(profile_dir)
    if not profile_dir.is_dir():
        return ProfileReport(exists=False, has_session=False, ok=False, problems=[NO_SESSION])
    key = origin_storage_key(origin_url)
    idb = profile_dir / "Default" / "IndexedDB" / f"{key}.indexeddb.leveldb"
    has_session = idb.is_dir() and any(
        _is_leveldb_data(entry.name) for entry in os.scandir(idb) if entry.is_file()
    )
    if not has_session:
        return ProfileReport(exists=True, has_session=False, ok=False, problems=[NO_SESSION])
    problems: list[str] = []
    problems += _check_leveldb(idb, "IndexedDB")
    problems += _check_leveldb(profile_dir / "Default" / "Local Storage" / "leveldb", "Local Storage")
    problems += _check_json(profile_dir / "Default" / "Preferences", "Preferences")
    problems += _check_json(profile_dir / "Local State", "Local State")
    return ProfileReport(exists=True, has_session=True, ok=not problems, problems=problems)


# --------------------------------------------------------------------------------------------
# Locks and orphaned browsers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockOwner:
    """Who holds the profile lock. ``pid`` is None when the OS does not say (Windows lockfile)."""

    host: str
    pid: int | None
    local: bool


def _hostname() -> str:
    return socket.gethostname()


def profile_lock_owner(profile_dir: Path) -> LockOwner | None:
    """Read Chromium's profile lock. POSIX: ``SingletonLock`` -> "<hostname>-<pid>";
    Windows: ``lockfile`` that the browser keeps open (undeletable while it runs)."""
    profile_dir = Path(profile_dir)
    lock = profile_dir / "SingletonLock"
    try:
        target = os.readlink(lock)
    except FileNotFoundError:
        target = None
    except OSError:  # a regular file, not a symlink: unreadable owner
        target = ""
    if target is not None:
        host, _, pid_text = target.rpartition("-")
        pid = int(pid_text) if pid_text.isdigit() else None
        if not host or pid is None:
            return LockOwner(host=target, pid=None, local=False)
        return LockOwner(host=host, pid=pid, local=host == _hostname())
    lockfile = profile_dir / "lockfile"
    if os.name == "nt" and lockfile.exists():
        try:
            fd = os.open(lockfile, os.O_RDWR)
            os.close(fd)
        except PermissionError:
            return LockOwner(host=_hostname(), pid=None, local=True)
    return None


def clear_stale_locks(profile_dir: Path) -> list[str]:
    """Remove Singleton* locks whose owner is gone (dead pid on this host, a reused pid that is not
    a browser on this profile, or another host's lock in a profile restored from elsewhere).
    Raises ProfileInUse when a live browser holds the profile. Returns the names removed."""
    profile_dir = Path(profile_dir)
    owner = profile_lock_owner(profile_dir)
    if owner is not None and owner.local:
        if owner.pid is None:  # Windows lockfile still held open
            raise _in_use(profile_dir, None)
        if browser_owns_profile(owner.pid, profile_dir):
            raise _in_use(profile_dir, owner.pid)
    if owner is not None:
        why = "another computer" if not owner.local else f"dead process {owner.pid}"
        log.info("Removing a stale profile lock left by %s", why)
    removed = remove_singleton_locks(profile_dir)
    return removed


def _in_use(profile_dir: Path, pid: int | None) -> ProfileInUse:
    who = f"browser process {pid}" if pid else "a running browser"
    return ProfileInUse(
        f"The profile is in use by {who}",
        "Close the other Linda Desktop or browser using this profile, or end that process",
        pid=pid,
    )


# --------------------------------------------------------------------------------------------
# Quarantine
# --------------------------------------------------------------------------------------------

QUARANTINE_KEEP = 3


def quarantine(profile_dir: Path, quarantine_root: Path, reason: str, keep: int = QUARANTINE_KEEP) -> Path:
    """Move a dead session aside (never delete it outright) with a ``reason.json``; keep only the
    newest ``keep`` quarantined sessions. Returns where it went."""
    profile_dir, quarantine_root = Path(profile_dir), Path(quarantine_root)
    ensure_private_dir(quarantine_root)
    dest = _aside_name(quarantine_root)
    try:
        os.rename(profile_dir, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise _storage_error("Could not move the dead session to quarantine", exc) from exc
        shutil.move(str(profile_dir), str(dest))
    fsync_dir(profile_dir.parent)
    fsync_dir(quarantine_root)
    atomic_write_json(
        dest / "reason.json",
        {
            "reason": reason,
            "quarantined_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "from": str(profile_dir),
        },
    )
    prune_quarantine(quarantine_root, keep, exclude=dest)
    return dest


def prune_quarantine(root: Path, keep: int = QUARANTINE_KEEP, exclude: Path | None = None) -> None:
    """Remove the oldest folders of ``root`` (names sort by time) beyond the newest ``keep``."""
    root = Path(root)
    if not root.is_dir():
        return
    entries = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())
    excess = len(entries) - max(keep, 1)
    for old in entries[: max(excess, 0)]:
        if old == exclude:
            continue
        shutil.rmtree(old, ignore_errors=True)
        log.info("Removed the oldest quarantined session %s", old.name)
