"""Encrypted backups of the session parts of the Chromium profile.

One backup = one ``<id>.lindabak`` file in ``backups_dir``: a plaintext header (id, created_at,
reason: enough to list without the key) and an AES-256-GCM stream (see crypto.py) holding a tar
of the session files followed by an authenticated manifest (path, size, SHA-256 of each file,
origin, versions). Written to a temp name, fsynced, renamed, folder fsynced: a crash leaves only
a temp file, which ``list()`` ignores and the next ``create()``/``rotate()`` removes.

Hot backups (browser running): each LevelDB store is first snapshotted into a private staging
folder — CURRENT, then the MANIFEST it names, then the tables/logs listed *after* that copy
(tables hard-linked: LevelDB never rewrites them); taken again when a file vanished, CURRENT
moved or the MANIFEST grew meanwhile (LevelDB logs every version edit there before it deletes
a table, so an unchanged MANIFEST means every table it names was copied).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import re
import secrets
import shutil
import stat
import tarfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from linda_desktop.base.atomic import atomic_write_json, fsync_dir
from linda_desktop.base.errors import (
    BackupCorrupt,
    BackupNotFound,
    ProfileInvalid,
    StorageError,
    WrongKey,
)
from linda_desktop.base.paths import ensure_private_dir
from linda_desktop.session.crypto import DAMAGED_FIX, DecryptingReader, EncryptingWriter, key_id, read_header
from linda_desktop.session.profile import pid_alive

log = logging.getLogger(__name__)

SUFFIX = ".lindabak"
MANIFEST_NAME = ".linda-manifest.json"
PAYLOAD_FORMAT = 1
INDEX_NAME = "index.json"
_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{4,16}$")
_TEMP_RE = re.compile(r"^\.(?P<id>[0-9]{8}T[0-9]{6}Z-[0-9a-f]{4,16})\.(?P<pid>[0-9]+)\.tmp$")
_STAGE_RE = re.compile(r"^\.linda-(?:stage|restore)-(?P<pid>[0-9]+)-[0-9a-f]+$")
_STALE_AGE = 6 * 3600  # a temp whose owner we cannot check is stale after this long
_IO_BLOCK = 1 << 20
_MAX_MANIFEST = 16 << 20
_SNAPSHOT_TRIES = 10
_TABLE_SUFFIXES = (".ldb", ".sst")


@dataclass(frozen=True)
class BackupInfo:
    id: str
    path: Path
    created_at: datetime
    size: int
    reason: str
    known_good: bool
    key_matches: bool = True  # False: made with another key (or header unreadable)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": self.created_at.isoformat(timespec="seconds"),
            "size": self.size,
            "reason": self.reason,
            "known_good": self.known_good,
            "key_matches": self.key_matches,
        }


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def _storage_error(exc: OSError, folder: Path) -> StorageError:
    code = exc.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return StorageError(
            f"Not enough disk space for a backup in {folder}",
            "Free some disk space, then back up again (older backups are kept)",
        )
    if code in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR):
        return StorageError(
            f"Cannot write backups to {folder}: the folder is read-only or not writable",
            "Make the folder writable for your user, or choose another data folder (--data-dir)",
        )
    return StorageError(
        f"Could not write a backup to {folder}: {exc.strerror or exc}",
        "Check the disk and the folder's permissions, then back up again",
    )


def _unsafe(why: str, name: str) -> BackupCorrupt:
    shown = name if len(name) <= 80 else name[:77] + "..."
    return BackupCorrupt(
        f"This backup holds an unsafe entry ({why}): {shown!r}; it was not restored",
        "Restore another backup; do not use this file",
    )


def _mismatch(what: str) -> BackupCorrupt:
    return BackupCorrupt(f"This backup does not match its manifest: {what}", DAMAGED_FIX)


# --------------------------------------------------------------------------------------------
# Snapshot (staging) of the live profile
# --------------------------------------------------------------------------------------------


class _Vanished(Exception):
    """A file went away while it was being copied (LevelDB compaction): take the store again."""


class _Stager:
    """Copies the session files into a private staging folder, consistent per LevelDB store."""

    def __init__(self, profile_dir: Path, origin_url: str, stage: Path) -> None:
        self.profile = profile_dir
        self.origin = origin_url
        self.stage = stage
        self._can_link = True

    def _list(self) -> list[str]:
        from linda_desktop.session.profile import session_files

        return session_files(self.profile, self.origin)

    def run(self) -> list[str]:
        files = self._list()
        stores = [str(PurePosixPath(rel).parent) for rel in files if PurePosixPath(rel).name == "CURRENT"]
        staged: list[str] = []
        done_stores: set[str] = set()
        for rel in files:
            parent = str(PurePosixPath(rel).parent)
            if parent in stores:
                if parent not in done_stores:
                    staged += self._store(parent)
                    done_stores.add(parent)
                continue
            try:
                self._copy(rel, link=self._is_immutable(rel))
            except FileNotFoundError:
                log.info("A session file vanished while backing up; skipped: %s", rel)
                continue
            staged.append(rel)
        return staged

    @staticmethod
    def _is_immutable(rel: str) -> bool:
        # LevelDB tables and IndexedDB blob files are written once, never changed in place.
        return rel.endswith(_TABLE_SUFFIXES) or ".indexeddb.blob/" in rel

    def _store(self, store: str) -> list[str]:
        live = self.profile / store
        for attempt in range(_SNAPSHOT_TRIES):
            shutil.rmtree(self.stage / store, ignore_errors=True)
            try:
                current = (live / "CURRENT").read_bytes()
                manifest = current.decode("ascii", "replace").strip()
                if not manifest.startswith("MANIFEST-") or "/" in manifest or "\\" in manifest:
                    raise _Vanished()  # CURRENT mid-write
                # Files listed after the MANIFEST copy include every table that copy names,
                # unless a compaction deleted some meanwhile: that appends to the MANIFEST
                # first, which the size check below catches.
                self._copy(f"{store}/{manifest}", link=False)
                copied_size = (self.stage / store / manifest).stat().st_size
                listed = [
                    rel
                    for rel in self._list()
                    if str(PurePosixPath(rel).parent) == store
                    and PurePosixPath(rel).name != "CURRENT"
                    and not PurePosixPath(rel).name.startswith("MANIFEST-")
                ]
                for rel in listed:
                    self._copy(rel, link=rel.endswith(_TABLE_SUFFIXES))
                self._write(f"{store}/CURRENT", current)
                if (live / "CURRENT").read_bytes() == current and (live / manifest).stat().st_size == copied_size:
                    return [f"{store}/CURRENT", f"{store}/{manifest}", *listed]
            except (FileNotFoundError, _Vanished):
                pass
            log.info("LevelDB store %s changed while copying it; retrying (%d)", store, attempt + 1)
            time.sleep(0.02 * (attempt + 1))
        raise StorageError(
            "Could not take a consistent copy of the session: it kept changing",
            "Try the backup again in a minute",
        )

    def _target(self, rel: str) -> Path:
        target = self.stage / rel
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return target

    def _copy(self, rel: str, *, link: bool) -> None:
        source, target = self.profile / rel, self._target(rel)
        if link and self._can_link:
            try:
                os.link(source, target)
                return
            except FileNotFoundError:
                raise
            except OSError:
                self._can_link = False  # other disk, FAT, no permission: copy instead
        shutil.copyfile(source, target)

    def _write(self, rel: str, data: bytes) -> None:
        with open(self._target(rel), "wb") as handle:
            handle.write(data)


# --------------------------------------------------------------------------------------------
# Payload: a tar stream of the files + the manifest, inside the encrypted stream
# --------------------------------------------------------------------------------------------


class _HashingReader:
    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._handle.read(n)
        self.sha.update(data)
        return data


def write_payload(out: Any, source_dir: Path, files: list[str], manifest: dict[str, Any]) -> dict[str, Any]:
    """Stream ``files`` (relative to ``source_dir``) and then the manifest into ``out``."""
    manifest = dict(manifest)
    entries = []
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=_IO_BLOCK) as tar:
        tar.copybufsize = _IO_BLOCK
        for rel in files:
            with open(source_dir / rel, "rb") as handle:
                st = os.fstat(handle.fileno())
                info = tarfile.TarInfo(rel)
                info.size, info.mtime, info.mode = st.st_size, int(st.st_mtime), 0o600
                reader = _HashingReader(handle)
                tar.addfile(info, reader)
            entries.append({"path": rel, "size": st.st_size, "sha256": reader.sha.hexdigest()})
        manifest["files"] = entries
        data = json.dumps(manifest, sort_keys=True).encode("utf-8")
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
        tar.addfile(info, io.BytesIO(data))
    return manifest


def check_entry_name(name: str) -> str:
    """The entry's relative POSIX path if it is safe to create under a folder; else BackupCorrupt."""
    if not name or "\x00" in name:
        raise _unsafe("empty name", name)
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise _unsafe("absolute path", name)
    if "\\" in name or ":" in name:
        raise _unsafe("path with '\\' or ':'", name)
    parts = PurePosixPath(name).parts
    if any(part == ".." for part in parts):
        raise _unsafe("path with '..'", name)
    parts = tuple(part for part in parts if part != ".")
    if not parts:
        raise _unsafe("empty name", name)
    if parts[0].startswith(".linda-"):
        raise _unsafe("reserved name", name)
    return "/".join(parts)


def _check_member(member: tarfile.TarInfo) -> str:
    if member.issym():
        raise _unsafe("symbolic link", member.name)
    if member.islnk():
        raise _unsafe("hard link", member.name)
    if member.ischr() or member.isblk():
        raise _unsafe("device", member.name)
    if member.isfifo():
        raise _unsafe("pipe", member.name)
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE):
        raise _unsafe("unsupported entry type", member.name)
    return check_entry_name(member.name)


class _Sink:
    """Where read_payload puts the files: nowhere (verify) or a folder (extract)."""

    def directory(self, rel: str) -> None:
        pass

    def open(self, rel: str) -> Any:
        return None

    def done(self, handle: Any) -> None:
        pass


class _FolderSink(_Sink):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.dirs: set[Path] = {root}

    def _mkdirs(self, folder: Path) -> None:
        missing = []
        while folder not in self.dirs:
            missing.append(folder)
            folder = folder.parent
        for path in reversed(missing):
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    raise _unsafe("path through a file", str(path.relative_to(self.root))) from None
            self.dirs.add(path)

    def directory(self, rel: str) -> None:
        self._mkdirs(self.root / rel)

    def open(self, rel: str) -> Any:
        target = self.root / rel
        self._mkdirs(target.parent)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(target, flags, 0o600)
        except FileExistsError:
            raise _unsafe("duplicate entry", rel) from None
        return os.fdopen(fd, "wb", buffering=0)

    def done(self, handle: Any) -> None:
        os.fsync(handle.fileno())
        handle.close()


def _validate_manifest(manifest: Any, seen: dict[str, tuple[int, str]], header_meta: dict[str, Any]) -> dict:
    if not isinstance(manifest, dict) or manifest.get("format") != PAYLOAD_FORMAT:
        raise _mismatch("the manifest is missing or unreadable")
    files = manifest.get("files")
    if not isinstance(files, list):
        raise _mismatch("the manifest has no file list")
    if manifest.get("id") != header_meta.get("id"):
        raise _mismatch("the manifest belongs to another backup")
    listed: dict[str, tuple[int, str]] = {}
    for entry in files:
        if not isinstance(entry, dict):
            raise _mismatch("a manifest entry is unreadable")
        path, size, sha = entry.get("path"), entry.get("size"), entry.get("sha256")
        if not isinstance(path, str) or not isinstance(size, int) or not isinstance(sha, str):
            raise _mismatch("a manifest entry is unreadable")
        listed[check_entry_name(path)] = (size, sha)
    for path, (size, sha) in seen.items():
        if path not in listed:
            raise _mismatch(f"{path} is not in the manifest")
        if listed[path][0] != size:
            raise _mismatch(f"{path} has {size} bytes, the manifest says {listed[path][0]}")
        if listed[path][1] != sha:
            raise _mismatch(f"{path} has another content than the manifest says (SHA-256)")
    missing = sorted(set(listed) - set(seen))
    if missing:
        raise _mismatch(f"{missing[0]} is missing")
    return manifest


def read_payload(reader: DecryptingReader, sink: _Sink) -> dict[str, Any]:
    """Read the tar stream, check every entry and the manifest, authenticate to the final chunk."""
    seen: dict[str, tuple[int, str]] = {}
    manifest: Any = None
    try:
        with tarfile.open(fileobj=reader, mode="r|", bufsize=_IO_BLOCK) as tar:
            for member in tar:
                if manifest is not None:
                    raise _mismatch("there are entries after the manifest")
                if member.name == MANIFEST_NAME and member.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
                    if member.size > _MAX_MANIFEST:
                        raise _mismatch("the manifest is too large")
                    handle = tar.extractfile(member)
                    try:
                        manifest = json.loads(handle.read().decode("utf-8")) if handle else None
                    except ValueError:
                        raise _mismatch("the manifest is unreadable") from None
                    continue
                rel = _check_member(member)
                if member.isdir():
                    sink.directory(rel)
                    continue
                if rel in seen:
                    raise _unsafe("duplicate entry", rel)
                source = tar.extractfile(member)
                sha, size = hashlib.sha256(), 0
                out = sink.open(rel)
                while True:
                    block = source.read(_IO_BLOCK) if source else b""
                    if not block:
                        break
                    sha.update(block)
                    size += len(block)
                    if out is not None:
                        out.write(block)
                if out is not None:
                    sink.done(out)
                seen[rel] = (size, sha.hexdigest())
        reader.drain()
    except tarfile.TarError as exc:
        raise BackupCorrupt(f"This backup is damaged: its file list is unreadable ({exc})", DAMAGED_FIX) from exc
    if not reader.finished:
        raise BackupCorrupt("This backup is incomplete (the file was cut short)", DAMAGED_FIX)
    return _validate_manifest(manifest, seen, reader.header.meta)


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


def _parse_time(text: Any) -> datetime | None:
    try:
        value = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def list_backups(backups_dir: Path) -> list[BackupInfo]:
    """List backups without the key (headers are plaintext); ``key_matches`` is then not checked."""
    return BackupStore(backups_dir, None).list()


class BackupStore:
    """Create, list, verify, restore and rotate encrypted backups in one folder.

    ``key`` may be None for a store that only lists (status, `backups` without a keyring).
    """

    def __init__(
        self,
        backups_dir: Path,
        key: bytes | None,
        *,
        keep: int = 5,
        work_dir: Path | None = None,
        compress: bool = True,
    ) -> None:
        """``compress``: deflate the chunks that shrink (see crypto.py); off only for benchmarks."""
        if key is not None and len(key) != 32:
            raise ValueError("the backup key must be 32 bytes")
        self.backups_dir = Path(backups_dir)
        self.keep = max(1, int(keep))
        self.work_dir = Path(work_dir) if work_dir is not None else None
        self._key = key
        self._compress = compress
        self._key_id = key_id(key) if key is not None else None
        self._lock = threading.RLock()
        self._active: set[Path] = set()
        self.last_replaced: Path | None = None  # where restore() put the previous live profile

    def _key_or_raise(self) -> bytes:
        if self._key is None:
            from linda_desktop.base.errors import KeyringUnavailable

            raise KeyringUnavailable("No backup key is available", "install and unlock a keyring, "
                                     "or set a backup passphrase with LINDA_BACKUP_PASSPHRASE")
        return self._key

    # ---- listing -------------------------------------------------------------------------

    def _path(self, backup_id: str) -> Path:
        return self.backups_dir / f"{backup_id}{SUFFIX}"

    def _known_good_id(self) -> str | None:
        try:
            value = json.loads((self.backups_dir / INDEX_NAME).read_text("utf-8")).get("known_good")
        except (OSError, ValueError, AttributeError):
            return None
        return value if isinstance(value, str) and _ID_RE.match(value) else None

    def _info(self, path: Path, known_good_id: str | None) -> BackupInfo:
        backup_id = path.name[: -len(SUFFIX)]
        created: datetime | None = None
        reason, matches = "unknown", False
        try:
            with open(path, "rb") as handle:
                header = read_header(handle)
                size = os.fstat(handle.fileno()).st_size
            created = _parse_time(header.meta.get("created_at"))
            reason = str(header.meta.get("reason", "unknown"))
            matches = self._key_id is None or header.key_id == self._key_id
        except BackupCorrupt:
            size = path.stat().st_size
            reason = "unreadable"
        if created is None:
            created = datetime.strptime(backup_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        return BackupInfo(backup_id, path, created, size, reason, backup_id == known_good_id, matches)

    def list(self) -> list[BackupInfo]:
        """Every complete backup, newest first (temp files of running or crashed backups never)."""
        try:
            names = os.listdir(self.backups_dir)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise _storage_error(exc, self.backups_dir) from exc
        known = self._known_good_id()
        infos = []
        for name in names:
            if name.endswith(SUFFIX) and _ID_RE.match(name[: -len(SUFFIX)]):
                try:
                    infos.append(self._info(self.backups_dir / name, known))
                except FileNotFoundError:
                    continue  # rotated away meanwhile
        infos.sort(key=lambda info: (info.created_at, info.id), reverse=True)
        return infos

    def get(self, backup_id: str) -> BackupInfo:
        if not isinstance(backup_id, str) or not _ID_RE.match(backup_id) or not self._path(backup_id).is_file():
            raise BackupNotFound(
                f"There is no backup {backup_id!r}", "List the backups with `linda-desktop backups`"
            )
        return self._info(self._path(backup_id), self._known_good_id())

    def newest(self) -> BackupInfo | None:
        infos = self.list()
        return infos[0] if infos else None

    # ---- creating ------------------------------------------------------------------------

    def _new_id(self, created: datetime) -> str:
        while True:
            candidate = f"{created:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"
            if not self._path(candidate).exists():
                return candidate

    def _ensure_backups_dir(self) -> None:
        try:
            ensure_private_dir(self.backups_dir)
        except OSError as exc:
            raise _storage_error(exc, self.backups_dir) from exc

    def _scratch_root(self, profile_dir: Path) -> Path:
        return self.work_dir if self.work_dir is not None else profile_dir.parent

    def create(
        self,
        profile_dir: Path,
        *,
        origin_url: str,
        reason: str = "auto",
        browser_version: str | None = None,
        app_version: str | None = None,
    ) -> BackupInfo:
        """Back up the session files of ``profile_dir`` (the browser may be running)."""
        profile_dir = Path(profile_dir)
        with self._lock:
            self._ensure_backups_dir()
            self.cleanup(profile_dir)
            created = datetime.now(timezone.utc)
            backup_id = self._new_id(created)
            scratch = self._scratch_root(profile_dir)
            stage = scratch / f".linda-stage-{os.getpid()}-{secrets.token_hex(4)}"
            temp = self.backups_dir / f".{backup_id}.{os.getpid()}.tmp"
            final = self._path(backup_id)
            where = scratch
            self._active.update({stage, temp})
            try:
                ensure_private_dir(scratch)
                os.mkdir(stage, 0o700)
                started = time.monotonic()
                files = _Stager(profile_dir, origin_url, stage).run()
                if not files:
                    raise ProfileInvalid(
                        "There is no session to back up", "Link this computer first (scan the QR code)"
                    )
                if app_version is None:
                    from linda_desktop import __version__

                    app_version = __version__
                meta = {"id": backup_id, "created_at": created.isoformat(), "reason": reason}
                manifest = {
                    **meta,
                    "format": PAYLOAD_FORMAT,
                    "origin": origin_url,
                    "app_version": app_version,
                    "browser_version": browser_version,
                }
                where = self.backups_dir
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
                with os.fdopen(fd, "wb") as raw:
                    writer = EncryptingWriter(raw, self._key_or_raise(), meta, compress=self._compress)
                    write_payload(writer, stage, files, manifest)
                    writer.close()
                    raw.flush()
                    os.fsync(raw.fileno())
                os.rename(temp, final)
                fsync_dir(self.backups_dir)
                size = final.stat().st_size
                log.info(
                    "Backup %s made (%s, %d files, %.1f MB) in %.2f s",
                    backup_id, reason, len(files), size / 1e6, time.monotonic() - started,
                )
            except OSError as exc:
                raise _storage_error(exc, where) from exc
            finally:
                self._active.difference_update({stage, temp})
                try:
                    os.unlink(temp)
                except FileNotFoundError:
                    pass
                except OSError:
                    log.warning("Could not remove the temp file %s", temp)
                shutil.rmtree(stage, ignore_errors=True)
            return BackupInfo(backup_id, final, created, size, reason, False, True)

    # ---- reading -------------------------------------------------------------------------

    def _read(self, backup_id: str, sink: _Sink) -> dict[str, Any]:
        info = self.get(backup_id)
        try:
            with open(info.path, "rb") as handle:
                reader = DecryptingReader(handle, self._key_or_raise())
                return read_payload(reader, sink)
        except (BackupCorrupt, WrongKey) as exc:
            log.warning("Backup %s refused: %s", backup_id, exc.message)
            raise
        except OSError as exc:
            if isinstance(sink, _FolderSink):
                raise _storage_error(exc, sink.root) from exc
            raise BackupCorrupt(f"This backup cannot be read: {exc.strerror or exc}", DAMAGED_FIX) from exc

    def verify(self, backup_id: str) -> dict[str, Any]:
        """Decrypt and check the whole backup (every chunk, every file's SHA-256); returns the manifest."""
        return self._read(backup_id, _Sink())

    def extract(self, backup_id: str, dest: Path) -> dict[str, Any]:
        """Unpack a backup into ``dest`` (new or empty folder), fully verified; on any failure
        ``dest`` is left as it was found. Returns the manifest."""
        dest = Path(dest)
        created = not dest.exists()
        if not created and (not dest.is_dir() or any(dest.iterdir())):
            raise FileExistsError(f"{dest} must be a new or empty folder")
        try:
            dest.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise _storage_error(exc, dest.parent) from exc
        sink = _FolderSink(dest)
        try:
            manifest = self._read(backup_id, sink)
            for folder in sorted(sink.dirs, key=lambda p: len(p.parts), reverse=True):
                fsync_dir(folder)  # the restored files must survive a power cut once swapped in
            fsync_dir(dest.parent)
            return manifest
        except BaseException:
            if created:
                shutil.rmtree(dest, ignore_errors=True)
            else:
                for child in dest.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink()
            raise

    def restore(self, backup_id: str, profile_dir: Path) -> BackupInfo:
        """Make the backup the live profile: extract beside it, verify, swap in atomically.

        The replaced profile is moved aside (``self.last_replaced``), never deleted. Any failure
        before the swap leaves the live profile untouched.
        """
        from linda_desktop.session.profile import remove_singleton_locks, swap_in

        profile_dir = Path(profile_dir)
        with self._lock:
            info = self.get(backup_id)
            scratch = self._scratch_root(profile_dir)
            try:
                ensure_private_dir(scratch)
            except OSError as exc:
                raise _storage_error(exc, scratch) from exc
            fresh = scratch / f".linda-restore-{os.getpid()}-{secrets.token_hex(4)}"
            self._active.add(fresh)
            started = time.monotonic()
            try:
                self.extract(backup_id, fresh)
                remove_singleton_locks(fresh)
                aside_root = scratch / "replaced-profiles" if self.work_dir else (
                    profile_dir.parent / f".{profile_dir.name}-replaced"
                )
                self.last_replaced = swap_in(fresh, profile_dir, aside_root)
            finally:
                self._active.discard(fresh)
                shutil.rmtree(fresh, ignore_errors=True)
            log.info("Restored backup %s in %.2f s", backup_id, time.monotonic() - started)
            return info

    # ---- known-good and rotation ---------------------------------------------------------

    def mark_known_good(self, backup_id: str) -> None:
        """Remember ``backup_id`` as the one backup known to bring the session up."""
        with self._lock:
            self.get(backup_id)
            try:
                atomic_write_json(self.backups_dir / INDEX_NAME, {"known_good": backup_id})
            except OSError as exc:
                raise _storage_error(exc, self.backups_dir) from exc

    def known_good(self) -> BackupInfo | None:
        known = self._known_good_id()
        if known is None or not self._path(known).is_file():
            return None
        return self._info(self._path(known), known)

    def rotate(self) -> list[str]:
        """Keep the newest ``keep`` backups plus the known-good one; remove the rest.

        Backups made with another key (or with an unreadable header) are never removed here:
        they may be the only copy of a session whose key can still be recovered.
        """
        with self._lock:
            self.cleanup()
            infos = [info for info in self.list() if info.key_matches]
            keep = {info.id for info in infos[: self.keep]}
            keep.add(self._known_good_id() or "")
            removed = []
            for info in infos:
                if info.id in keep:
                    continue
                try:
                    info.path.unlink()
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise _storage_error(exc, self.backups_dir) from exc
                removed.append(info.id)
            if removed:
                fsync_dir(self.backups_dir)
                log.info("Removed %d old backup(s): %s", len(removed), ", ".join(removed))
            return removed

    def cleanup(self, profile_dir: Path | None = None) -> list[str]:
        """Remove temp files and staging folders left by backups/restores that died midway."""
        removed: list[str] = []
        places: list[tuple[Path, re.Pattern[str]]] = [(self.backups_dir, _TEMP_RE)]
        if self.work_dir is not None:
            places.append((self.work_dir, _STAGE_RE))
        if profile_dir is not None:
            places.append((Path(profile_dir).parent, _STAGE_RE))
        now = time.time()
        for folder, pattern in places:
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                match = pattern.match(entry.name)
                path = Path(entry.path)
                if not match or path in self._active:
                    continue
                pid = int(match.group("pid"))
                try:
                    age = now - entry.stat(follow_symlinks=False).st_mtime
                except OSError:
                    continue
                if pid != os.getpid() and pid_alive(pid) and age < _STALE_AGE:
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(path)
                    else:
                        path.unlink()
                    removed.append(entry.name)
                except OSError:
                    continue
        if removed:
            log.info("Removed %d leftover(s) of interrupted backups", len(removed))
        return removed

