"""The real SessionService behind the tray UI, for GUI tests.

``RealServiceFactory`` is a ServiceBridge factory that builds the service exactly as the tray app
does (``linda_desktop.app.build_service``) against the WhatsApp Web simulator and a real Chromium.
``read_qr_modules`` reads a QR code back from the pixels a widget painted, without knowing the
payload, so a test can compare it with segno's matrix for the payload it expects.
``open_menu``/``menu_actions`` index the real tray menu; ``UrlCatcher`` records the URLs the UI
asks the desktop to open.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import segno
from PySide6.QtCore import QObject, QUrl, Slot
from PySide6.QtGui import QAction, QImage
from PySide6.QtWidgets import QMenu

from linda_desktop.app import build_service
from linda_desktop.base.events import Event
from linda_desktop.base.paths import AppPaths
from linda_desktop.service.session_service import SessionService

CHROMIUM = os.environ.get("LINDA_BROWSER", "/usr/bin/chromium")


class RealServiceFactory:
    """``factory(on_event) -> SessionService``; every service it built is kept in ``services``."""

    def __init__(self, paths: AppPaths, wa_url: str, browser: str = CHROMIUM) -> None:
        self.paths = paths
        self.wa_url = wa_url
        self.browser = browser
        self.services: list[SessionService] = []

    def __call__(self, on_event: Callable[[Event], None]) -> SessionService:
        service = build_service(self.paths, wa_url=self.wa_url, browser=self.browser, on_event=on_event)
        self.services.append(service)
        return service

    @property
    def service(self) -> SessionService | None:
        return self.services[-1] if self.services else None


def segno_modules(payload: str) -> list[list[bool]]:
    """What the code for ``payload`` must look like (True = dark), without the quiet zone."""
    return [[bool(v) for v in row] for row in segno.make(payload, error="l", micro=False).matrix]


def read_qr_modules(image: QImage) -> list[list[bool]]:
    """Decode the module grid from pixels: the dark bounding box is the symbol (three finder
    patterns reach its top, left, right and bottom edges); the top-left finder's first row is
    7 modules wide, which gives the module size. Fails on a blurred or fractional rendering."""
    image = image.convertToFormat(QImage.Format.Format_RGB32)
    width, height = image.width(), image.height()
    dark = lambda x, y: image.pixelColor(x, y).lightness() < 100  # noqa: E731
    rows = [y for y in range(height) if any(dark(x, y) for x in range(width))]
    cols = [x for x in range(width) if any(dark(x, y) for y in range(height))]
    assert rows and cols, "no dark pixels: no code on screen"
    top, bottom, left, right = rows[0], rows[-1], cols[0], cols[-1]
    run = 0
    while left + run <= right and dark(left + run, top):
        run += 1
    assert run % 7 == 0, f"the finder pattern is {run} px wide: not 7 whole modules"
    px = run // 7
    side = right - left + 1
    assert side == bottom - top + 1, "the code is not square"
    assert side % px == 0, f"{side} px is not a whole number of {px}-px modules"
    n = side // px
    return [[dark(left + c * px + px // 2, top + r * px + px // 2) for c in range(n)] for r in range(n)]


def menu_actions(menu: QMenu) -> dict[str, QAction]:
    """Every action of ``menu`` and its submenus, by object name (the menu model's item id)."""
    found: dict[str, QAction] = {}
    for action in menu.actions():
        if action.isSeparator():
            continue
        found[action.objectName()] = action
        sub = action.menu()
        if isinstance(sub, QMenu):
            found.update(menu_actions(sub))
    return found


def open_menu(qtbot: Any, controller: Any) -> dict[str, QAction]:
    """Open the real tray QMenu (aboutToShow rebuilds it from the menu model), index it, close it."""
    controller.menu.popup(controller.menu.pos())
    qtbot.waitUntil(controller.menu.isVisible, timeout=2000)
    actions = menu_actions(controller.menu)
    controller.menu.hide()
    return actions


class UrlCatcher(QObject):
    """Stands in as the desktop's URL handler (QDesktopServices.setUrlHandler) and records URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[QUrl] = []

    @Slot(QUrl)
    def open(self, url: QUrl) -> None:
        self.urls.append(url)


class Recorder:
    """Collects what a signal carried, in order (connect ``recorder.add``)."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def add(self, *args: Any) -> None:
        self.items.append(args[0] if len(args) == 1 else args)

    def __len__(self) -> int:
        return len(self.items)
