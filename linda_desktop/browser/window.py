"""The browser window kept out of sight for linking, and brought on screen for the passkey step.

A headless browser cannot finish WebAuthn, and a second browser on the same profile would lose
the in-memory passkey state (reference §4). So on a desktop the page runs in a real window
placed off screen (``--window-position`` far outside every screen, then CDP
``Browser.setWindowBounds``); ``show`` brings THAT window on screen (bounds back inside the
screen, ``windowState: normal``, ``Page.bringToFront``) and ``hide`` moves it away again.
"""

from __future__ import annotations

import logging
from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

log = logging.getLogger(__name__)

OFF_SCREEN = (-32000, -32000)
WINDOW_SIZE = (1024, 768)
SHOWN_AT = (40, 40)
LAUNCH_ARGS = (f"--window-position={OFF_SCREEN[0]},{OFF_SCREEN[1]}",
               f"--window-size={WINDOW_SIZE[0]},{WINDOW_SIZE[1]}")


class Window:
    """CDP control of the window that shows ``page``."""

    def __init__(self, page: Page) -> None:
        self._page = page
        self._session: Any = None
        self._window_id: int | None = None

    async def _cdp(self) -> tuple[Any, int]:
        if self._session is None or self._window_id is None:
            self._session = await self._page.context.new_cdp_session(self._page)
            info = await self._session.send("Browser.getWindowForTarget")
            self._window_id = int(info["windowId"])
        return self._session, self._window_id

    async def bounds(self) -> dict[str, Any]:
        session, window_id = await self._cdp()
        return dict((await session.send("Browser.getWindowBounds", {"windowId": window_id}))["bounds"])

    async def _set(self, bounds: dict[str, Any]) -> None:
        session, window_id = await self._cdp()
        await session.send("Browser.setWindowBounds", {"windowId": window_id, "bounds": bounds})

    async def hide(self) -> bool:
        """Off screen; minimized only where the window manager will not let it leave the screen
        (a minimized page may be throttled, and WhatsApp keeps running in it)."""
        try:
            if (await self.bounds()).get("windowState") != "normal":
                await self._set({"windowState": "normal"})
            await self._set({"left": OFF_SCREEN[0], "top": OFF_SCREEN[1]})
            if await self.on_screen():   # a window manager that keeps windows on screen: minimize
                await self._set({"windowState": "minimized"})
            return True
        except (PlaywrightError, KeyError, ValueError) as err:
            log.warning("could not move the browser window out of sight: %s", err)
            return False

    async def show(self) -> bool:
        try:
            if (await self.bounds()).get("windowState") != "normal":
                await self._set({"windowState": "normal"})
            await self._set({"left": SHOWN_AT[0], "top": SHOWN_AT[1],
                             "width": WINDOW_SIZE[0], "height": WINDOW_SIZE[1]})
            session, _ = await self._cdp()
            await session.send("Page.bringToFront")
            return True
        except (PlaywrightError, KeyError, ValueError) as err:
            log.warning("could not bring the browser window on screen: %s", err)
            return False

    async def on_screen(self) -> bool:
        try:
            b = await self.bounds()
        except (PlaywrightError, KeyError, ValueError):
            return False
        left, top = int(b.get("left", OFF_SCREEN[0])), int(b.get("top", OFF_SCREEN[1]))
        return b.get("windowState") in ("normal", "maximized", "fullscreen") and \
            left > OFF_SCREEN[0] // 2 and top > OFF_SCREEN[1] // 2

    async def detach(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            try:
                await session.detach()
            except PlaywrightError:
                pass
