"""The control channel's handler: what a second launch or a CLI command may ask the running app.

The channel (system/single_instance.ControlServer) calls the handler on a thread per connection.
Read-only commands (``Command.read_only``: ping, show, status, backups) are answered at once, also
while a long command (a backup, a restore) runs; the others run one at a time on the service's
event loop. The channel opens before the service runs, so requests that arrive first wait (up to
``ready_timeout``) until ``attach`` gives the handler its service.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from linda_desktop.base.errors import LindaError
from linda_desktop.base.events import Command

if TYPE_CHECKING:
    from linda_desktop.service.session_service import SessionService

log = logging.getLogger(__name__)

Answer = dict[str, Any]
COMMAND_TIMEOUT = 600.0


class ControlHandler:
    """``handler(request) -> answer`` for ``start_or_connect``; ``attach`` once the service runs."""

    def __init__(self, *, ready_timeout: float = 20.0) -> None:
        self.ready_timeout = ready_timeout
        self._service: SessionService | None = None
        self._on_show: Callable[[], None] | None = None
        self._ready = threading.Event()

    def attach(self, service: SessionService, *, on_show: Callable[[], None] | None = None) -> None:
        """From now on requests go to ``service``; ``on_show`` raises the app's window (tray only)."""
        self._service = service
        self._on_show = on_show
        self._ready.set()

    def __call__(self, request: dict[str, Any]) -> Answer:
        raw = request.get("cmd")
        try:
            command = Command(raw)
        except ValueError:
            return {"ok": False, "error": f"unknown command {str(raw)[:40]!r}"}
        if command is Command.PING:
            return {"ok": True, "result": {}}
        if not self._ready.wait(self.ready_timeout) or self._service is None:
            return {"ok": False, "error": "Linda Desktop is still starting; try again in a moment"}
        try:
            result = self._run(self._service, command, request)
        except LindaError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:
            log.exception("control command %r failed", command.value)
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"ok": True, "result": result}

    def _run(self, service: SessionService, command: Command, request: dict[str, Any]) -> Any:
        if command is Command.SHOW:
            if self._on_show is not None:
                self._on_show()
            return {"shown": self._on_show is not None}
        if command is Command.STATUS:
            return service.status()
        if command is Command.BACKUPS:
            return service.list_backups()
        if command is Command.VERIFY:  # file reads only, on this thread; never touches the profile
            store = service._store  # the service's BackupStore (None without a key)
            if store is None:
                raise service._key_error or LindaError("Backups are off: no backup key")
            return store.verify_all(request.get("id"))
        if command is Command.QUIT:
            service.request_stop()
            return {"stopping": True}
        if command is Command.FINISH_LINK:
            _call(service, service.finish_link, COMMAND_TIMEOUT)
            return {"state": service.state.value, "window_shown": service.window_on_screen}
        coroutines: dict[Command, Callable[[], Awaitable[Any]]] = {
            Command.BACKUP: service.backup_now,
            Command.RESTORE: lambda: service.restore(request.get("id")),
            Command.RELINK: service.relink,
            Command.IMPORT: lambda: service.import_session(str(request.get("path", ""))),
            Command.NEW_QR: service.show_new_qr,
        }
        make = coroutines.get(command)
        if make is None:
            raise LindaError(f"The running app does not take {command.value!r} on its control channel")
        return _call(service, make)


def _call(service: SessionService, make: Callable[[], Awaitable[Any]], timeout: float = COMMAND_TIMEOUT) -> Any:
    """Run ``make()`` on the service's loop from the channel's thread and wait for its result."""
    loop = service.loop
    if loop is None or loop.is_closed():
        raise LindaError("Linda Desktop is stopping", "start it again")

    async def run() -> Any:
        return await make()

    return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout)
