"""Import a session from a whatsapp-web.js LocalAuth folder or a plain Chromium user-data dir.

The source is only read, never changed. Only the session parts (``profile.session_files``) are
copied into a scratch folder beside the live profile, checked, and swapped in atomically; the
current profile is backed up first (when it holds a session) and moved to quarantine, not deleted.

About origins: Chromium names an origin's IndexedDB folder after the origin *and* writes the
origin into the database keys, so a store copied under another origin's folder name opens empty
(checked with a real Chromium). The importer therefore takes the store of the origin the app
uses (``origin_url``): the real ``https_web.whatsapp.com_0``, or the simulator's
``http_127.0.0.1_<port>`` in tests. A source that only holds another origin's session is refused.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from linda_desktop.base.atomic import atomic_write_json
from linda_desktop.base.errors import ImportSourceInvalid, StorageError
from linda_desktop.base.paths import AppPaths, ensure_private_dir
from linda_desktop.session import profile as prof

log = logging.getLogger(__name__)

WHATSAPP_ORIGIN = "https://web.whatsapp.com/"
AUTH_DIR_NAME = ".wwebjs_auth"


@dataclass(frozen=True)
class ImportResult:
    source_kind: str  # "localauth" or "chromium"
    files: int
    bytes: int
    aside_path: Path | None  # where the replaced live profile went (quarantine), if there was one
    source_dir: Path | None = None  # the user-data dir actually read

    def to_json(self) -> dict[str, Any]:
        return {
            "source_kind": self.source_kind,
            "files": self.files,
            "bytes": self.bytes,
            "aside_path": str(self.aside_path) if self.aside_path else None,
            "source_dir": str(self.source_dir) if self.source_dir else None,
        }


def _is_user_data_dir(path: Path) -> bool:
    return (path / "Default").is_dir() or (path / "Local State").is_file()


def _is_session_dir_name(name: str) -> bool:
    return name == "session" or name.startswith("session-")


def _locate(source: Path) -> tuple[Path, str]:
    """Find the Chromium user-data dir inside ``source`` and say what kind of folder it was."""
    if not source.is_dir():
        raise ImportSourceInvalid(f"{source} is not a folder",
                                  "Give the path of a .wwebjs_auth folder or a session folder")
    if _is_user_data_dir(source):
        return source, "localauth" if _is_session_dir_name(source.name) else "chromium"
    auth = source / AUTH_DIR_NAME if (source / AUTH_DIR_NAME).is_dir() else source
    sessions = sorted(
        p for p in auth.iterdir() if p.is_dir() and _is_session_dir_name(p.name) and _is_user_data_dir(p)
    ) if auth.is_dir() else []
    if not sessions:
        raise ImportSourceInvalid(
            f"No whatsapp-web.js session found in {source}",
            "Give the .wwebjs_auth folder, its session-<id> folder, or a Chromium profile folder",
        )
    if len(sessions) > 1:
        names = ", ".join(p.name for p in sessions)
        raise ImportSourceInvalid(
            f"{auth} holds several sessions ({names})",
            f"Import one of them, e.g. {sessions[0]}",
        )
    return sessions[0], "localauth"


def _leveldb_lock_held(store: Path) -> bool:
    """True when another process holds the LevelDB LOCK of ``store`` (POSIX fcntl lock)."""
    lock = store / "LOCK"
    if os.name != "posix" or not lock.is_file():
        return False
    import fcntl

    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _refuse_if_in_use(user_data: Path, stores: list[Path]) -> None:
    """A running browser may be mid-write: copying then would give a torn LevelDB store."""
    pids = set(prof.find_browser_processes(user_data))
    owner = prof.profile_lock_owner(user_data)
    held = owner is not None and owner.local and (
        owner.pid is None or prof.browser_owns_profile(owner.pid, user_data)
    )
    if held and owner is not None and owner.pid:
        pids.add(owner.pid)
    if pids or held or any(_leveldb_lock_held(store) for store in stores):
        who = f" (browser pid {', '.join(map(str, sorted(pids)))})" if pids else ""
        raise ImportSourceInvalid(
            f"A browser is still using {user_data}{who}",
            "Stop the bot first, then import again",
        )


def _copy(src_root: Path, rel_paths: list[str], dst_root: Path) -> tuple[int, int]:
    count = size = 0
    for rel in rel_paths:
        src = src_root / rel
        dst = dst_root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        shutil.copystat(src, dst)
        count += 1
        size += dst.stat().st_size
    return count, size


def import_session(
    source: Path,
    paths: AppPaths,
    *,
    origin_url: str = WHATSAPP_ORIGIN,
    backup_current: Callable[[], object] | None = None,
) -> ImportResult:
    """Copy the session held in ``source`` into the live profile ``paths.profile``.

    Order: locate the session, refuse if a browser still runs on it, copy the session parts to
    ``paths.work``, validate the copy, back up the current profile (``backup_current``, only when
    it holds a session), then swap the copy in; the old profile goes to ``paths.quarantine``.
    """
    source = Path(source).expanduser()
    user_data, kind = _locate(source)
    key = prof.origin_storage_key(origin_url)
    idb = user_data / "Default" / "IndexedDB" / f"{key}.indexeddb.leveldb"
    if not idb.is_dir():
        wa_key = prof.origin_storage_key(WHATSAPP_ORIGIN)
        other = [p.name for p in (user_data / "Default" / "IndexedDB").glob("*.indexeddb.leveldb")]
        if key != wa_key and f"{wa_key}.indexeddb.leveldb" in other:
            raise ImportSourceInvalid(
                f"{user_data} holds a session of https://web.whatsapp.com, but this app is set to {origin_url}",
                "Import it into an app that uses https://web.whatsapp.com/",
            )
        raise ImportSourceInvalid(f"No WhatsApp session in {user_data}", "Log the bot in first, or pick another folder")
    _refuse_if_in_use(user_data, [idb, user_data / "Default" / "Local Storage" / "leveldb"])

    rel_paths = prof.session_files(user_data, origin_url)
    ensure_private_dir(paths.data)
    ensure_private_dir(paths.work)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    scratch = paths.work / f"import-{stamp}"
    staged = scratch / "profile"
    try:
        ensure_private_dir(staged)
        try:
            count, size = _copy(user_data, rel_paths, staged)
        except OSError as exc:
            raise StorageError(
                f"Could not copy the session to import: {exc.strerror or exc}",
                "Check the free disk space and that the data folder is writable",
            ) from exc
        report = prof.validate_profile(staged, origin_url)
        if not report.ok:
            raise ImportSourceInvalid(
                f"The session in {user_data} is damaged: {'; '.join(report.problems)}",
                "Start the bot once so it repairs its profile, stop it, then import again",
            )
        live = paths.profile
        if live.exists():
            prof.clear_stale_locks(live)  # raises ProfileInUse if our browser still runs
            if backup_current is not None and prof.validate_profile(live, origin_url).has_session:
                log.info("Backing up the current session before the import")
                backup_current()
        aside = prof.swap_in(staged, live, paths.quarantine)
        if aside is not None:
            atomic_write_json(
                aside / "reason.json",
                {
                    "reason": f"replaced by an imported session ({kind})",
                    "quarantined_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                },
            )
            prof.prune_quarantine(paths.quarantine, exclude=aside)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("Imported a %s session: %d files, %d bytes", kind, count, size)
    return ImportResult(source_kind=kind, files=count, bytes=size, aside_path=aside, source_dir=user_data)

