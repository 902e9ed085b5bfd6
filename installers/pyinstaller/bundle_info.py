"""Facts about the frozen bundle shared by the spec, the installers and their tests (no PyInstaller import).

Kept apart from the .spec so the macOS Info.plist and the Windows version resource can be
checked on any OS (tests/installers/test_bundle_info.py).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from linda_desktop import APP_ID, APP_NAME, __version__  # noqa: E402
from linda_desktop.system.autostart import BUNDLE_ID  # noqa: E402

# Executable names. Windows gets two: the tray (no console window) and the CLI (console).
GUI_NAME = "LindaDesktop"          # Windows: LindaDesktop.exe (Start menu, login start)
CLI_NAME = APP_ID                  # linda-desktop(.exe): the command line; the only one on Linux/macOS
BUNDLE_NAME = f"{APP_NAME}.app"    # macOS
DIST_DIR_NAME = APP_ID             # dist/linda-desktop/ (one-dir bundle)
PUBLISHER = "Linda Desktop engineers"
COPYRIGHT = "Copyright (c) Linda Desktop engineers. MIT License."
DESCRIPTION = "Keeps your WhatsApp Web session alive across every restart"


def version_tuple(version: str = __version__) -> tuple[int, int, int, int]:
    """``"0.1.0"`` -> ``(0, 1, 0, 0)`` (Windows wants four numbers; suffixes like ``rc1`` dropped)."""
    leading = re.match(r"\d+(?:\.\d+)*", version)
    numbers = [int(n) for n in leading.group(0).split(".")[:4]] if leading else []
    return tuple((numbers + [0, 0, 0, 0])[:4])  # type: ignore[return-value]


def mac_info_plist(version: str = __version__) -> dict:
    """Info.plist keys PyInstaller merges into the .app. LSUIElement: menu bar only, no Dock icon."""
    return {
        "CFBundleName": APP_NAME,
        "CFBundleDisplayName": APP_NAME,
        "CFBundleIdentifier": BUNDLE_ID,
        "CFBundleShortVersionString": version,
        "CFBundleVersion": version,
        "CFBundleExecutable": CLI_NAME,
        "CFBundlePackageType": "APPL",
        "LSUIElement": True,
        "LSMinimumSystemVersion": "11.0",
        "NSHighResolutionCapable": True,
        "NSRequiresAquaSystemAppearance": False,
        "NSHumanReadableCopyright": COPYRIGHT,
        "LSApplicationCategoryType": "public.app-category.social-networking",
    }


def windows_version_strings(version: str = __version__) -> dict[str, str]:
    """StringFileInfo of the Windows version resource (Explorer → Properties → Details)."""
    dotted = ".".join(map(str, version_tuple(version)))
    return {
        "CompanyName": PUBLISHER,
        "FileDescription": APP_NAME,
        "FileVersion": dotted,
        "InternalName": APP_ID,
        "LegalCopyright": COPYRIGHT,
        "OriginalFilename": f"{GUI_NAME}.exe",
        "ProductName": APP_NAME,
        "ProductVersion": version,
        "Comments": DESCRIPTION,
    }


def windows_version_info(version: str = __version__, original_filename: str | None = None):  # pragma: no cover - Windows
    """The VSVersionInfo for EXE(version=...). Imports PyInstaller's Windows helpers (needs pefile)."""
    from PyInstaller.utils.win32 import versioninfo as vi

    strings = windows_version_strings(version)
    if original_filename:
        strings["OriginalFilename"] = original_filename
    numbers = version_tuple(version)
    return vi.VSVersionInfo(
        ffi=vi.FixedFileInfo(filevers=numbers, prodvers=numbers, mask=0x3F, flags=0x0, OS=0x40004,
                             fileType=0x1, subtype=0x0, date=(0, 0)),
        kids=[
            vi.StringFileInfo([vi.StringTable("040904B0", [vi.StringStruct(k, v) for k, v in strings.items()])]),
            vi.VarFileInfo([vi.VarStruct("Translation", [0x0409, 1200])]),
        ],
    )
