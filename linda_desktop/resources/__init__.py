"""Data files (selectors, icons, templates). Installed as the package `linda_desktop.resources`.

Read them with `linda_desktop.resources.path(name)` so a checkout, a wheel and a frozen
bundle all work the same.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def path(name: str) -> Path:
    """Absolute path of a resource file, e.g. ``path("selectors.json")``."""
    return _HERE / name
