"""SessionService: the recovery state machine (DESIGN.md §4). Qt-free, runs on one asyncio loop.

INTERFACE DRAFT — bodies are being written; signatures are what the CLI and the UI code against.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from linda_desktop.core.events import Event, SessionState
from linda_desktop.core.settings import Settings
from linda_desktop.paths import AppPaths

EventSink = Callable[[Event], None]


class SessionService:
    """Keeps one WhatsApp Web session alive.

    ``on_event`` is called on the service's loop thread for every Event (StateChanged, QrCode,
    BackupMade, Restored, Notice). UI code must hop to its own thread (Qt signal).
    All ``async`` commands must be awaited on the service's loop (use
    ``asyncio.run_coroutine_threadsafe(service.backup_now(), service.loop)`` from other threads).
    """

    def __init__(self, paths: AppPaths, settings: Settings, *, wa_url: str,
                 browser: str | None, on_event: EventSink, background: bool = False) -> None:
        self.paths = paths
        self.settings = settings
        self.wa_url = wa_url
        self.browser = browser
        self.on_event = on_event
        self.state: SessionState = SessionState.STARTING
        self.loop: asyncio.AbstractEventLoop | None = None

    async def run(self) -> None:
        """Recover, then supervise until ``request_stop``; on stop: flush, back up, close."""
        raise NotImplementedError

    def request_stop(self) -> None:
        """Thread-safe: ask ``run`` to finish cleanly (back up, close the browser)."""
        raise NotImplementedError

    async def backup_now(self) -> dict[str, Any]:
        """Take a backup now; returns the backup's info as a dict (id, size, created_at, …)."""
        raise NotImplementedError

    async def restore(self, backup_id: str | None = None) -> dict[str, Any]:
        """Close the browser, restore ``backup_id`` (newest verified when None), relaunch."""
        raise NotImplementedError

    async def relink(self) -> None:
        """Archive the live session to quarantine (backups are kept) and show a fresh QR."""
        raise NotImplementedError

    async def show_new_qr(self) -> None:
        """The QR list ran out (page idle): click the page's reload button for new codes."""
        raise NotImplementedError

    async def finish_in_visible_browser(self) -> None:
        """Relaunch the same profile in a visible window so the owner can finish linking
        (WhatsApp's passkey step), then go back to headless once connected."""
        raise NotImplementedError

    def status(self) -> dict[str, Any]:
        """What `linda-desktop status --json` prints, from the running service's point of view."""
        raise NotImplementedError

    def list_backups(self) -> list[dict[str, Any]]:
        raise NotImplementedError
