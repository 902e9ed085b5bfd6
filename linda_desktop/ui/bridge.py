"""ServiceBridge: runs the Qt-free SessionService on its own asyncio loop in a worker thread and
turns its events into Qt signals (delivered on the GUI thread). The GUI never waits on it.

Commands go the other way with ``asyncio.run_coroutine_threadsafe``; their outcome comes back as
``commandDone(name, result)`` or ``commandFailed(name, message)``, ``name`` being the
:class:`~linda_desktop.base.events.Command` value (the control channel's words).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import inspect
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Protocol

from PySide6.QtCore import QCoreApplication, QEventLoop, QObject, Signal, Slot

from linda_desktop.base.events import BackupMade, Command, Event, Notice, PairingCode, QrCode, Restored, StateChanged
from linda_desktop.ui import qt_compat  # noqa: F401 - must load before any emit

log = logging.getLogger(__name__)


class ServiceLike(Protocol):
    """What the bridge needs from SessionService (linda_desktop.service.session_service)."""

    loop: asyncio.AbstractEventLoop | None

    async def run(self) -> None: ...
    def request_stop(self) -> None: ...


ServiceFactory = Callable[[Callable[[Event], None]], ServiceLike]

# The tray's own read of the backup list (not a control-channel command).
LIST_BACKUPS = "list_backups"


def describe_error(exc: BaseException) -> str:
    """One line for the owner: LindaError already reads well; others get their type name."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    return text.splitlines()[0]


class ServiceBridge(QObject):
    stateChanged = Signal(object)      # StateChanged
    qrChanged = Signal(str, bool)      # payload (never log it), idle
    pairingCode = Signal(str)          # "ABCD-EFGH": type it on the phone
    backupMade = Signal(object)        # dict: id, size, seconds, reason, created_at (aware datetime)
    restored = Signal(object)          # dict: from_id, seconds, reason, at (aware datetime)
    notice = Signal(str, str)          # kind, message
    commandDone = Signal(str, object)  # command name, result
    commandFailed = Signal(str, str)   # command name, one-line message
    busyChanged = Signal()             # the set of running commands changed
    started = Signal()                 # the service object exists and its loop runs
    finished = Signal()                # the service thread ended (emitted once)

    _eventArrived = Signal(object)
    _commandEnded = Signal(str, bool, object)
    _threadEnded = Signal(str)

    def __init__(self, factory: ServiceFactory, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._factory = factory
        self._thread: threading.Thread | None = None
        self._service: ServiceLike | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._stop_requested = False
        self._finished = False
        self._pending: dict[str, int] = {}
        self.failure: str | None = None  # why run() ended with an exception, if it did
        # Events and results hop from the service thread to the GUI thread through these
        # (queued, because this object lives in the GUI thread).
        self._eventArrived.connect(self._dispatch_event)
        self._commandEnded.connect(self._on_command_ended)
        self._threadEnded.connect(self._on_thread_ended)

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._thread_main, name="linda-service", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def stop_requested(self) -> bool:
        """True once someone asked the service to stop (its end is then expected)."""
        return self._stop_requested

    @property
    def is_finished(self) -> bool:
        return self._finished

    @property
    def service(self) -> ServiceLike | None:
        return self._service

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        failure = ""
        try:
            service = self._factory(self._on_event_from_service)
            if getattr(service, "loop", None) is None:
                service.loop = loop
            with self._lock:
                self._service, self._loop = service, loop
                stop_first = self._stop_requested
            if stop_first:
                log.info("service stopped before it started")
            else:
                loop.call_soon(self.started.emit)
                loop.run_until_complete(service.run())
        except BaseException as exc:
            failure = describe_error(exc)
            log.exception("the service stopped with an error")
        finally:
            try:
                _cancel_leftovers(loop)
            finally:
                with self._lock:
                    self._loop = None
                loop.close()
                self._threadEnded.emit(failure)

    def shutdown(self, timeout: float = 90.0) -> bool:
        """Ask the service to stop (it flushes and backs up), then wait for its thread while
        keeping the GUI responsive. Returns True when the thread ended within ``timeout``."""
        self.request_stop()
        thread = self._thread
        if thread is not None:
            deadline = time.monotonic() + timeout
            while thread.is_alive() and time.monotonic() < deadline:
                QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
                thread.join(0.02)
            if thread.is_alive():
                log.warning("the service did not stop within %.0f s", timeout)
                self._emit_finished()
                return False
        # Deliver whatever the thread queued on its way out (the last events, _threadEnded).
        QCoreApplication.processEvents()
        self._emit_finished()
        return True

    def request_stop(self) -> None:
        """Thread-safe, non-blocking: ask the service to stop."""
        with self._lock:
            self._stop_requested = True
            service = self._service
        if service is not None and self.running:
            try:
                service.request_stop()
            except Exception:
                log.exception("request_stop failed")

    # ---- events (service thread → GUI thread) ----------------------------------------------

    def _on_event_from_service(self, event: Event) -> None:
        """Called by the service on its loop thread: only hand the event over."""
        self._eventArrived.emit(event)

    @Slot(object)
    def _dispatch_event(self, event: Event) -> None:
        now = datetime.now(timezone.utc)
        if isinstance(event, StateChanged):
            self.stateChanged.emit(event)
        elif isinstance(event, QrCode):
            self.qrChanged.emit(event.data, bool(event.idle))
        elif isinstance(event, PairingCode):
            self.pairingCode.emit(event.code)
        elif isinstance(event, BackupMade):
            self.backupMade.emit({**dataclasses.asdict(event), "created_at": now})
        elif isinstance(event, Restored):
            self.restored.emit({**dataclasses.asdict(event), "at": now})
        elif isinstance(event, Notice):
            self.notice.emit(str(event.kind), event.message)
        else:
            log.warning("unknown event type %s", type(event).__name__)

    @Slot(str)
    def _on_thread_ended(self, failure: str) -> None:
        if failure:
            self.failure = failure
            self.notice.emit("service_failed", failure)
        self._emit_finished()

    def _emit_finished(self) -> None:
        if not self._finished:
            self._finished = True
            self.finished.emit()

    # ---- commands (GUI thread → service loop) ------------------------------------------------

    def busy(self, name: str) -> bool:
        return self._pending.get(str(name), 0) > 0

    def backup_now(self) -> None:
        self._submit(Command.BACKUP, lambda s: s.backup_now())

    def restore(self, backup_id: str | None = None) -> None:
        self._submit(Command.RESTORE, lambda s: s.restore(backup_id))

    def relink(self) -> None:
        self._submit(Command.RELINK, lambda s: s.relink())

    def show_new_qr(self) -> None:
        self._submit(Command.NEW_QR, lambda s: s.show_new_qr())

    def finish_link(self) -> None:
        """Bring the browser window of the passkey step on screen again (same process, same page)."""
        self._submit(Command.FINISH_LINK, lambda s: s.finish_link())

    @Slot(str)
    def request_pairing_code(self, phone: str) -> None:
        """Ask WhatsApp for a pairing code for ``phone`` (digits with the country code); the code
        arrives as ``pairingCode``, a refused number as ``commandFailed("pairing_code", why)``."""
        self._submit(Command.PAIRING_CODE, lambda s: s.request_pairing_code(phone))

    def call_in_service_thread(self, fn: Callable[[], Any], timeout: float = 15.0) -> Any:
        """Run a plain function on the service's loop thread and wait for its result.
        For worker threads only (e.g. Diagnostics); the GUI thread must never wait."""
        if threading.current_thread() is threading.main_thread():
            raise RuntimeError("call_in_service_thread would block the GUI thread")
        with self._lock:
            loop = self._loop
        if loop is None or not self.running:
            raise RuntimeError("the service is not running")

        async def call() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout)

    def list_backups(self) -> None:
        """Ask for the backup list; it arrives as ``commandDone("list_backups", [dict, …])``."""

        async def listed(service: Any) -> Any:
            return service.list_backups()  # plain file listing, run on the service's thread

        self._submit(LIST_BACKUPS, listed, quiet=True)

    def _submit(self, command: Command | str, call: Callable[[Any], Any], *, quiet: bool = False) -> None:
        name = str(command)
        with self._lock:
            service, loop = self._service, self._loop
        if service is None or loop is None or not self.running or self._stop_requested:
            if not quiet:
                self.commandFailed.emit(name, "Linda Desktop is not running its session right now.")
            return

        async def invoke() -> Any:
            result = call(service)
            return await result if inspect.isawaitable(result) else result

        try:
            future = asyncio.run_coroutine_threadsafe(invoke(), loop)
        except RuntimeError as exc:  # the loop closed between the check and the call
            self.commandFailed.emit(name, describe_error(exc))
            return
        self._pending[name] = self._pending.get(name, 0) + 1
        self.busyChanged.emit()

        def done(fut: concurrent.futures.Future[Any]) -> None:  # runs on the service thread
            exc = None if fut.cancelled() else fut.exception()
            if fut.cancelled():
                self._commandEnded.emit(name, False, "The command was cancelled.")
            elif exc is not None:
                log.warning("command %s failed: %s", name, describe_error(exc))
                self._commandEnded.emit(name, False, describe_error(exc))
            else:
                self._commandEnded.emit(name, True, fut.result())

        future.add_done_callback(done)

    @Slot(str, bool, object)
    def _on_command_ended(self, name: str, ok: bool, payload: object) -> None:
        count = self._pending.get(name, 0) - 1
        if count > 0:
            self._pending[name] = count
        else:
            self._pending.pop(name, None)
        self.busyChanged.emit()
        if ok:
            self.commandDone.emit(name, payload)
        else:
            self.commandFailed.emit(name, str(payload))


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel tasks still pending when run() returns (commands in flight) and let them finish."""
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
