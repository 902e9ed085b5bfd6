"""Regenerate every icon file from the SVG sources in ``src/``.

    python resources/icons/build_icons.py          # writes PNGs, app.ico, app.icns to linda_desktop/resources/icons/
    python resources/icons/build_icons.py --check  # exit 1 if a generated file is missing or stale

Rendering uses QtSvg (no other image tool needed); ``app.ico`` and ``app.icns`` are written here in
pure Python with PNG-compressed entries (Windows Vista+ / macOS 10.7+ read those).

Files: ``app-<size>.png`` (the application icon), and per state (connected, working, needs_link,
offline, error) ``tray-<state>-dark-<size>.png`` (dark glyph, for light panels),
``tray-<state>-light-<size>.png`` (light glyph, for dark panels) and
``tray-<state>-template-<size>.png`` (macOS template: black + alpha; the menu bar recolours it).
Sizes: 16, 22, 32, 48, 64, 128, 256. Tray sources are drawn on a 32-unit grid so that 16 and 22 px
stay sharp; the state badge (bottom right) carries the state in colour and shape.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
# The rendered icons ship inside the package; the SVG sources and this script stay in resources/.
OUT = HERE.parents[1] / "linda_desktop" / "resources" / "icons"
SIZES = (16, 22, 32, 48, 64, 128, 256)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# ICNS entry types holding PNG data, by pixel size (Apple's iconset names in the comments).
ICNS_TYPES = (
    (b"icp4", 16),   # 16x16
    (b"ic11", 32),   # 16x16@2x
    (b"icp5", 32),   # 32x32
    (b"ic12", 64),   # 32x32@2x
    (b"ic07", 128),  # 128x128
    (b"ic13", 256),  # 128x128@2x
    (b"ic08", 256),  # 256x256
    (b"ic14", 512),  # 256x256@2x
    (b"ic09", 512),  # 512x512
    (b"ic10", 1024),  # 512x512@2x
)


def _qt():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication([])
    return app, QBuffer, QByteArray, QIODevice, Qt, QImage, QPainter, QSvgRenderer


def render_png(svg: Path, size: int) -> bytes:
    """Render ``svg`` to a ``size``×``size`` RGBA PNG (bytes)."""
    _app, QBuffer, QByteArray, QIODevice, Qt, QImage, QPainter, QSvgRenderer = _qt()
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"cannot read {svg}")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    image.convertToFormat(QImage.Format.Format_ARGB32).save(buf, "PNG")
    buf.close()
    return bytes(data.data())


def ico_bytes(pngs: dict[int, bytes]) -> bytes:
    """A Windows .ico holding one PNG entry per size."""
    sizes = sorted(pngs)
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = len(header) + 16 * len(sizes)
    entries, blobs = b"", b""
    for size in sizes:
        blob = pngs[size]
        dim = 0 if size >= 256 else size
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(blob), offset + len(blobs))
        blobs += blob
    return header + entries + blobs


def icns_bytes(pngs: dict[int, bytes]) -> bytes:
    """A macOS .icns holding PNG entries (see ICNS_TYPES)."""
    body = b""
    for kind, size in ICNS_TYPES:
        blob = pngs[size]
        body += kind + struct.pack(">I", len(blob) + 8) + blob
    return b"icns" + struct.pack(">I", len(body) + 8) + body


def ico_entries(data: bytes) -> list[tuple[int, bytes]]:
    """(size, PNG bytes) of each entry of an .ico written by ``ico_bytes``."""
    _reserved, kind, count = struct.unpack_from("<HHH", data, 0)
    if kind != 1:
        raise ValueError("not an icon file")
    out = []
    for i in range(count):
        w, _h, _c, _r, _planes, _bpp, length, offset = struct.unpack_from("<BBBBHHII", data, 6 + 16 * i)
        out.append((w or 256, data[offset:offset + length]))
    return out


def icns_entries(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of each entry of an .icns file."""
    if data[:4] != b"icns" or struct.unpack_from(">I", data, 4)[0] != len(data):
        raise ValueError("not an icns file")
    out, pos = [], 8
    while pos < len(data):
        kind, length = data[pos:pos + 4], struct.unpack_from(">I", data, pos + 4)[0]
        out.append((kind, data[pos + 8:pos + length]))
        pos += length
    return out


def same_pixels(a: bytes, b: bytes) -> bool:
    """True when two PNGs decode to the same pixels (encoders may differ byte-wise)."""
    _app, _QBuffer, _QByteArray, _QIODevice, _Qt, QImage, _QPainter, _QSvgRenderer = _qt()
    ia, ib = QImage.fromData(a), QImage.fromData(b)
    if ia.isNull() or ib.isNull():
        return False
    fmt = QImage.Format.Format_ARGB32
    return ia.convertToFormat(fmt) == ib.convertToFormat(fmt)


def _up_to_date(target: Path, data: bytes, what: str) -> bool:
    if not target.exists():
        return False
    have = target.read_bytes()
    if have == data:
        return True
    try:
        if what == "ico":
            pairs = list(zip(ico_entries(have), ico_entries(data)))
            return len(pairs) == len(ico_entries(data)) == len(ico_entries(have)) and all(
                x[0] == y[0] and same_pixels(x[1], y[1]) for x, y in pairs)
        if what == "icns":
            mine, want = icns_entries(have), icns_entries(data)
            return len(mine) == len(want) and all(
                x[0] == y[0] and same_pixels(x[1], y[1]) for x, y in zip(mine, want))
        return same_pixels(have, data)
    except (ValueError, struct.error):
        return False


def outputs() -> dict[Path, tuple[Path, str]]:
    """Every generated file → (its SVG source, what to make)."""
    plan: dict[Path, tuple[Path, str]] = {}
    for svg in sorted(SRC.glob("*.svg")):
        for size in SIZES:
            plan[OUT / f"{svg.stem}-{size}.png"] = (svg, f"png:{size}")
    app = SRC / "app.svg"
    plan[OUT / "app.ico"] = (app, "ico")
    plan[OUT / "app.icns"] = (app, "icns")
    return plan


def build(check: bool = False) -> int:
    cache: dict[tuple[Path, int], bytes] = {}

    def png(svg: Path, size: int) -> bytes:
        if (svg, size) not in cache:
            cache[(svg, size)] = render_png(svg, size)
        return cache[(svg, size)]

    stale = []
    for target, (svg, what) in outputs().items():
        if what.startswith("png:"):
            data = png(svg, int(what[4:]))
        elif what == "ico":
            data = ico_bytes({s: png(svg, s) for s in ICO_SIZES})
        else:
            data = icns_bytes({s: png(svg, s) for _k, s in ICNS_TYPES})
        if _up_to_date(target, data, what):
            continue
        if check:
            stale.append(target.name)
        else:
            target.write_bytes(data)
    if check and stale:
        print("stale or missing icon files (run build_icons.py):", ", ".join(stale), file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only verify the generated files")
    args = parser.parse_args(argv)
    return build(check=args.check)


if __name__ == "__main__":
    raise SystemExit(main())
