"""GUI test fixtures (pytest-qt; tests/run.sh sets QT_QPA_PLATFORM=offscreen).

``ThreadingProbeService`` exists ONLY to exercise the bridge's threading (events hopping to the
GUI thread, commands running on the service loop, clean shutdown). It is a tiny real asyncio
object shaped like SessionService; the real service needs a browser and is covered end to end
by the e2e tests.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from linda_desktop.base.events import Event
from linda_desktop.base.paths import AppPaths, resolve_paths


class ThreadingProbeService:
    """Records which thread ran what; emits whatever the test scripts."""

    def __init__(self, on_event: Callable[[Event], None], script: list[Event] | None = None, *,
                 stop_delay: float = 0.0, fail_run: BaseException | None = None,
                 backups: list[dict[str, Any]] | None = None) -> None:
        self.on_event = on_event
        self.script = list(script or [])
        self.stop_delay = stop_delay
        self.fail_run = fail_run
        self.backups = backups or []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.calls: list[tuple[str, Any, str]] = []  # (command, argument, thread name)
        self.run_thread: str | None = None
        self.stopped_cleanly = False
        self.gate = threading.Event()  # commands that wait for the test use it
        self._stop: asyncio.Event | None = None

    async def run(self) -> None:
        self.run_thread = threading.current_thread().name
        self._stop = asyncio.Event()
        if self.fail_run is not None:
            raise self.fail_run
        for event in self.script:
            self.on_event(event)
        await self._stop.wait()
        await asyncio.sleep(self.stop_delay)  # the real service backs up here
        self.stopped_cleanly = True

    def request_stop(self) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(lambda: self._stop.set() if self._stop else None)

    def emit_from_loop(self, event: Event) -> None:
        """Thread-safe: emit ``event`` from the service's own thread, as the service does."""
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.on_event, event)

    def _record(self, name: str, arg: Any = None) -> None:
        self.calls.append((name, arg, threading.current_thread().name))

    async def backup_now(self) -> dict[str, Any]:
        self._record("backup_now")
        await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 5)
        return {"id": "b-new", "size": 10}

    async def restore(self, backup_id: str | None = None) -> dict[str, Any]:
        self._record("restore", backup_id)
        if backup_id == "missing":
            from linda_desktop.base.errors import BackupNotFound
            raise BackupNotFound("No backup called missing", "pick one from the list")
        return {"id": backup_id}

    async def relink(self) -> None:
        self._record("relink")

    async def show_new_qr(self) -> None:
        self._record("show_new_qr")

    async def finish_link(self) -> None:
        self._record("finish_link")
        raise RuntimeError("the WhatsApp window is gone")

    async def request_pairing_code(self, phone: str) -> dict[str, Any]:
        self._record("pairing_code", phone)
        if phone.startswith("999"):
            from linda_desktop.base.errors import LindaError
            raise LindaError("WhatsApp refused this number", "check the country code")
        from linda_desktop.base.events import PairingCode
        self.on_event(PairingCode("K7QM-2XWP", phone=phone))
        return {"code": "K7QM-2XWP"}

    def list_backups(self) -> list[dict[str, Any]]:
        self._record("list_backups")
        return list(self.backups)

    def status(self) -> dict[str, Any]:
        self._record("status")
        return {"state": "connected"}


@pytest.fixture
def paths(tmp_path: Path) -> AppPaths:
    return resolve_paths(tmp_path / "data")


@pytest.fixture
def probe_factory():
    """``factory(on_event) -> ThreadingProbeService``; ``factory.service`` is the last one built."""

    class Factory:
        service: ThreadingProbeService | None = None

        def __init__(self) -> None:
            self.kwargs: dict[str, Any] = {}

        def configure(self, **kwargs: Any) -> Factory:
            self.kwargs = kwargs
            return self

        def __call__(self, on_event: Callable[[Event], None]) -> ThreadingProbeService:
            self.service = ThreadingProbeService(on_event, **self.kwargs)
            return self.service

    return Factory()


@pytest.fixture
def started_bridges():
    """Every bridge a test starts is shut down at the end, even when the test fails."""
    bridges: list = []
    yield bridges
    for bridge in bridges:
        if bridge.running:
            bridge.shutdown(timeout=10)
