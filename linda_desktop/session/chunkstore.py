"""The deduplicated backup store: encrypted chunks named by a keyed hash, and small encrypted manifests.

Layout inside ``backups/``::

    <id>.lindaman                         one backup: its manifest (small, encrypted)
    chunks/<key id>/<aa>/<name>           one chunk: a file, or a 4 MiB piece of a bigger one

- Chunks are per file, big files split every 4 MiB. Chromium's LevelDB tables (``*.ldb``) and
  IndexedDB blobs are written once and never changed, so one chunk per file deduplicates them
  exactly with no content-defined chunking cost; the files that do change (logs, MANIFEST,
  CURRENT, Cookies) are small and are simply stored again when they differ.
- ``name`` = HMAC-SHA256(name key, SHA-256(plaintext)) in hex: equal content, equal name, and
  without the key a name tells nothing about the content. (The SHA-256 is the one the manifest
  records for a file of one piece, so naming costs no second pass over the data.) Keys come
  from the backup key by HKDF-SHA256.
- A chunk file = version u8 | nonce(12) | AES-256-GCM(chunk key, body), associated data = the
  chunk's name, so one chunk cannot stand in for another. Body = deflate-or-raw (crypto.pack_body).
- Chunks live under the public fingerprint of the key that made them (``key_id``): garbage
  collection sweeps only its own key's folder, so chunks of backups made with another key are
  never touched, and their manifests need not be readable.
- A manifest file = header (plaintext: id, created_at, reason, size; readable without the key)
  | nonce(12) | AES-256-GCM(manifest key, deflated JSON), associated data = SHA-256(header).
  The manifest key is HKDF(backup key, per-manifest salt). The JSON lists every file: path,
  size, SHA-256, and its chunks (name, plain length, stored length).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import struct
import threading
import time
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from linda_desktop.base.atomic import fsync_dir
from linda_desktop.base.errors import BackupCorrupt, WrongKey
from linda_desktop.session.crypto import (
    DAMAGED_FIX,
    KEY_SIZE,
    key_id,
    pack_body,
    unpack_body,
)

log = logging.getLogger(__name__)

MANIFEST_SUFFIX = ".lindaman"
CHUNKS_DIR = "chunks"
MANIFEST_MAGIC = b"LINDAMAN"
MANIFEST_VERSION = 1
CHUNK_VERSION = 1
PIECE_SIZE = 4 << 20  # big files are split into pieces of this size
MAX_MANIFEST_FILE = 32 << 20
MAX_MANIFEST_JSON = 64 << 20
MAX_META = 16 * 1024
_FIXED = struct.Struct(">8sBB16s8sH")  # magic, version, flags, salt, key_id, meta_len
_NAME_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK_TEMP_RE = re.compile(r"^\.(?P<name>[0-9a-f]{64})\.(?P<pid>[0-9]+)\.[0-9]+\.tmp$")
_IN_FLIGHT = 4  # chunks being written at once (at most 4 x 4 MiB held in memory)
_STALE_AGE = 6 * 3600


def damaged(what: str) -> BackupCorrupt:
    return BackupCorrupt(f"This backup is damaged: {what}", DAMAGED_FIX)


def wrong_key() -> WrongKey:
    return WrongKey(
        "This backup was made with a different key (another installation, a reset keyring or another passphrase)",
        "Restore the keyring or passphrase it was made with; the backup is kept as it is",
    )


def _hkdf(key: bytes, info: bytes, salt: bytes | None = None) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=info).derive(key)


@dataclass(frozen=True)
class ChunkKeys:
    """The keys derived from one backup key: chunk names, chunk contents, and its fingerprint."""

    master: bytes
    name_key: bytes
    chunk_aead: AESGCM
    key_id: bytes

    @classmethod
    def derive(cls, master: bytes) -> ChunkKeys:
        if len(master) != KEY_SIZE:
            raise ValueError("key must be 32 bytes")
        return cls(
            master,
            _hkdf(master, b"linda-backup-v2 chunk names"),
            AESGCM(_hkdf(master, b"linda-backup-v2 chunk data")),
            key_id(master),
        )

    def name(self, data: bytes) -> str:
        """The chunk name of ``data``: HMAC-SHA256(name key, SHA-256(data)), in hex."""
        return self.name_of_digest(hashlib.sha256(data).digest())

    def name_of_digest(self, digest: bytes) -> str:
        """The name from the data's SHA-256 (computed anyway for the manifest: no second pass)."""
        return hmac.new(self.name_key, digest, hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------------------------
# Chunks
# --------------------------------------------------------------------------------------------


def _chunk_aad(name: str) -> bytes:
    return b"linda-chunk-v1\x00" + name.encode("ascii")


def seal_chunk(keys: ChunkKeys, name: str, data: bytes, *, compress: bool) -> bytes:
    nonce = os.urandom(12)
    return bytes([CHUNK_VERSION]) + nonce + keys.chunk_aead.encrypt(nonce, pack_body(data, compress), _chunk_aad(name))


def open_chunk(keys: ChunkKeys, name: str, blob: bytes) -> bytes | memoryview:
    """The plaintext of chunk ``name``; BackupCorrupt when it was changed, cut or swapped.
    (A raw chunk comes back as a view of the decrypted body: no copy of up to 4 MiB.)"""
    short = name[:16]
    if len(blob) < 1 + 12 + 16 or blob[0] != CHUNK_VERSION:
        raise damaged(f"chunk {short} is cut short or not a chunk")
    try:
        body = keys.chunk_aead.decrypt(blob[1:13], blob[13:], _chunk_aad(name))
    except InvalidTag:
        raise damaged(f"chunk {short} failed authentication (changed, cut or swapped)") from None
    if body[:1] == b"\x00" and len(body) - 1 <= PIECE_SIZE:  # raw (crypto.pack_body's kind 0)
        return memoryview(body)[1:]
    return unpack_body(body, PIECE_SIZE, f"chunk {short}")


class ChunkDir:
    """The chunks of one key: ``chunks/<key id>/<aa>/<name>``. Writes are temp, fsync, rename."""

    def __init__(self, backups_dir: Path, kid: bytes) -> None:
        self.root = Path(backups_dir) / CHUNKS_DIR / kid.hex()
        self._dirty: set[Path] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future[None]] = []
        self._slots = threading.BoundedSemaphore(_IN_FLIGHT)

    def path(self, name: str) -> Path:
        return self.root / name[:2] / name

    def stored_size(self, name: str) -> int | None:
        """The chunk's size on disk, or None when it is not there."""
        try:
            return os.stat(self.path(name)).st_size
        except FileNotFoundError:
            return None

    def put(self, name: str, blob: bytes) -> None:
        """Store a chunk: written, fsynced and renamed by a small pool of threads, so the next
        chunk is sealed while this one reaches the disk (fsyncs overlap). ``sync`` waits."""
        target = self.path(name)
        folder = target.parent
        if not folder.is_dir():
            for level in (self.root.parent, self.root, folder):
                try:
                    os.mkdir(level, 0o700)
                    self._dirty.add(level.parent)
                except FileExistsError:
                    pass
        self._dirty.add(folder)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=_IN_FLIGHT, thread_name_prefix="linda-chunk")
        self._slots.acquire()
        future = self._pool.submit(self._write, target, blob)
        future.add_done_callback(lambda _: self._slots.release())
        self._pending.append(future)
        for done in [f for f in self._pending if f.done()]:
            self._pending.remove(done)
            done.result()  # raise a failed write (disk full) at once

    def _write(self, target: Path, blob: bytes) -> None:
        temp = target.parent / f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(blob)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except BaseException:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise

    def wait(self) -> None:
        """Wait for every chunk handed to ``put``; raises the first failure."""
        pending, self._pending = self._pending, []
        error: BaseException | None = None
        for future in pending:
            try:
                future.result()
            except BaseException as exc:  # noqa: BLE001 - wait for all, then raise the first
                error = error or exc
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if error is not None:
            raise error

    def mark_dirty(self, name: str) -> None:
        """Have ``sync`` make this chunk's rename durable too (a chunk an interrupted backup left)."""
        self._dirty.add(self.path(name).parent)

    def sync(self) -> None:
        """Make every chunk so far durable (before the manifest that needs them is committed)."""
        self.wait()
        for folder in sorted(self._dirty, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(folder)
        self._dirty.clear()

    def read(self, name: str) -> bytes:
        with open(self.path(name), "rb") as handle:
            return handle.read(PIECE_SIZE + 4096)

    def sweep(self, referenced: set[str], alive: Any) -> int:
        """Delete every chunk not in ``referenced`` and temp files of dead writers; returns the count."""
        removed = 0
        try:
            subs = list(os.scandir(self.root))
        except FileNotFoundError:
            return 0
        now = time.time()
        for sub in subs:
            if not sub.is_dir(follow_symlinks=False):
                continue
            touched = False
            for entry in os.scandir(sub.path):
                temp = _CHUNK_TEMP_RE.match(entry.name)
                if temp:
                    pid = int(temp.group("pid"))
                    try:
                        age = now - entry.stat(follow_symlinks=False).st_mtime
                    except OSError:
                        continue
                    if pid != os.getpid() and alive(pid) and age < _STALE_AGE:
                        continue
                elif not _NAME_RE.match(entry.name) or entry.name in referenced:
                    continue
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue
                removed += 1
                touched = True
            if touched:
                fsync_dir(Path(sub.path))
        return removed


# --------------------------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestHeader:
    key_id: bytes
    salt: bytes
    meta: dict[str, Any]
    raw: bytes


def _manifest_key(master: bytes, salt: bytes) -> AESGCM:
    return AESGCM(_hkdf(master, b"linda-backup-v2 manifest", salt))


def seal_manifest(master: bytes, meta: dict[str, Any], manifest: dict[str, Any]) -> bytes:
    meta_bytes = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode("utf-8")
    if len(meta_bytes) > MAX_META:
        raise ValueError("header metadata too large")
    salt = os.urandom(16)
    body = _FIXED.pack(MANIFEST_MAGIC, MANIFEST_VERSION, 0, salt, key_id(master), len(meta_bytes)) + meta_bytes
    header = body + hashlib.sha256(body).digest()[:8]
    nonce = os.urandom(12)
    plain = zlib.compress(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode("utf-8"), 6)
    return header + nonce + _manifest_key(master, salt).encrypt(nonce, plain, hashlib.sha256(header).digest())


def read_manifest_header(blob: bytes) -> tuple[ManifestHeader, int]:
    """The plaintext header (no key needed) and where the sealed part starts. Raises BackupCorrupt."""
    if blob[: len(MANIFEST_MAGIC)] != MANIFEST_MAGIC:
        raise BackupCorrupt("This file is not a Linda Desktop backup", DAMAGED_FIX)
    if len(blob) < _FIXED.size:
        raise BackupCorrupt("This backup is incomplete (the file was cut short)", DAMAGED_FIX)
    _magic, version, flags, salt, kid, meta_len = _FIXED.unpack_from(blob)
    if version != MANIFEST_VERSION:
        raise BackupCorrupt(
            f"This backup uses manifest format {version}, which this version cannot read",
            "Update Linda Desktop, or restore another backup",
        )
    if flags != 0 or meta_len > MAX_META:
        raise damaged("its header is invalid")
    end = _FIXED.size + meta_len + 8
    if len(blob) < end:
        raise BackupCorrupt("This backup is incomplete (the file was cut short)", DAMAGED_FIX)
    body = blob[: end - 8]
    if not hmac.compare_digest(hashlib.sha256(body).digest()[:8], blob[end - 8 : end]):
        raise damaged("its header does not match its checksum")
    try:
        meta = json.loads(blob[_FIXED.size : end - 8].decode("utf-8"))
    except ValueError as exc:
        raise damaged("its header is unreadable") from exc
    if not isinstance(meta, dict):
        raise damaged("its header is unreadable")
    return ManifestHeader(kid, salt, meta, blob[:end]), end


def open_manifest(master: bytes, blob: bytes) -> tuple[ManifestHeader, dict[str, Any]]:
    """Decrypt and parse a manifest file. WrongKey for another key's backup, else BackupCorrupt."""
    header, start = read_manifest_header(blob)
    if not hmac.compare_digest(header.key_id, key_id(master)):
        raise wrong_key()
    sealed = blob[start:]
    if len(sealed) < 12 + 16:
        raise BackupCorrupt("This backup is incomplete (the file was cut short)", DAMAGED_FIX)
    try:
        aad = hashlib.sha256(header.raw).digest()
        plain = _manifest_key(master, header.salt).decrypt(sealed[:12], sealed[12:], aad)
    except InvalidTag:
        raise damaged("its manifest failed authentication (changed or cut)") from None
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(plain, MAX_MANIFEST_JSON)
        if inflater.unconsumed_tail or not inflater.eof:
            raise damaged("its manifest is too large")
        manifest = json.loads(text.decode("utf-8"))
    except (zlib.error, ValueError) as exc:
        raise damaged("its manifest is unreadable") from exc
    if not isinstance(manifest, dict):
        raise damaged("its manifest is unreadable")
    return header, manifest


def manifest_chunks(manifest: dict[str, Any]) -> list[tuple[str, str, int, int]]:
    """(file path, chunk name, plain length, stored length) for every chunk, checked for shape."""
    out = []
    files = manifest.get("files")
    if not isinstance(files, list):
        raise damaged("its manifest has no file list")
    for entry in files:
        chunks = entry.get("chunks") if isinstance(entry, dict) else None
        if not isinstance(chunks, list):
            raise damaged("a manifest entry is unreadable")
        for item in chunks:
            if (
                not isinstance(item, list)
                or len(item) != 3
                or not isinstance(item[0], str)
                or not _NAME_RE.match(item[0])
                or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in item[1:])
                or item[1] > PIECE_SIZE
            ):
                raise damaged("a manifest entry is unreadable")
            out.append((str(entry.get("path")), item[0], item[1], item[2]))
    return out
