"""Encrypted backups of the session parts of the Chromium profile.

One backup = one ``<id>.lindaman`` manifest in ``backups_dir`` plus the chunks it names, shared
between backups (deduplicated, see chunkstore.py). A backup writes only the chunks that are new
(each temp, fsync, rename), then its manifest (temp, fsync, rename, folder fsync): a crash
leaves at most a temp file and chunks no manifest names, which ``list()`` never shows and the
next ``create()``/``rotate()`` removes. ``rotate()`` removes manifests first, then sweeps the
chunks no remaining manifest needs, so a crash during it never leaves a backup short of a chunk.

The older format, one ``<id>.lindabak`` archive per backup (a plaintext header and an
AES-256-GCM stream holding a tar of the files and an authenticated manifest, see crypto.py), is
still listed, verified, restored and rotated.

Hot backups (browser running): each LevelDB store is first snapshotted into a private staging
folder — CURRENT, then the MANIFEST it names, then the tables/logs listed *after* that copy
(tables hard-linked: LevelDB never rewrites them); taken again when a file vanished, CURRENT
moved or the MANIFEST grew meanwhile (LevelDB logs every version edit there before it deletes
a table, so an unchanged MANIFEST means every table it names was copied).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import hashlib
import hmac
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
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

try:
    import fcntl
except ImportError:  # Windows: one process per data folder is ensured by the instance lock
    fcntl = None  # type: ignore[assignment]

from linda_desktop.base.atomic import atomic_write_json, fsync_dir
from linda_desktop.base.errors import (
    BackupCorrupt,
    BackupNotFound,
    NoBackups,
    ProfileInvalid,
    StorageError,
    WrongKey,
)
from linda_desktop.base.paths import ensure_private_dir
from linda_desktop.session.chunkstore import (
    MANIFEST_SUFFIX,
    MAX_MANIFEST_FILE,
    PIECE_SIZE,
    ChunkDir,
    ChunkKeys,
    manifest_chunks,
    open_chunk,
    open_manifest,
    read_manifest_header,
    seal_chunk,
    seal_manifest,
)
from linda_desktop.session.crypto import (
    DAMAGED_FIX,
    DecryptingReader,
    EncryptingWriter,
    key_id,
    read_header,
)
from linda_desktop.session.profile import pid_alive

log = logging.getLogger(__name__)

SUFFIX = ".lindabak"
MANIFEST_NAME = ".linda-manifest.json"
PAYLOAD_FORMAT = 1
CHUNKED_FORMAT = 2
LOCK_NAME = ".lock"
INDEX_NAME = "index.json"
_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{4,16}$")
_TEMP_RE = re.compile(r"^\.(?P<id>[0-9]{8}T[0-9]{6}Z-[0-9a-f]{4,16})\.(?P<pid>[0-9]+)\.tmp$")
_STAGE_RE = re.compile(r"^\.linda-(?:stage|restore)-(?P<pid>[0-9]+)-[0-9a-f]+$")
_STALE_AGE = 6 * 3600  # a temp whose owner we cannot check is stale after this long
_IO_BLOCK = 1 << 20
_MAX_MANIFEST = 16 << 20
_SNAPSHOT_TRIES = 10
_TABLE_SUFFIXES = (".ldb", ".sst")


FORMAT_CHUNKED = "chunked"  # <id>.lindaman + shared chunks (chunkstore.py)
FORMAT_ARCHIVE = "archive"  # <id>.lindabak, one streamed archive (the format before 2026-12)


@dataclass(frozen=True)
class BackupInfo:
    id: str
    path: Path
    created_at: datetime
    size: int  # bytes this backup needs on disk (chunked: its manifest + every chunk it uses)
    reason: str
    known_good: bool
    # True: the current key opens it (keyed check); False: another key, or its header is
    # unreadable; None: not checked, no key at hand (keyless listing).
    key_matches: bool | None = True
    format: str = FORMAT_CHUNKED
    written: int | None = None  # bytes written to make it (chunked: new chunks + manifest)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": self.created_at.isoformat(timespec="seconds"),
            "size": self.size,
            "written": self.written,
            "reason": self.reason,
            "known_good": self.known_good,
            "key_matches": self.key_matches,
            "format": self.format,
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
        tar.copybufsize = _IO_BLOCK  # type: ignore[attr-defined]
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


def _validate_manifest(manifest: Any, seen: dict[str, tuple[int, str]], header_meta: dict[str, Any]) -> dict[str, Any]:
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
        with tarfile.open(fileobj=reader, mode="r|", bufsize=_IO_BLOCK) as tar:  # type: ignore[call-overload]
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


def list_backups(backups_dir: Path, key: bytes | None = None) -> list[BackupInfo]:
    """List backups; headers are plaintext, so no key is needed. Without ``key`` nothing is
    checked against a key: ``key_matches`` is then None (unknown), never a guess."""
    return BackupStore(backups_dir, key).list()


def list_backups_checked(backups_dir: Path, passphrase_file: Path) -> list[BackupInfo]:
    """``list_backups`` with ``key_matches`` checked when the backup key can be had without
    creating one (keyring or passphrase); keyless (None) when it cannot. For `status` and
    `backups` with the app stopped."""
    from linda_desktop.base.errors import LindaError
    from linda_desktop.session.keystore import KeyStore

    try:
        key: bytes | None = KeyStore(passphrase_file).load_key(create=False)
    except LindaError:
        key = None
    return list_backups(backups_dir, key)


def count_other_key(backups_dir: Path, key: bytes) -> int:
    """How many backups on disk were made with another key (readable header, other fingerprint).

    For the start-up notice "N backups were made with another key; they are kept"."""
    return BackupStore(backups_dir, key).other_key_count()


def _read_small(path: Path, limit: int) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(limit + 1)


def _int_or(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


class BackupStore:
    """Create, list, verify, restore and rotate encrypted backups in one folder.

    New backups go to the deduplicated chunk store (chunkstore.py); backups of the older
    one-archive format (``<id>.lindabak``) are still listed, verified, restored and rotated.
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
        backup_format: str = FORMAT_CHUNKED,
    ) -> None:
        """``compress``: deflate the chunks that shrink (see crypto.py); off only for benchmarks.
        ``backup_format``: FORMAT_ARCHIVE writes the older format (benchmarks and tests only)."""
        if key is not None and len(key) != 32:
            raise ValueError("the backup key must be 32 bytes")
        if backup_format not in (FORMAT_CHUNKED, FORMAT_ARCHIVE):
            raise ValueError(f"unknown backup format {backup_format!r}")
        self.backups_dir = Path(backups_dir)
        self.keep = max(1, int(keep))
        self.work_dir = Path(work_dir) if work_dir is not None else None
        self.format = backup_format
        self._key = key
        self._compress = compress
        self._key_id = key_id(key) if key is not None else None
        self._keys = ChunkKeys.derive(key) if key is not None else None
        self._lock = threading.RLock()
        self._active: set[Path] = set()
        self.last_replaced: Path | None = None  # where restore() put the previous live profile

    def _key_or_raise(self) -> bytes:
        if self._key is None:
            from linda_desktop.base.errors import KeyringUnavailable

            raise KeyringUnavailable("No backup key is available", "install and unlock a keyring, "
                                     "or set a backup passphrase with LINDA_BACKUP_PASSPHRASE")
        return self._key

    def _chunk_keys(self) -> ChunkKeys:
        self._key_or_raise()
        assert self._keys is not None
        return self._keys

    @contextlib.contextmanager
    def _writer_lock(self) -> Iterator[None]:
        """One writer at a time across processes: chunks are shared, and GC must never run
        while another process has written chunks its manifest is not yet committed for."""
        fd = os.open(self.backups_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    # ---- listing -------------------------------------------------------------------------

    def _path(self, backup_id: str) -> Path:
        """Where ``backup_id`` is (either format); the new format's name when there is none."""
        legacy = self.backups_dir / f"{backup_id}{SUFFIX}"
        return legacy if legacy.is_file() else self.backups_dir / f"{backup_id}{MANIFEST_SUFFIX}"

    def _known_good_id(self) -> str | None:
        try:
            value = json.loads((self.backups_dir / INDEX_NAME).read_text("utf-8")).get("known_good")
        except (OSError, ValueError, AttributeError):
            return None
        return value if isinstance(value, str) and _ID_RE.match(value) else None

    def _info(self, path: Path, known_good_id: str | None) -> BackupInfo:
        if path.name.endswith(MANIFEST_SUFFIX):
            return self._manifest_info(path, known_good_id)
        backup_id = path.name[: -len(SUFFIX)]
        created: datetime | None = None
        reason = "unknown"
        matches: bool | None = None if self._key_id is None else False
        try:
            with open(path, "rb") as handle:
                header = read_header(handle)
                size = os.fstat(handle.fileno()).st_size
            created = _parse_time(header.meta.get("created_at"))
            reason = str(header.meta.get("reason", "unknown"))
            if self._key_id is not None:
                # key_id is HMAC(key, ...): only this key yields it; the header checksum makes a
                # flipped byte read as damage rather than as another key.
                matches = hmac.compare_digest(header.key_id, self._key_id)
        except BackupCorrupt:
            size = path.stat().st_size
            reason = "unreadable"
        if created is None:
            created = datetime.strptime(backup_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        return BackupInfo(
            backup_id, path, created, size, reason, backup_id == known_good_id, matches, FORMAT_ARCHIVE, size
        )

    def _manifest_info(self, path: Path, known_good_id: str | None) -> BackupInfo:
        backup_id = path.name[: -len(MANIFEST_SUFFIX)]
        created: datetime | None = None
        reason = "unknown"
        matches: bool | None = None if self._key is None else False
        blob = _read_small(path, MAX_MANIFEST_FILE)
        size, written = len(blob), len(blob)
        try:
            header, _ = read_manifest_header(blob)
            created = _parse_time(header.meta.get("created_at"))
            reason = str(header.meta.get("reason", "unknown"))
            size += _int_or(header.meta.get("chunk_bytes"), 0)
            written += _int_or(header.meta.get("new_bytes"), 0)
            if self._key is not None and hmac.compare_digest(header.key_id, self._key_id or b""):
                try:
                    open_manifest(self._key, blob)  # a trial decrypt: this key truly opens it
                    matches = True
                except BackupCorrupt:
                    matches = True  # made with this key (keyed fingerprint), but damaged: verify says so
        except BackupCorrupt:
            reason = "unreadable"
        if created is None:
            created = datetime.strptime(backup_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        return BackupInfo(
            backup_id, path, created, size, reason, backup_id == known_good_id, matches, FORMAT_CHUNKED, written
        )

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
            for suffix in (MANIFEST_SUFFIX, SUFFIX):
                if name.endswith(suffix) and _ID_RE.match(name[: -len(suffix)]):
                    try:
                        infos.append(self._info(self.backups_dir / name, known))
                    except FileNotFoundError:
                        continue  # rotated away meanwhile
        infos.sort(key=lambda info: (info.created_at, info.id), reverse=True)
        return infos

    def other_key_count(self) -> int:
        """Backups whose header is readable and names another key (kept, never rotated)."""
        if self._key is None:
            return 0
        return sum(1 for info in self.list() if info.key_matches is False and info.reason != "unreadable")

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
            if not any((self.backups_dir / f"{candidate}{suffix}").exists() for suffix in (SUFFIX, MANIFEST_SUFFIX)):
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
            self._key_or_raise()
            self._ensure_backups_dir()
            self.cleanup(profile_dir)
            created = datetime.now(timezone.utc)
            backup_id = self._new_id(created)
            scratch = self._scratch_root(profile_dir)
            stage = scratch / f".linda-stage-{os.getpid()}-{secrets.token_hex(4)}"
            temp = self.backups_dir / f".{backup_id}.{os.getpid()}.tmp"
            suffix = SUFFIX if self.format == FORMAT_ARCHIVE else MANIFEST_SUFFIX
            final = self.backups_dir / f"{backup_id}{suffix}"
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
                    "origin": origin_url,
                    "app_version": app_version,
                    "browser_version": browser_version,
                }
                where = self.backups_dir
                with self._writer_lock():
                    if self.format == FORMAT_ARCHIVE:
                        self._write_archive(temp, stage, files, meta, {**manifest, "format": PAYLOAD_FORMAT})
                    else:
                        self._write_chunked(temp, stage, files, meta, {**manifest, "format": CHUNKED_FORMAT})
                    os.rename(temp, final)
                    fsync_dir(self.backups_dir)
                info = self._info(final, None)
                log.info(
                    "Backup %s made (%s, %d files, %.1f MB, %.1f MB written) in %.2f s",
                    backup_id, reason, len(files), info.size / 1e6, (info.written or 0) / 1e6,
                    time.monotonic() - started,
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
            return info

    def _write_archive(self, temp: Path, stage: Path, files: builtins.list[str], meta: dict[str, Any],
                       manifest: dict[str, Any]) -> None:
        """The older format: one streamed archive (kept for the benchmark's baseline and tests)."""
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
        with os.fdopen(fd, "wb") as raw:
            writer = EncryptingWriter(raw, self._key_or_raise(), meta, compress=self._compress)
            write_payload(writer, stage, files, manifest)
            writer.close()
            raw.flush()
            os.fsync(raw.fileno())

    def _previous_files(self) -> dict[str, dict[str, Any]]:
        """The files of the newest chunked backup made with this key (to skip unchanged tables)."""
        names = sorted(
            (n for n in os.listdir(self.backups_dir)
             if n.endswith(MANIFEST_SUFFIX) and _ID_RE.match(n[: -len(MANIFEST_SUFFIX)])),
            reverse=True,
        )
        for name in names:
            try:
                blob = _read_small(self.backups_dir / name, MAX_MANIFEST_FILE)
                _, manifest = open_manifest(self._key_or_raise(), blob)
                manifest_chunks(manifest)  # shape check
            except (BackupCorrupt, WrongKey, OSError):
                continue
            return {e["path"]: e for e in manifest["files"] if isinstance(e.get("path"), str)}
        return {}

    def _write_chunked(self, temp: Path, stage: Path, files: builtins.list[str], meta: dict[str, Any],
                       manifest: dict[str, Any]) -> None:
        """Write the chunks that are new (each temp, fsync, rename), then the manifest to ``temp``
        (fsynced); the caller renames it into place. A failure removes the chunks it wrote."""
        keys = self._chunk_keys()
        chunks = ChunkDir(self.backups_dir, keys.key_id)
        previous = self._previous_files()
        known = {item[0] for entry in previous.values() for item in entry.get("chunks", [])}
        sizes: dict[str, int] = {}
        new: builtins.list[str] = []
        new_bytes = 0
        entries = []
        try:
            for rel in files:
                with open(stage / rel, "rb") as handle:
                    st = os.fstat(handle.fileno())
                    prev = previous.get(rel)
                    # A hard-linked (immutable) table with the same inode, size and mtime as in the
                    # newest backup: reuse its chunks without reading it (restic's files cache).
                    if (
                        prev is not None
                        and st.st_nlink > 1
                        and (prev.get("size"), prev.get("mtime_ns"), prev.get("ino"))
                        == (st.st_size, st.st_mtime_ns, st.st_ino)
                        and all(chunks.stored_size(item[0]) == item[2] for item in prev["chunks"])
                    ):
                        for item in prev["chunks"]:
                            sizes[item[0]] = item[2]
                        entries.append(dict(prev))
                        continue
                    sha, size, parts = hashlib.sha256(), 0, []
                    piece_shas: builtins.list[str] = []
                    while True:
                        piece = handle.read(PIECE_SIZE)
                        if not piece:
                            break
                        digest = hashlib.sha256(piece).digest()
                        piece_shas.append(digest.hex())
                        if st.st_size > PIECE_SIZE:  # one piece: its SHA-256 is the file's
                            sha.update(piece)
                        size += len(piece)
                        name = keys.name_of_digest(digest)
                        stored = sizes.get(name)
                        if stored is None:
                            stored = chunks.stored_size(name)
                            if stored is not None and name not in known:
                                chunks.mark_dirty(name)  # left by an interrupted backup: make it durable
                        if stored is None:
                            blob = seal_chunk(keys, name, piece, compress=self._compress)
                            chunks.put(name, blob)
                            new.append(name)
                            stored = len(blob)
                            new_bytes += stored
                        sizes[name] = stored
                        parts.append([name, len(piece), stored])
                if len(piece_shas) > 1 and st.st_size <= PIECE_SIZE:
                    raise StorageError("A session file grew while it was being backed up", "Back up again")
                file_sha = piece_shas[0] if len(piece_shas) == 1 and st.st_size <= PIECE_SIZE else sha.hexdigest()
                entries.append({"path": rel, "size": size, "sha256": file_sha, "mtime_ns": st.st_mtime_ns,
                                "ino": st.st_ino, "chunks": parts})
            chunks.sync()  # every chunk durable before the manifest that names them
            manifest["files"] = entries
            header_meta = {**meta, "chunk_bytes": sum(sizes.values()), "new_bytes": new_bytes}
            blob = seal_manifest(self._key_or_raise(), header_meta, manifest)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
            with os.fdopen(fd, "wb") as raw:
                raw.write(blob)
                raw.flush()
                os.fsync(raw.fileno())
        except BaseException:
            try:
                chunks.wait()  # no write may land after the clean-up below
            except BaseException:  # noqa: BLE001 - the first error is the one raised
                pass
            for name in new:  # no committed manifest names them: give the space back
                try:
                    os.unlink(chunks.path(name))
                except OSError:
                    pass
            raise

    # ---- reading -------------------------------------------------------------------------

    def _read(self, backup_id: str, sink: _Sink) -> dict[str, Any]:
        info = self.get(backup_id)
        try:
            if info.format == FORMAT_CHUNKED:
                return self._read_chunked(info, sink)
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

    def _read_chunked(self, info: BackupInfo, sink: _Sink) -> dict[str, Any]:
        """Check the manifest, that every chunk it needs is there, then each chunk and file."""
        header, manifest = open_manifest(self._key_or_raise(), _read_small(info.path, MAX_MANIFEST_FILE))
        if manifest.get("format") != CHUNKED_FORMAT:
            raise _mismatch("the manifest is missing or unreadable")
        if manifest.get("id") != info.id or header.meta.get("id") != info.id:
            raise _mismatch("the manifest belongs to another backup")
        listed = manifest_chunks(manifest)
        keys = self._chunk_keys()
        chunks = ChunkDir(self.backups_dir, keys.key_id)
        missing: dict[str, str] = {}
        for path, name, _plain, _stored in listed:
            if name not in missing and chunks.stored_size(name) is None:
                missing[name] = path
        if missing:
            name, path = next(iter(missing.items()))
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise BackupCorrupt(
                f"This backup is incomplete: chunk {name} of {path} is missing{more}", DAMAGED_FIX
            )
        seen: set[str] = set()
        for entry in manifest["files"]:
            path, size, sha = entry.get("path"), entry.get("size"), entry.get("sha256")
            if not isinstance(path, str) or not isinstance(size, int) or not isinstance(sha, str):
                raise _mismatch("a manifest entry is unreadable")
            rel = check_entry_name(path)
            if rel in seen:
                raise _unsafe("duplicate entry", rel)
            seen.add(rel)
            digest, total = hashlib.sha256(), 0
            out = sink.open(rel)
            for name, plain_len, _stored in entry["chunks"]:
                try:
                    blob = chunks.read(name)
                except FileNotFoundError:
                    raise BackupCorrupt(f"This backup is incomplete: chunk {name} of {rel} is missing",
                                        DAMAGED_FIX) from None
                data = open_chunk(keys, name, blob)
                if len(data) != plain_len:
                    raise _mismatch(f"chunk {name[:16]} of {rel} has another length than the manifest says")
                digest.update(data)
                total += len(data)
                if out is not None:
                    out.write(data)
            if out is not None:
                sink.done(out)
            if total != size:
                raise _mismatch(f"{rel} has {total} bytes, the manifest says {size}")
            if digest.hexdigest() != sha:
                raise _mismatch(f"{rel} has another content than the manifest says (SHA-256)")
        return manifest

    def verify(self, backup_id: str) -> dict[str, Any]:
        """Decrypt and check the whole backup (every chunk, every file's SHA-256); returns the manifest."""
        return self._read(backup_id, _Sink())

    def verify_all(self, backup_id: str | None = None) -> builtins.list[dict[str, Any]]:
        """``verify`` for one backup or every one: [{"id", "ok", "error"}], newest first. Never
        touches the profile; a backup that fails is reported, not raised."""
        targets = [self.get(backup_id)] if backup_id else self.list()
        self._key_or_raise()
        results = []
        for info in targets:
            try:
                self.verify(info.id)
                results.append({"id": info.id, "ok": True, "error": None})
            except (BackupCorrupt, WrongKey, BackupNotFound) as exc:
                results.append({"id": info.id, "ok": False, "error": exc.message})
        return results

    def newest_verified(self) -> tuple[BackupInfo, builtins.list[dict[str, Any]]]:
        """The newest backup that verifies, and the newer ones skipped ({"id", "error"} each)."""
        skipped: builtins.list[dict[str, Any]] = []
        self._key_or_raise()
        for info in self.list():
            try:
                self.verify(info.id)
            except (BackupCorrupt, WrongKey, BackupNotFound) as exc:
                skipped.append({"id": info.id, "error": exc.message})
                continue
            return info, skipped
        if skipped:
            raise NoBackups(
                f"No backup can be restored: none of the {len(skipped)} verifies ("
                + "; ".join(f"{s['id']}: {s['error']}" for s in skipped) + ")",
                "take a new backup once the session works, or restore the key the backups were made with",
            )
        raise NoBackups("There are no backups to restore", "take one with `linda-desktop backup`")

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

    def rotate(self) -> builtins.list[str]:
        """Keep the newest ``keep`` backups plus the known-good one; remove the rest, then the
        chunks no remaining backup needs (``collect_garbage``).

        Backups made with another key (or with an unreadable header) are never removed here:
        they may be the only copy of a session whose key can still be recovered.
        """
        with self._lock:
            self.cleanup()
            if not self.backups_dir.is_dir():
                return []
            try:
                with self._writer_lock():
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
                        removed.append(info.id)
                    if removed:
                        fsync_dir(self.backups_dir)  # manifests gone for good before any chunk goes
                        log.info("Removed %d old backup(s): %s", len(removed), ", ".join(removed))
                    self._collect_garbage()
            except OSError as exc:
                raise _storage_error(exc, self.backups_dir) from exc
            return removed

    def collect_garbage(self) -> int:
        """Delete the chunks of this key that no backup on disk needs; returns how many."""
        with self._lock:
            if not self.backups_dir.is_dir():
                return 0
            try:
                with self._writer_lock():
                    return self._collect_garbage()
            except OSError as exc:
                raise _storage_error(exc, self.backups_dir) from exc

    def _collect_garbage(self) -> int:
        """Mark (every chunk named by a manifest of this key), then sweep this key's chunks.

        Only chunks proven unreferenced go: when a manifest of this key (or one whose header is
        unreadable, so whose key is unknown) cannot be read, nothing is swept this time. Chunks
        of other keys live in their own folders and are never looked at."""
        if self._key is None:
            return 0
        keys = self._chunk_keys()
        referenced: set[str] = set()
        for name in os.listdir(self.backups_dir):
            if not (name.endswith(MANIFEST_SUFFIX) and _ID_RE.match(name[: -len(MANIFEST_SUFFIX)])):
                continue
            try:
                blob = _read_small(self.backups_dir / name, MAX_MANIFEST_FILE)
            except FileNotFoundError:
                continue
            try:
                header, _ = read_manifest_header(blob)
                if not hmac.compare_digest(header.key_id, keys.key_id):
                    continue  # another key's backup: its chunks are in another folder
                _, manifest = open_manifest(self._key, blob)
                referenced.update(item[1] for item in manifest_chunks(manifest))
            except (BackupCorrupt, WrongKey) as exc:
                log.warning("Chunk cleanup skipped: backup %s cannot be read (%s)", name, exc.message)
                return 0
        removed = ChunkDir(self.backups_dir, keys.key_id).sweep(referenced, pid_alive)
        if removed:
            log.info("Removed %d chunk(s) no backup needs", removed)
        return removed

    def cleanup(self, profile_dir: Path | None = None) -> builtins.list[str]:
        """Remove temp files and staging folders left by backups/restores that died midway."""
        removed: builtins.list[str] = []
        places: builtins.list[tuple[Path, re.Pattern[str]]] = [(self.backups_dir, _TEMP_RE)]
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

