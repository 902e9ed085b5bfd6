"""The Chromium profile (user-data dir): which files hold the WhatsApp session, how to check them,
how to clear stale locks and how to swap a restored copy in.

Pure file work: no Qt, no Playwright. See the design's whatsapp-web-reference.md ("Where the page keeps
the session") for the on-disk layout this module relies on.
"""

from __future__ import annotations

import errno
import os
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from linda_desktop.core.atomic import fsync_dir
from linda_desktop.core.errors import StorageError
from linda_desktop.paths import ensure_private_dir

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

