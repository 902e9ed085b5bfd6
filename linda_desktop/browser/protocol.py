"""The page as the service sees it: what ``SessionService`` may ask of a WhatsApp Web page.

``browser.whatsapp.WhatsAppPage`` is the real one (Playwright + Chromium); unit tests of the
service drive a fake that follows the same protocol, so every decision can be tested in
milliseconds without a browser. The service gets pages from a ``PageFactory``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from linda_desktop.base.errors import LindaError
from linda_desktop.base.events import PageSnapshot


class PairingCodeFailed(LindaError):
    """No pairing code: a number that is no phone number, or the page gave none (message + fix)."""


class Page(Protocol):
    """One browser on our profile showing one WhatsApp Web page."""

    @property
    def crashed(self) -> bool:
        """True once the browser or the page went away (crash, owner closed the window)."""

    @property
    def browser_pid(self) -> int | None: ...

    @property
    def visible(self) -> bool:
        """True while the browser window is on screen (the passkey step); False headless or hidden."""

    @property
    def page(self) -> Any:
        """The Playwright page for the bot bridge (None for a fake page)."""

    async def start(self) -> None:
        """Launch the browser on the profile and open WhatsApp Web. Raises ProfileInUse,
        BrowserLaunchFailed."""

    async def close(self, timeout: float = 15.0) -> None:
        """Close the browser cleanly so storage is flushed (kill it when it does not close)."""

    async def snapshot(self) -> PageSnapshot:
        """Read the page now (one round trip)."""

    async def wait_for_change(self, previous: PageSnapshot | None, timeout: float) -> PageSnapshot:
        """Return as soon as the page's reading differs from ``previous``, or after ``timeout``
        with the current reading. Event-driven: the page pushes changes (issue 13)."""

    async def reload(self) -> None:
        """Open WhatsApp Web afresh (drops the logout parameters from the URL)."""

    async def take_over(self) -> bool:
        """Conflict: use the session here (``Socket.takeover()``, a click only as the fallback)."""

    async def refresh_qr(self) -> bool:
        """QR list ran out: ask for new codes (``Cmd.refreshQR()``, a click as the fallback)."""

    async def flush_storage(self) -> None:
        """Make sure localStorage is on disk (right after a link, before the first backup)."""

    async def show_window(self) -> bool:
        """Bring the kept-out-of-sight window on screen (passkey step); False when headless."""

    async def hide_window(self) -> None:
        """Move the window out of sight again."""

    async def request_pairing_code(self, phone: str) -> str:
        """Ask WhatsApp for an 8-character pairing code for ``phone`` (with country code; spaces,
        ``+`` and dashes are fine) -> ``"ABCD-EFGH"``. Raises PairingCodeFailed. While the code is
        shown, snapshots say ``PAIRING_CODE`` with ``pairing_code``; once it expired,
        ``PAIRING_CODE`` with ``pairing_code=None`` (ask for a new one)."""


class PageFactory(Protocol):
    def __call__(self, profile_dir: Path, url: str, executable: str, *, headless: bool,
                 hidden_window: bool) -> Page:
        """``hidden_window``: a real (not headless) window kept off screen, for linking on a desktop."""
