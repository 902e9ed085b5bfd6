"""A Chromium-like profile made of plain files, for tests and benchmarks that need no browser.

The layout is the real one (``Default/IndexedDB/http_127.0.0.1_<port>.indexeddb.leveldb/``
with CURRENT, MANIFEST-*, *.ldb, *.log; Local Storage; Cookies; caches; Singleton locks);
the contents are a realistic mix: random bytes (already compressed/encrypted data, like
snappy-compressed tables and media keys) and chat-like JSON text.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

WORDS = ["hello", "ok", "thanks", "see", "you", "tomorrow", "meeting", "photo", "call", "me", "later",
         "where", "are", "you", "yes", "no", "maybe", "good", "morning", "night", "lunch", "dinner", "today",
         "invoice", "order", "price", "delivery", "address", "status", "pending", "paid"]


def origin_for(port: int) -> str:
    return f"http://127.0.0.1:{port}/"


def chat_text(n: int, rng: random.Random) -> bytes:
    """``n`` bytes of message-like JSON (compresses about 4x, as chat data does)."""
    out, size = [], 0
    while size < n:
        line = json.dumps(
            {
                "id": f"3EB0{rng.getrandbits(48):012X}",
                "t": 1_700_000_000 + rng.randrange(10_000_000),
                "from": f"{rng.randrange(10**11)}@c.us",
                "body": " ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 16))),
            }
        ).encode()
        out.append(line)
        size += len(line) + 1
    return b"\n".join(out)[:n]


def mixed_bytes(n: int, rng: random.Random, text_share: float = 0.5) -> bytes:
    """``n`` bytes, ``text_share`` of them chat text and the rest random, in 16 KiB blocks."""
    out, size = [], 0
    while size < n:
        block = min(16384, n - size)
        out.append(chat_text(block, rng) if rng.random() < text_share else os.urandom(block))
        size += block
    return b"".join(out)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def make_fake_profile(
    profile_dir: Path,
    *,
    port: int = 8765,
    idb_mb: float = 1.0,
    table_mb: float = 2.0,
    caches_mb: float = 0.5,
    seed: int = 1,
) -> str:
    """Write a session-like profile; returns its origin URL (for ``session_files``)."""
    rng = random.Random(seed)
    profile_dir = Path(profile_dir)
    default = profile_dir / "Default"
    _write(profile_dir / "Local State", json.dumps({"profile": {"info_cache": {}}}).encode())
    _write(default / "Preferences", json.dumps({"profile": {"exit_type": "Normal"}}).encode())
    idb = default / "IndexedDB" / f"http_127.0.0.1_{port}.indexeddb.leveldb"
    _write(idb / "CURRENT", b"MANIFEST-000001\n")
    _write(idb / "MANIFEST-000001", os.urandom(200))
    total, number = int(idb_mb * 1024 * 1024), 5
    table = max(1, int(table_mb * 1024 * 1024))
    while total > 0:
        size = min(table, total)
        _write(idb / f"{number:06d}.ldb", mixed_bytes(size, rng, text_share=0.3))
        total -= size
        number += 1
    _write(idb / f"{number:06d}.log", chat_text(64 * 1024, rng))
    for name in ("LOCK", "LOG", "LOG.old"):
        _write(idb / name, b"")
    ls = default / "Local Storage" / "leveldb"
    _write(ls / "CURRENT", b"MANIFEST-000001\n")
    _write(ls / "MANIFEST-000001", os.urandom(41))
    _write(ls / "000003.log", chat_text(4096, rng))
    _write(ls / "LOCK", b"")
    _write(default / "Cookies", os.urandom(20480))
    caches = int(caches_mb * 1024 * 1024)
    for folder in ("Cache/Cache_Data", "Code Cache/js", "Service Worker/CacheStorage/abc"):
        for i in range(4):
            _write(default / folder / f"f_{i:06x}", mixed_bytes(max(1, caches // 12), rng, text_share=0.6))
    if os.name == "posix":
        for name in ("SingletonLock", "SingletonSocket", "SingletonCookie"):
            link = profile_dir / name
            if not link.is_symlink():
                os.symlink(f"otherhost-{rng.randrange(1000, 99999)}", link)
    return origin_for(port)


def tree_digest(root: Path) -> dict[str, str]:
    """relative path -> SHA-256 of every file (symlinks: their target) under ``root``."""
    root = Path(root)
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = "link:" + os.readlink(path)
            else:
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out
