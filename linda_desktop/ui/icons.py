"""Icons per state, picked for the panel's colour scheme (and as template images on macOS)."""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QIcon, QPalette

from linda_desktop import resources
from linda_desktop.base.events import SessionState

SIZES = (16, 22, 32, 48, 64, 128, 256)
ICON_KEYS = ("connected", "working", "needs_link", "offline", "error")

_STATE_ICON = {
    SessionState.CONNECTED: "connected",
    SessionState.STARTING: "working",
    SessionState.RESTORING: "working",
    SessionState.BROWSER_CRASHED: "working",
    SessionState.NEEDS_LINK: "needs_link",
    SessionState.LOGGED_OUT: "needs_link",
    SessionState.CONFLICT: "needs_link",
    SessionState.OFFLINE: "offline",
    SessionState.ERROR: "error",
}


def icon_key(state: SessionState) -> str:
    """Which of the five tray pictures stands for ``state``."""
    return _STATE_ICON.get(SessionState(state), "error")


def icons_dir() -> Path:
    return resources.path("icons")


def _load(stem: str) -> QIcon:
    icon = QIcon()
    folder = icons_dir()
    for size in SIZES:
        png = folder / f"{stem}-{size}.png"
        if png.exists():
            icon.addFile(str(png))
    if icon.isNull():  # a checkout without generated PNGs: fall back to the SVG source
        svg = folder / "src" / f"{stem}.svg"
        if svg.exists():
            icon.addFile(str(svg))
    return icon


@cache
def app_icon() -> QIcon:
    return _load("app")


PANEL_ENV = "LINDA_TRAY_THEME"  # "dark" or "light": the panel's colour, when the guess is wrong


def panel_is_dark() -> bool:
    """Best guess whether the tray area is dark: ``LINDA_TRAY_THEME`` if set; GNOME's top bar
    always is; otherwise Qt's colour scheme / palette."""
    forced = os.environ.get(PANEL_ENV, "").strip().lower()
    if forced in ("dark", "light"):
        return forced == "dark"
    if "GNOME" in os.environ.get("XDG_CURRENT_DESKTOP", "").upper():
        return True
    app = QGuiApplication.instance()
    if app is None:
        return False
    hints = QGuiApplication.styleHints()
    scheme = getattr(hints, "colorScheme", None)
    if scheme is not None:
        value = scheme()
        if value == Qt.ColorScheme.Dark:
            return True
        if value == Qt.ColorScheme.Light:
            return False
    return QGuiApplication.palette().color(QPalette.ColorRole.Window).lightness() < 128


@cache
def _tray_icon(key: str, variant: str) -> QIcon:
    icon = _load(f"tray-{key}-{variant}")
    if variant == "template":
        icon.setIsMask(True)  # macOS recolours it for the menu bar (light, dark, highlighted)
    return icon


def tray_icon(state: SessionState, *, dark_panel: bool | None = None, platform: str | None = None) -> QIcon:
    """The tray icon for ``state``: a template (mask) image on macOS, else light/dark per panel."""
    plat = platform or sys.platform
    if plat == "darwin":
        return _tray_icon(icon_key(state), "template")
    dark = panel_is_dark() if dark_panel is None else dark_panel
    # "light" glyphs are drawn for dark panels and "dark" glyphs for light ones.
    return _tray_icon(icon_key(state), "light" if dark else "dark")


def tray_icon_file(state: SessionState, variant: str, size: int) -> Path:
    return icons_dir() / f"tray-{icon_key(state)}-{variant}-{size}.png"
