"""Session metadata: what the session is and has been (restores, backups, links, history).

One small JSON file, rewritten atomically on every change. A damaged file is never fatal: it is
renamed aside (``.corrupt-<ts>``) and the metadata starts again. Thread-safe: the tray and the
service may both record events.

A failed write (disk full, read-only folder) is never fatal either, and never raises: the change
stays in memory (``pending``), the next ``record``/``flush`` writes it (atomically: the old file or
the new one, never half) — and so does a timer every ``retry_seconds`` until it is on disk —
and ``on_write_error`` hears about it once per outage: with a
``StorageError`` when writes start failing and with ``None`` when a write succeeds again.
``write_error`` is the outage in progress, for those who poll.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from linda_desktop.base.atomic import atomic_write_json
from linda_desktop.base.errors import StorageError
from linda_desktop.base.paths import ensure_private_dir

log = logging.getLogger(__name__)

HISTORY_LIMIT = 200
RETRY_SECONDS = 5.0  # a write that failed is tried again this often, with or without new events
SCHEMA_VERSION = 1


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _empty() -> dict[str, Any]:
    return {
        "version": SCHEMA_VERSION,
        "restore_count": 0,
        "backup_count": 0,
        "link_count": 0,
        "logout_count": 0,
        "error_count": 0,
        "last_restore": None,  # {"at": iso, "from": backup id}
        "last_backup": None,  # {"at": iso, "id": backup id}
        "last_link": None,  # iso
        "last_connected": None,  # iso
        "last_logged_out": None,  # {"at": iso, "reason": ...}
        "last_import": None,  # {"at": iso, "source_kind": ...}
        "last_error": None,  # {"at": iso, "message": ...}
        "account": None,  # {"id": ..., "phone": ...} when known
        "linked": False,
        "revoked_before": None,  # iso: backups made before this were revoked by the phone
        "history": [],  # [{"ts", "event", "details"}], newest last
    }


def _valid(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and isinstance(data.get("history", []), list)
        and isinstance(data.get("restore_count", 0), int)
    )


class SessionStateStore:
    """Atomic JSON store of the session metadata at ``path``."""

    def __init__(self, path: Path, history_limit: int = HISTORY_LIMIT, *,
                 on_write_error: Callable[[StorageError | None], None] | None = None,
                 retry_seconds: float = RETRY_SECONDS) -> None:
        self.path = Path(path)
        self.history_limit = history_limit
        self.retry_seconds = retry_seconds
        self._retry: threading.Timer | None = None
        self.on_write_error = on_write_error
        self.write_error: StorageError | None = None  # the write outage in progress, if any
        self._lock = threading.RLock()
        self._data: dict[str, Any] | None = None
        self._pending = False

    @property
    def pending(self) -> bool:
        """Changes held in memory that have not reached the disk yet."""
        return self._pending

    # -- reading ---------------------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        """(Re)read the file. Missing -> empty metadata; garbage -> set aside and rebuilt.

        Changes not yet on disk are written first; while they cannot be, memory wins."""
        with self._lock:
            if self._pending and not self.flush():
                return copy.deepcopy(self._current())
            self._data = self._read()
            return copy.deepcopy(self._data)

    def snapshot(self) -> dict[str, Any]:
        """A copy of the current metadata (loaded on first use)."""
        with self._lock:
            return copy.deepcopy(self._current())

    def _current(self) -> dict[str, Any]:
        if self._data is None:
            self._data = self._read()
        return self._data

    def _read(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return _empty()
        except OSError as exc:
            log.warning("Session state file unreadable (%s); starting with empty metadata", exc.strerror)
            return _empty()
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            data = None
        if not _valid(data):
            self._set_aside()
            data = _empty()
            self._save(data)
            return data
        merged = _empty()
        merged.update(data)
        return merged

    def _set_aside(self) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            os.replace(self.path, aside)
            log.warning("Session state file was damaged; kept it as %s and started afresh", aside.name)
        except OSError as exc:
            log.warning("Session state file was damaged and could not be set aside (%s)", exc.strerror)

    def _write(self, data: dict[str, Any]) -> None:
        ensure_private_dir(self.path.parent)
        atomic_write_json(self.path, data)

    def _save(self, data: dict[str, Any]) -> bool:
        """Write ``data``; on an OSError keep it pending and report the outage once. Never raises."""
        try:
            self._write(data)
        except OSError as exc:
            self._pending = True
            if self.write_error is None:
                self.write_error = StorageError.from_os_error(exc, "writing the session state file")
                log.warning("%s; the change is kept in memory and written later", self.write_error.message)
                self._tell(self.write_error)
            self._schedule_retry()
            return False
        self._pending = False
        if self.write_error is not None:
            self.write_error = None
            log.info("the session state file is written again")
            self._tell(None)
        return True

    def _tell(self, error: StorageError | None) -> None:
        if self.on_write_error is None:
            return
        try:
            self.on_write_error(error)
        except Exception:  # a broken listener must not break the store
            log.exception("state write listener failed")

    def _schedule_retry(self) -> None:
        if self._retry is not None and self._retry.is_alive():
            return
        self._retry = threading.Timer(self.retry_seconds, self._retry_now)
        self._retry.daemon = True
        self._retry.start()

    def _retry_now(self) -> None:
        with self._lock:
            self._retry = None
            self.flush()  # schedules the next try while it still fails

    def flush(self) -> bool:
        """Write pending changes now. True when everything is on disk. Never raises."""
        with self._lock:
            if not self._pending:
                return True
            return self._save(self._current())

    # -- writing ---------------------------------------------------------------------------

    def record(self, event: str, **details: Any) -> dict[str, Any]:
        """Append ``event`` to the history and update the counters it concerns.

        Known events: restore(from=id), backup(id=...), link(account=...), connected(account=...),
        logged_out(reason=...), relink, import(source_kind=...), error(message=...). Any other name
        is only added to the history. Returns the history entry.
        """
        with self._lock:
            data = self._current()
            ts = _now()
            entry = {"ts": ts, "event": event, "details": _jsonable(details)}
            _apply(data, event, ts, details)
            history = data.setdefault("history", [])
            history.append(entry)
            if len(history) > self.history_limit:
                del history[: len(history) - self.history_limit]
            self._save(data)
            return copy.deepcopy(entry)

    # -- what recovery asks ----------------------------------------------------------------

    def linked(self) -> bool:
        """Whether this computer was linked when last seen (a session is expected)."""
        return bool(self.snapshot().get("linked"))

    def revoked_before(self) -> datetime | None:
        """Backups made before this moment belong to a device the phone removed: never auto-restore them."""
        value = self.snapshot().get("revoked_before")
        try:
            return datetime.fromisoformat(value) if value else None
        except ValueError:
            return None

    def mark_revoked(self) -> None:
        self._set_field("revoked_before", datetime.now(timezone.utc).isoformat(timespec="microseconds"))

    def clear_revoked(self) -> None:
        """The owner restored or imported a session by hand: let recovery use backups again."""
        self._set_field("revoked_before", None)

    def _set_field(self, name: str, value: Any) -> None:
        with self._lock:
            data = self._current()
            data[name] = value
            self._save(data)

    def clear_logs(self) -> None:
        """Empty the history; keep the counters and last-* values."""
        with self._lock:
            data = self._current()
            data["history"] = []
            self._save(data)


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(json.dumps(details, default=str))
    return value


def _account(details: dict[str, Any]) -> dict[str, Any] | None:
    account = details.get("account")
    if isinstance(account, dict):
        return {k: v for k, v in account.items() if k in ("id", "phone") and v}
    if account:
        return {"id": str(account)}
    return None


def _apply(data: dict[str, Any], event: str, ts: str, details: dict[str, Any]) -> None:
    if event == "restore":
        data["restore_count"] = data.get("restore_count", 0) + 1
        data["last_restore"] = {"at": ts, "from": details.get("from") or details.get("backup_id")}
    elif event == "backup":
        data["backup_count"] = data.get("backup_count", 0) + 1
        data["last_backup"] = {"at": ts, "id": details.get("id")}
    elif event == "link":
        data["link_count"] = data.get("link_count", 0) + 1
        data["last_link"] = ts
        data["linked"] = True
    elif event == "connected":
        data["last_connected"] = ts
        data["linked"] = True
    elif event == "logged_out":
        data["logout_count"] = data.get("logout_count", 0) + 1
        data["last_logged_out"] = {"at": ts, "reason": details.get("reason")}
        data["linked"] = False
    elif event == "relink":
        data["linked"] = False
        data["account"] = None
    elif event == "import":
        data["last_import"] = {"at": ts, "source_kind": details.get("source_kind")}
    elif event == "error":
        data["error_count"] = data.get("error_count", 0) + 1
        data["last_error"] = {"at": ts, "message": details.get("message")}
    account = _account(details)
    if account and event in ("link", "connected", "import"):
        data["account"] = account
