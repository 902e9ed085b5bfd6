"""Starting Playwright's driver so that a stop signal to the app's process group cannot kill it.

Why: ``systemctl stop`` and many terminals send SIGTERM to the app's whole process group. The
Playwright driver (a Node.js child) is in that group by default, dies at once, and takes the
browser down with a SIGKILL-like end: the profile is not flushed, and the app, which handles
SIGTERM by closing the browser cleanly and taking an exit backup, has nothing left to close
(issue 12 item 3). Chromium itself already runs in its own process group.

How, narrowly: Playwright launches the driver with ``asyncio.create_subprocess_exec`` in
``playwright._impl.transport``. That module alone gets a stand-in for its ``asyncio`` name whose
``create_subprocess_exec`` adds ``start_new_session=True`` (POSIX) or
``CREATE_NEW_PROCESS_GROUP`` (Windows); everything else is the real asyncio. The driver still
ends with the app: it exits when its stdin (our pipe) closes, and closes its browsers then.

Also: after start-up nobody awaits the transport's ``on_error_future``; when the driver
connection closes, asyncio would print "Future exception was never retrieved". ``start`` reads
that exception (and logs it) instead.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from playwright.async_api import Playwright, async_playwright

log = logging.getLogger(__name__)

_MODULE = "playwright._impl.transport"


class _OwnSessionAsyncio:
    """``asyncio`` as Playwright's transport sees it: the driver starts in its own session."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def create_subprocess_exec(self, *args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        if sys.platform == "win32":
            kwargs["creationflags"] = kwargs.get("creationflags", 0) | subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            kwargs.setdefault("start_new_session", True)
        return await asyncio.create_subprocess_exec(*args, **kwargs)


def isolate_driver() -> bool:
    """Installs the stand-in (idempotent). False when this Playwright has no such module: then
    the driver shares our process group, as before."""
    try:
        import importlib

        transport = importlib.import_module(_MODULE)
    except ImportError:
        log.warning("Playwright's transport module moved; its driver stays in our process group")
        return False
    current = getattr(transport, "asyncio", None)
    if isinstance(current, _OwnSessionAsyncio):
        return True
    if current is not asyncio:
        log.warning("Playwright's transport does not use asyncio directly; its driver stays in our process group")
        return False
    transport.asyncio = _OwnSessionAsyncio()  # type: ignore[attr-defined]
    return True


async def start(on_lost: Callable[[], None] | None = None) -> tuple[Playwright, int | None]:
    """``async_playwright().start()`` with the driver in its own session. ``on_lost`` is called
    when the driver connection closes unasked (the driver died): Playwright itself then reports
    nothing, no "close" event either. Its error is read here, so asyncio never prints "Future
    exception was never retrieved". Returns the driver's pid too."""
    isolate_driver()
    manager = async_playwright()
    playwright = await manager.start()
    transport = getattr(getattr(manager, "_client", None), "_transport", None)
    future = getattr(transport, "on_error_future", None)

    def read_error(done: asyncio.Future[Any]) -> None:
        if done.cancelled() or done.exception() is None:
            return
        log.info("the Playwright driver connection closed: %s", done.exception())
        if on_lost is not None:
            on_lost()

    if isinstance(future, asyncio.Future):
        future.add_done_callback(read_error)
    proc = getattr(transport, "_proc", None)
    return playwright, getattr(proc, "pid", None)
