"""The icon files: generated from the SVG sources, readable by the OS formats, legible small."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QImage, QImageReader

from linda_desktop import resources
from linda_desktop.base.events import SessionState
from linda_desktop.ui import icons

ICONS = resources.path("icons")  # the rendered files the app ships
SOURCES = Path(__file__).resolve().parents[2] / "resources" / "icons"  # SVG sources and build_icons.py
SIZES = (16, 22, 32, 48, 64, 128, 256)
sys.path.insert(0, str(SOURCES))
import build_icons  # noqa: E402


def test_generated_files_match_the_svg_sources():
    """Fails when someone edits an SVG without running build_icons.py (pixels compared)."""
    out = subprocess.run([sys.executable, str(SOURCES / "build_icons.py"), "--check"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_every_png_size_exists_for_every_icon():
    stems = [svg.stem for svg in (SOURCES / "src").glob("*.svg")]
    assert "app" in stems
    for key in icons.ICON_KEYS:
        for variant in ("light", "dark", "template"):
            assert f"tray-{key}-{variant}" in stems
    for stem in stems:
        for size in SIZES:
            image = QImage(str(ICONS / f"{stem}-{size}.png"))
            assert (image.width(), image.height()) == (size, size), f"{stem}-{size}.png"
            assert image.hasAlphaChannel()


def test_ico_holds_every_size_and_windows_reader_reads_it():
    entries = build_icons.ico_entries((ICONS / "app.ico").read_bytes())
    assert sorted(size for size, _ in entries) == [16, 24, 32, 48, 64, 128, 256]
    reader = QImageReader(str(ICONS / "app.ico"))
    assert reader.imageCount() == 7
    sizes = set()
    for i in range(reader.imageCount()):
        reader.jumpToImage(i)
        sizes.add(reader.read().width())
    assert sizes == {16, 24, 32, 48, 64, 128, 256}


def test_icns_holds_the_retina_sizes_and_qt_reads_it():
    entries = build_icons.icns_entries((ICONS / "app.icns").read_bytes())
    kinds = [kind for kind, _ in entries]
    assert kinds == [k for k, _ in build_icons.ICNS_TYPES]
    for kind, payload in entries:
        size = dict(build_icons.ICNS_TYPES)[kind]
        image = QImage.fromData(payload)
        assert (image.width(), image.height()) == (size, size), kind
    reader = QImageReader(str(ICONS / "app.icns"))
    assert reader.canRead() and not reader.read().isNull()


def colours(path: Path) -> list[tuple[int, int, int, int]]:
    image = QImage(str(path)).convertToFormat(QImage.Format.Format_ARGB32)
    return [image.pixelColor(x, y).getRgb() for y in range(image.height()) for x in range(image.width())]


@pytest.mark.parametrize("key", icons.ICON_KEYS)
def test_template_icons_are_black_and_alpha_only(key):
    for size in (16, 32):
        for r, g, b, a in colours(ICONS / f"tray-{key}-template-{size}.png"):
            assert a == 0 or (r, g, b) == (0, 0, 0)


def badge_colour(key: str, size: int = 16) -> tuple[int, int, int]:
    """The most common saturated colour of the icon = its state badge."""
    counts: dict[tuple[int, int, int], int] = {}
    for r, g, b, a in colours(ICONS / f"tray-{key}-dark-{size}.png"):
        if a == 255 and max(r, g, b) - min(r, g, b) > 40:
            counts[(r, g, b)] = counts.get((r, g, b), 0) + 1
    return max(counts, key=counts.get) if counts else (128, 128, 128)


def test_states_are_told_apart_at_16_px():
    found = {key: badge_colour(key) for key in icons.ICON_KEYS if key != "offline"}
    # Clearly different hues for connected (green), working (blue), needs link (amber), error (red).
    assert found["connected"][1] > found["connected"][0] and found["connected"][1] > found["connected"][2]
    assert found["working"][2] > found["working"][0]
    assert found["needs_link"][0] > 180 and found["needs_link"][2] < 80
    assert found["error"][0] > 180 and found["error"][1] < 100
    assert len(set(found.values())) == len(found)


def test_light_and_dark_variants_differ_in_the_glyph():
    light = colours(ICONS / "tray-connected-light-22.png")
    dark = colours(ICONS / "tray-connected-dark-22.png")
    assert light != dark
    mean = lambda px: sum(r + g + b for r, g, b, a in px if a == 255 and max(r, g, b) - min(r, g, b) < 20)  # noqa: E731
    assert mean(light) > mean(dark)  # light glyph for dark panels


def test_tray_icon_choice(qapp, monkeypatch):
    monkeypatch.setenv(icons.PANEL_ENV, "dark")
    assert icons.panel_is_dark()
    monkeypatch.setenv(icons.PANEL_ENV, "light")
    assert not icons.panel_is_dark()
    mac = icons.tray_icon(SessionState.CONNECTED, platform="darwin")
    assert mac.isMask()
    on_dark = icons.tray_icon(SessionState.CONNECTED, dark_panel=True, platform="linux")
    on_light = icons.tray_icon(SessionState.CONNECTED, dark_panel=False, platform="linux")
    assert not on_dark.isNull() and on_dark.cacheKey() != on_light.cacheKey()
    assert sorted(s.width() for s in on_dark.availableSizes()) == list(SIZES)
    assert icons.icon_key(SessionState.RESTORING) == "working"
    assert icons.icon_key(SessionState.LOGGED_OUT) == "needs_link"
    assert {icons.icon_key(s) for s in SessionState} == set(icons.ICON_KEYS)
