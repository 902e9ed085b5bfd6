"""Streaming authenticated encryption for backup archives (AES-256-GCM in 1 MiB chunks).

File layout (all integers big-endian)::

    header  = MAGIC(8) | version u8 | flags u8 | chunk_size u32 | salt(16) | nonce_prefix(7)
              | key_id(8) | meta_len u16 | meta (UTF-8 JSON, plaintext) | check(8)
    chunk*  = u32 (bit 31: final, bits 0-30: sealed length) | AES-GCM(nonce, body, aad)
    body    = kind u8 (0 raw, 1 deflate) | data          (data <= chunk_size once inflated)

- The file key is HKDF-SHA256(master key, salt): every archive has its own key as well as a
  random nonce prefix; chunk nonce = prefix(7) | index u32 | final u8 (the STREAM construction).
- Every chunk's associated data is SHA-256(header) | index u64 | final u8, so the plaintext
  header (created_at, reason, ...) cannot be changed, chunks cannot be reordered, and a stream
  cut at a chunk boundary is caught: the reader insists on a chunk sealed as final, then EOF.
- ``key_id`` = HMAC-SHA256(key, "linda-key-id")[:8] tells "made with another key" (WrongKey)
  apart from damage (BackupCorrupt); ``check`` (truncated SHA-256 of the header) makes a flipped
  key-id byte read as damage, not as a wrong key.
- A chunk is stored deflated only when a sample of it shrinks by >= 20 %; Chromium's LevelDB
  tables are already snappy-compressed, so most chunks are stored raw (no CPU spent on them).

Nothing here holds more than one chunk in memory.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from linda_desktop.base.errors import BackupCorrupt, WrongKey

MAGIC = b"LINDABAK"
FORMAT_VERSION = 1
KEY_SIZE = 32
DEFAULT_CHUNK_SIZE = 1 << 20
MAX_CHUNK_SIZE = 16 << 20
MAX_META = 16 * 1024
TAG_SIZE = 16
_FIXED = struct.Struct(">8sBBI16s7s8sH")  # magic .. meta_len
_FINAL_BIT = 0x8000_0000
_RAW, _DEFLATE = 0, 1
_SAMPLE = 8 * 1024  # two samples per chunk (start and middle)
_HKDF_INFO = b"linda-backup-v1 file key"

DAMAGED_FIX = (
    "Restore another backup (`linda-desktop restore` without an ID takes the newest one that verifies), "
    "or take a new backup"
)


def key_id(key: bytes) -> bytes:
    """A public fingerprint of ``key``: equal for the same key, reveals nothing about it."""
    return hmac.new(key, b"linda-key-id", hashlib.sha256).digest()[:8]


def _file_key(key: bytes, salt: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=_HKDF_INFO).derive(key)


def _corrupt(what: str) -> BackupCorrupt:
    return BackupCorrupt(f"This backup is damaged: {what}", DAMAGED_FIX)


def _truncated() -> BackupCorrupt:
    return BackupCorrupt("This backup is incomplete (the file was cut short)", DAMAGED_FIX)


@dataclass(frozen=True)
class Header:
    """The plaintext header: readable without the key (listing), authenticated by every chunk."""

    version: int
    chunk_size: int
    salt: bytes
    nonce_prefix: bytes
    key_id: bytes
    meta: dict[str, Any]
    raw: bytes  # the exact header bytes, as bound into each chunk's associated data

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.raw).digest()


def _build_header(key: bytes, meta: dict[str, Any], chunk_size: int) -> Header:
    meta_bytes = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode("utf-8")
    if len(meta_bytes) > MAX_META:
        raise ValueError("header metadata too large")
    salt, prefix = os.urandom(16), os.urandom(7)
    body = _FIXED.pack(MAGIC, FORMAT_VERSION, 0, chunk_size, salt, prefix, key_id(key), len(meta_bytes))
    body += meta_bytes
    raw = body + hashlib.sha256(body).digest()[:8]
    return Header(FORMAT_VERSION, chunk_size, salt, prefix, key_id(key), dict(meta), raw)


def _read_exact(raw: BinaryIO, n: int) -> bytes:
    parts, left = [], n
    while left:
        block = raw.read(left)
        if not block:
            break
        parts.append(block)
        left -= len(block)
    return b"".join(parts)


def read_header(raw: BinaryIO) -> Header:
    """Parse and check the plaintext header (no key needed). Raises BackupCorrupt."""
    fixed = _read_exact(raw, _FIXED.size)
    if len(fixed) < len(MAGIC) or fixed[: len(MAGIC)] != MAGIC:
        raise BackupCorrupt("This file is not a Linda Desktop backup", DAMAGED_FIX)
    if len(fixed) < _FIXED.size:
        raise _truncated()
    _magic, version, flags, chunk_size, salt, prefix, kid, meta_len = _FIXED.unpack(fixed)
    if version != FORMAT_VERSION:
        raise BackupCorrupt(
            f"This backup uses format {version}, which this version cannot read",
            "Update Linda Desktop, or restore another backup",
        )
    if flags != 0 or not 0 < chunk_size <= MAX_CHUNK_SIZE or meta_len > MAX_META:
        raise _corrupt("its header is invalid")
    meta_bytes = _read_exact(raw, meta_len)
    check = _read_exact(raw, 8)
    if len(meta_bytes) < meta_len or len(check) < 8:
        raise _truncated()
    body = fixed + meta_bytes
    if not hmac.compare_digest(hashlib.sha256(body).digest()[:8], check):
        raise _corrupt("its header does not match its checksum")
    try:
        meta = json.loads(meta_bytes.decode("utf-8"))
    except ValueError as exc:
        raise _corrupt("its header is unreadable") from exc
    if not isinstance(meta, dict):
        raise _corrupt("its header is unreadable")
    return Header(version, chunk_size, salt, prefix, kid, meta, body + check)


def _nonce(prefix: bytes, index: int, final: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if final else 0)


def _aad(digest: bytes, index: int, final: bool) -> bytes:
    return digest + struct.pack(">QB", index, 1 if final else 0)


def pack_body(data: bytes, compress: bool) -> bytes:
    """Chunk body: deflate it only when a sample shows it is worth it."""
    if compress and data:
        middle = len(data) // 2
        sample = data[:_SAMPLE] + data[middle : middle + _SAMPLE]
        if len(zlib.compress(sample, 1)) <= 0.8 * len(sample):
            packed = zlib.compress(data, 1)
            if len(packed) < len(data):
                return bytes([_DEFLATE]) + packed
    return bytes([_RAW]) + data


def unpack_body(body: bytes, limit: int, what: str) -> bytes:
    """The data of a chunk body made by ``pack_body``, at most ``limit`` bytes; else BackupCorrupt."""
    kind, data = body[:1], body[1:]
    if kind == bytes([_RAW]):
        out = data
    elif kind == bytes([_DEFLATE]):
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(data, limit + 1)
        except zlib.error as exc:
            raise _corrupt(f"{what} does not inflate") from exc
        if inflater.unconsumed_tail or not inflater.eof:
            raise _corrupt(f"{what} inflates wrongly")
    else:
        raise _corrupt(f"{what} has an unknown encoding")
    if len(out) > limit:
        raise _corrupt(f"{what} is too large")
    return out


class EncryptingWriter:
    """A write-only binary stream that seals what it is given into ``raw``.

    ``close()`` seals the final chunk; ``abort()`` (or leaving a ``with`` block on an exception)
    does not, so an interrupted writer never produces a file that reads as complete.
    """

    def __init__(
        self,
        raw: BinaryIO,
        key: bytes,
        meta: dict[str, Any],
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        compress: bool = True,
    ) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError("key must be 32 bytes")
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError("bad chunk size")
        self._raw = raw
        self.header = _build_header(key, meta, chunk_size)
        self._aead = AESGCM(_file_key(key, self.header.salt))
        self._digest = self.header.digest
        self._chunk_size = chunk_size
        self._compress = compress
        self._buffer = bytearray()
        self._index = 0
        self._closed = False
        self.plain_bytes = 0
        raw.write(self.header.raw)

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            raise ValueError("write to a closed EncryptingWriter")
        self._buffer += data
        # Keep at least one byte back: the final chunk is sealed by close(), never empty
        # unless the whole stream is.
        while len(self._buffer) > self._chunk_size:
            self._seal(bytes(self._buffer[: self._chunk_size]), final=False)
            del self._buffer[: self._chunk_size]
        self.plain_bytes += len(data)
        return len(data)

    def flush(self) -> None:
        self._raw.flush()

    def _seal(self, data: bytes, *, final: bool) -> None:
        if self._index >= 0xFFFF_FFFF:
            raise ValueError("archive too large")
        sealed = self._aead.encrypt(
            _nonce(self.header.nonce_prefix, self._index, final),
            pack_body(data, self._compress),
            _aad(self._digest, self._index, final),
        )
        self._raw.write(struct.pack(">I", len(sealed) | (_FINAL_BIT if final else 0)))
        self._raw.write(sealed)
        self._index += 1

    def close(self) -> None:
        """Seal the last chunk (marked final). The underlying file is left open."""
        if self._closed:
            return
        self._seal(bytes(self._buffer), final=True)
        self._buffer.clear()
        self._closed = True
        self._raw.flush()

    def abort(self) -> None:
        self._buffer.clear()
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> EncryptingWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class DecryptingReader:
    """A read-only binary stream over an archive: every byte it returns has been authenticated.

    Raises WrongKey when the header names another key, BackupCorrupt on any damage, and at the
    end insists on a chunk sealed as final followed by end of file (no truncation, no trailer).
    """

    def __init__(self, raw: BinaryIO, key: bytes) -> None:
        self._raw = raw
        self.header = read_header(raw)
        if not hmac.compare_digest(self.header.key_id, key_id(key)):
            raise WrongKey(
                "This backup was made with a different key (another installation, a reset keyring "
                "or another passphrase)",
                "Restore the keyring or passphrase it was made with; the backup is kept as it is",
            )
        self._aead = AESGCM(_file_key(key, self.header.salt))
        self._digest = self.header.digest
        self._max_sealed = self.header.chunk_size + 1 + TAG_SIZE + 1024  # deflate overhead
        self._buffer = b""
        self._pos = 0
        self._index = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> None:
        prefix = _read_exact(self._raw, 4)
        if len(prefix) < 4:
            raise _truncated()
        (word,) = struct.unpack(">I", prefix)
        final = bool(word & _FINAL_BIT)
        length = word & ~_FINAL_BIT
        if not TAG_SIZE < length <= self._max_sealed:
            raise _corrupt(f"chunk {self._index} has an impossible length")
        sealed = _read_exact(self._raw, length)
        if len(sealed) < length:
            raise _truncated()
        try:
            body = self._aead.decrypt(
                _nonce(self.header.nonce_prefix, self._index, final),
                sealed,
                _aad(self._digest, self._index, final),
            )
        except InvalidTag:
            raise _corrupt(f"chunk {self._index} failed authentication (changed or cut)") from None
        self._buffer = self._unpack(body)
        self._pos = 0
        self._index += 1
        if final:
            if self._raw.read(1):
                raise _corrupt("it has unexpected data after its end")
            self._done = True

    def _unpack(self, body: bytes) -> bytes:
        return unpack_body(body, self.header.chunk_size, f"chunk {self._index}")

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts: list[bytes] = []
            while True:
                block = self.read(self.header.chunk_size)
                if not block:
                    return b"".join(parts)
                parts.append(block)
        while self._pos >= len(self._buffer):
            if self._done:
                return b""
            self._next_chunk()
        out = self._buffer[self._pos : self._pos + n]
        self._pos += len(out)
        return out

    def readinto(self, target: bytearray | memoryview) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Read (and so authenticate) the rest of the stream, up to the final chunk."""
        while self.read(self.header.chunk_size):
            pass

    @property
    def finished(self) -> bool:
        """True once the final chunk has been authenticated and every byte returned."""
        return self._done and self._pos >= len(self._buffer)
