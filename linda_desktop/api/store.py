"""The bot's event log and webhook outbox: one SQLite file in the data folder (WAL, one writer).

Why SQLite: inbound messages must survive an app crash, a browser restart and a bot that is down
for hours, and be deduplicated by WhatsApp's message id across restarts. A single writer thread
owns the write connection (SQLite allows one writer at a time; a queue keeps callers on any thread
from waiting on each other's locks); readers use their own short-lived connections, which WAL
lets run beside the writer.

Tables
  events   seq (the SSE id), id (evt_… sent to receivers), kind, dedup (unique), created, payload
  cursors  consumer → last seq it has taken (the replay position of a reader)
  outbox   (seq, target) → state pending/delivered/dead, attempts, next_at, last_error
  chats    chat_id → newest message timestamp seen (replay asks only for what is newer)

Message text is stored (the bot needs it after a restart) but never logged.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

FILE_NAME = "bot-events.sqlite3"
KEEP_EVENTS = 50_000          # past this many, delivered events go (messages keep only id, chat, time)
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    dedup TEXT UNIQUE,
    created REAL NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (consumer TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER NOT NULL,
    target TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    last_error TEXT,
    done_at REAL,
    PRIMARY KEY (seq, target)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_at);
CREATE TABLE IF NOT EXISTS chats (chat_id TEXT PRIMARY KEY, last_t INTEGER NOT NULL, last_id TEXT);
"""


def new_event_id() -> str:
    """``evt_`` + a lower-case ULID (48-bit ms time + 80 random bits, Crockford base32), as WAHA's
    event ids: sortable by time, unique without coordination."""
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(alphabet[value & 31])
        value >>= 5
    return "evt_" + "".join(reversed(chars))


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    id: str
    kind: str
    created: float
    payload: dict[str, Any]


class EventStore:
    """Open with ``EventStore(path)``; ``close()`` stops the writer. Every method is thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._jobs: queue.Queue[tuple[Callable[[sqlite3.Connection], Any], concurrent.futures.Future[Any]] | None]
        self._jobs = queue.Queue()
        self._local = threading.local()
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._writer, args=(ready,), name="linda-event-store", daemon=True)
        self._thread.start()
        ready.result(timeout=30)
        self._closed = False

    # ------------------------------------------------------------------ plumbing
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")   # WAL + NORMAL: durable across an app crash
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _writer(self, ready: concurrent.futures.Future[None]) -> None:
        try:
            conn = self._connect()
            conn.executescript(_SCHEMA)
            try:
                os.chmod(self.path, 0o600)
            except OSError:
                pass
        except BaseException as exc:  # noqa: BLE001 - handed to the opener
            ready.set_exception(exc)
            return
        ready.set_result(None)
        while True:
            job = self._jobs.get()
            if job is None:
                break
            func, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                conn.execute("BEGIN IMMEDIATE")
                result = func(conn)
                conn.execute("COMMIT")
                future.set_result(result)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                future.set_exception(exc)
        conn.close()

    def _write(self, func: Callable[[sqlite3.Connection], T]) -> T:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((func, future))
        return future.result(timeout=60)

    def _read(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._jobs.put(None)
            self._thread.join(10)
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ------------------------------------------------------------------ events
    def append(self, kind: str, payload: dict[str, Any], *, dedup: str | None = None,
               targets: tuple[str, ...] = ()) -> StoredEvent | None:
        """Store one event and queue it for each webhook ``target``; None when ``dedup`` was
        already stored (the same WhatsApp message id seen again: after a restart, a replay, or
        WhatsApp firing twice for a decrypted message)."""
        created = time.time()
        event_id = new_event_id()
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))

        def work(conn: sqlite3.Connection) -> StoredEvent | None:
            cur = conn.execute("INSERT OR IGNORE INTO events (id, kind, dedup, created, payload) VALUES (?,?,?,?,?)",
                               (event_id, kind, dedup, created, body))
            if cur.rowcount == 0:
                return None
            seq = int(cur.lastrowid or 0)
            for target in targets:
                conn.execute("INSERT INTO outbox (seq, target, next_at) VALUES (?,?,?)", (seq, target, created))
            if kind == "message" and isinstance(payload.get("chat_id"), str):
                stamp = payload.get("timestamp")
                if isinstance(stamp, int):
                    conn.execute("INSERT INTO chats (chat_id, last_t, last_id) VALUES (?,?,?) "
                                 "ON CONFLICT(chat_id) DO UPDATE SET last_t=excluded.last_t, last_id=excluded.last_id "
                                 "WHERE excluded.last_t >= chats.last_t",
                                 (payload["chat_id"], stamp, payload.get("id")))
            return StoredEvent(seq, event_id, kind, created, payload)

        return self._write(work)

    def seen(self, dedup: str) -> bool:
        row = self._read().execute("SELECT 1 FROM events WHERE dedup=?", (dedup,)).fetchone()
        return row is not None

    def since(self, seq: int, limit: int = 500, kinds: tuple[str, ...] | None = None) -> list[StoredEvent]:
        rows = self._read().execute("SELECT seq, id, kind, created, payload FROM events WHERE seq>? ORDER BY seq "
                                    "LIMIT ?", (seq, limit)).fetchall()
        out = [StoredEvent(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]
        return [e for e in out if kinds is None or e.kind in kinds]

    def get(self, seq: int) -> StoredEvent | None:
        r = self._read().execute("SELECT seq, id, kind, created, payload FROM events WHERE seq=?", (seq,)).fetchone()
        return StoredEvent(r[0], r[1], r[2], r[3], json.loads(r[4])) if r else None

    def last_seq(self) -> int:
        row = self._read().execute("SELECT MAX(seq) FROM events").fetchone()
        return int(row[0] or 0)

    def chat_marks(self, before: float | None = None) -> dict[str, int]:
        """chat_id → timestamp (s) of the newest message stored for it (only among those stored
        before ``before``, a wall-clock time: what was seen before this connection began, so a
        live message that overtakes the catch-up does not hide older unread ones)."""
        if before is None:
            return {r[0]: int(r[1]) for r in self._read().execute("SELECT chat_id, last_t FROM chats")}
        rows = self._read().execute(
            "SELECT json_extract(payload, '$.chat_id'), MAX(json_extract(payload, '$.timestamp')) FROM events "
            "WHERE kind='message' AND created<? GROUP BY 1", (before,)).fetchall()
        return {r[0]: int(r[1]) for r in rows if r[0] and r[1] is not None}

    def count(self, kind: str | None = None) -> int:
        if kind is None:
            return int(self._read().execute("SELECT COUNT(*) FROM events").fetchone()[0])
        return int(self._read().execute("SELECT COUNT(*) FROM events WHERE kind=?", (kind,)).fetchone()[0])

    # ------------------------------------------------------------------ cursors
    def cursor(self, consumer: str) -> int:
        row = self._read().execute("SELECT seq FROM cursors WHERE consumer=?", (consumer,)).fetchone()
        return int(row[0]) if row else 0

    def set_cursor(self, consumer: str, seq: int) -> None:
        self._write(lambda c: c.execute("INSERT INTO cursors (consumer, seq) VALUES (?,?) ON CONFLICT(consumer) "
                                        "DO UPDATE SET seq=MAX(seq, excluded.seq)", (consumer, seq)))

    # ------------------------------------------------------------------ outbox
    def due(self, target: str, now: float, limit: int = 50) -> list[tuple[StoredEvent, int]]:
        """Pending deliveries for ``target`` whose time has come, oldest first: (event, attempts)."""
        rows = self._read().execute(
            "SELECT e.seq, e.id, e.kind, e.created, e.payload, o.attempts FROM outbox o JOIN events e ON e.seq=o.seq "
            "WHERE o.target=? AND o.state='pending' AND o.next_at<=? ORDER BY o.seq LIMIT ?",
            (target, now, limit)).fetchall()
        return [(StoredEvent(r[0], r[1], r[2], r[3], json.loads(r[4])), int(r[5])) for r in rows]

    def pending(self, target: str, limit: int = 50) -> list[tuple[StoredEvent, int, float]]:
        """The oldest pending deliveries for ``target`` in order: (event, attempts, next_at)."""
        rows = self._read().execute(
            "SELECT e.seq, e.id, e.kind, e.created, e.payload, o.attempts, o.next_at FROM outbox o JOIN events e "
            "ON e.seq=o.seq WHERE o.target=? AND o.state='pending' ORDER BY o.seq LIMIT ?", (target, limit)).fetchall()
        return [(StoredEvent(r[0], r[1], r[2], r[3], json.loads(r[4])), int(r[5]), float(r[6])) for r in rows]

    def enqueue(self, seq: int, target: str) -> None:
        self._write(lambda c: c.execute("INSERT OR IGNORE INTO outbox (seq, target, next_at) VALUES (?,?,?)",
                                        (seq, target, time.time())))

    def next_due(self, target: str) -> float | None:
        row = self._read().execute("SELECT MIN(next_at) FROM outbox WHERE target=? AND state='pending'",
                                   (target,)).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def delivered(self, seq: int, target: str) -> None:
        self._write(lambda c: c.execute("UPDATE outbox SET state='delivered', done_at=?, attempts=attempts+1, "
                                        "last_error=NULL WHERE seq=? AND target=?", (time.time(), seq, target)))

    def failed(self, seq: int, target: str, error: str, *, next_at: float | None) -> None:
        """One failed attempt: retry at ``next_at``, or dead-letter it when None."""
        if next_at is None:
            self._write(lambda c: c.execute("UPDATE outbox SET state='dead', done_at=?, attempts=attempts+1, "
                                            "last_error=? WHERE seq=? AND target=?",
                                            (time.time(), error[:300], seq, target)))
        else:
            self._write(lambda c: c.execute("UPDATE outbox SET attempts=attempts+1, next_at=?, last_error=? "
                                            "WHERE seq=? AND target=?", (next_at, error[:300], seq, target)))

    def retry_dead(self, target: str) -> int:
        """Put dead letters back in the queue (after the owner fixed the receiver)."""
        def work(c: sqlite3.Connection) -> int:
            return c.execute("UPDATE outbox SET state='pending', attempts=0, next_at=? WHERE target=? AND "
                             "state='dead'", (time.time(), target)).rowcount
        return self._write(work)

    def outbox_stats(self, target: str) -> dict[str, Any]:
        conn = self._read()
        counts = dict(conn.execute("SELECT state, COUNT(*) FROM outbox WHERE target=? GROUP BY state",
                                   (target,)).fetchall())
        oldest = conn.execute("SELECT MIN(e.created) FROM outbox o JOIN events e ON e.seq=o.seq WHERE o.target=? "
                              "AND o.state='pending'", (target,)).fetchone()[0]
        last_error = conn.execute("SELECT last_error FROM outbox WHERE target=? AND last_error IS NOT NULL "
                                  "ORDER BY seq DESC LIMIT 1", (target,)).fetchone()
        return {"pending": int(counts.get("pending", 0)), "delivered": int(counts.get("delivered", 0)),
                "dead": int(counts.get("dead", 0)),
                "oldest_pending_seconds": round(time.time() - oldest, 1) if oldest else None,
                "last_error": last_error[0] if last_error else None}

    def dead_letters(self, target: str, limit: int = 20) -> list[dict[str, Any]]:
        rows = self._read().execute(
            "SELECT e.id, e.kind, o.attempts, o.last_error, o.done_at FROM outbox o JOIN events e ON e.seq=o.seq "
            "WHERE o.target=? AND o.state='dead' ORDER BY o.seq DESC LIMIT ?", (target, limit)).fetchall()
        return [{"event_id": r[0], "event": r[1], "attempts": r[2], "last_error": r[3], "at": r[4]} for r in rows]

    def prune(self, keep: int = KEEP_EVENTS) -> int:
        """Drop the oldest events past ``keep`` whose deliveries are all finished."""
        def work(c: sqlite3.Connection) -> int:
            cut = c.execute("SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?", (keep,)).fetchone()
            if cut is None:
                return 0
            n = c.execute("DELETE FROM events WHERE seq<=? AND (dedup IS NULL OR kind NOT IN ('message', "
                          "'message.any')) AND seq NOT IN (SELECT seq FROM outbox WHERE state='pending')",
                          (cut[0],)).rowcount
            # Old message ids stay (dedup across restarts), their text does not.
            c.execute("UPDATE events SET payload=json_object('chat_id', json_extract(payload, '$.chat_id'), "
                      "'timestamp', json_extract(payload, '$.timestamp')) WHERE seq<=? AND kind IN ('message', "
                      "'message.any') AND seq NOT IN (SELECT seq FROM outbox WHERE state='pending')", (cut[0],))
            c.execute("DELETE FROM outbox WHERE seq NOT IN (SELECT seq FROM events)")
            return n
        return self._write(work)
