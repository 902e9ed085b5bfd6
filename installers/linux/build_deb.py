"""Build the Debian/Ubuntu package from the PyInstaller one-dir bundle, with dpkg-deb only.

    python installers/linux/build_deb.py --bundle dist/linda-desktop --out dist

Layout of the package:
    /opt/linda-desktop/                         the bundle (executable + _internal/)
    /usr/bin/linda-desktop                      symlink to it (the bootloader follows it)
    /usr/share/applications/linda-desktop.desktop     launcher (menu entry)
    /usr/share/icons/hicolor/<N>x<N>/apps/linda-desktop.png, scalable/apps/linda-desktop.svg
    /usr/share/doc/linda-desktop/copyright

Depends is computed: every shared library the bundle's ELF files load that PyInstaller did not
bundle (it leaves out glibc, libGL/libEGL, libxcb, Wayland, …) is mapped to its Debian package
with `dpkg -S`, plus libc6 (>= the newest GLIBC_x.y symbol version used) and a floor of packages
the Qt xcb platform plugin needs at run time. Recommends: a Chromium-family browser.
User data (~/.local/share/LindaDesktop, ~/.local/state/LindaDesktop, backups) is never touched
by installing, upgrading or removing (even `dpkg --purge`): packages do not own home folders.
"""

from __future__ import annotations

import argparse
import configparser
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from linda_desktop import APP_ID, APP_NAME, __version__  # noqa: E402

INSTALL_DIR = Path("opt") / APP_ID
MAINTAINER = os.environ.get("LINDA_DEB_MAINTAINER", "Linda Desktop engineers <linda-desktop@localhost>")
# Needed at run time even where the build machine bundled a copy (or lacked one): Qt's xcb
# platform plugin (libxcb-cursor0 since Qt 6.5), EGL/GL, keyboard maps, fonts.
DEPENDS_FLOOR = ["libegl1", "libgl1", "libxcb1", "libxcb-cursor0", "libxkbcommon-x11-0", "libfontconfig1",
                 "libdbus-1-3"]
RECOMMENDS = ["chromium | google-chrome-stable | microsoft-edge-stable | chromium-browser"]
SUGGESTS = ["gnome-shell-extension-appindicator", "gnome-keyring"]
ICON_SIZES = (16, 22, 32, 48, 64, 128, 256)
DESCRIPTION = f"""Keeps your WhatsApp Web session alive across every restart
 {APP_NAME} is a tray application that keeps one WhatsApp linked-device session
 alive in a headless Chromium-family browser, with encrypted automatic backups
 (key in the desktop keyring) and automatic recovery after crashes, power loss
 and profile damage. It shows a QR code only when the phone removed the device.
 .
 It uses an installed Chromium, Google Chrome or Microsoft Edge; without one it
 downloads Playwright's Chromium into your data folder on first start."""

POSTINST = """#!/bin/sh
set -e
if [ "$1" = "configure" ]; then
  command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q /usr/share/applications || true
  command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t -f /usr/share/icons/hicolor || true
fi
exit 0
"""
# Removing the package removes the program only. Each user's data folder, backups, keyring key
# and login entry stay; the login entry has TryExec, so it is skipped while the app is gone.
POSTRM = """#!/bin/sh
set -e
case "$1" in
  remove|purge)
    command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q /usr/share/applications || true
    command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t -f /usr/share/icons/hicolor || true
    ;;
esac
exit 0
"""


def run(*argv: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, text=True, capture_output=True, **kw)


def is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"\x7fELF"
    except OSError:
        return False


def elf_files(bundle: Path) -> list[Path]:
    return [p for p in bundle.rglob("*") if p.is_file() and not p.is_symlink() and is_elf(p)]


def max_glibc(files: list[Path]) -> str | None:
    best: tuple[int, ...] = ()
    for path in files:
        for major, minor in re.findall(rb"GLIBC_(\d+)\.(\d+)", path.read_bytes()):
            best = max(best, (int(major), int(minor)))
    return ".".join(map(str, best)) if best else None


def system_libraries(bundle: Path, files: list[Path]) -> tuple[set[str], set[str]]:
    """(system library paths the bundle loads, sonames nobody could find). Libraries that exist
    inside the bundle under the same name do not count: at run time the bundle's copy is used."""
    bundled = {p.name for p in bundle.rglob("*.so*")}
    found: set[str] = set()
    missing: set[str] = set()
    for path in files:
        out = subprocess.run(["ldd", str(path)], capture_output=True, text=True).stdout
        for line in out.splitlines():
            match = re.match(r"\s*(\S+) => (\S+)", line)
            if not match:
                continue
            name, where = match.groups()
            if name in bundled:
                continue
            if where == "not":
                missing.add(name)
            elif not where.startswith(str(bundle)):
                found.add(os.path.realpath(where))
    return found, missing


def packages_of(paths: set[str]) -> set[str]:
    packages: set[str] = set()
    for path in sorted(paths):
        out = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
        if out.returncode != 0:  # merged /usr: dpkg knows /lib/… where ldd says /usr/lib/…
            alt = path.replace("/usr/lib/", "/lib/", 1) if path.startswith("/usr/lib/") else "/usr" + path
            out = subprocess.run(["dpkg", "-S", alt], capture_output=True, text=True)
        if out.returncode == 0:
            packages.add(out.stdout.split(":", 1)[0].strip())
    return packages


def compute_depends(bundle: Path) -> tuple[list[str], set[str]]:
    files = elf_files(bundle)
    paths, missing = system_libraries(bundle, files)
    packages = packages_of(paths) | set(DEPENDS_FLOOR)
    packages.discard("libc6")
    depends = sorted(packages)
    glibc = max_glibc(files)
    depends.insert(0, f"libc6 (>= {glibc})" if glibc else "libc6")
    return depends, missing


def launcher_entry() -> str:
    """The menu entry: the packaged .desktop template plus what a launcher wants."""
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(REPO / "linda_desktop" / "resources" / f"{APP_ID}.desktop", encoding="utf-8")
    entry = parser["Desktop Entry"]
    entry["Exec"] = APP_ID
    entry["TryExec"] = APP_ID
    entry["Icon"] = APP_ID
    entry["StartupWMClass"] = APP_NAME
    buf = io.StringIO()
    parser.write(buf, space_around_delimiters=False)
    return buf.getvalue().rstrip("\n") + "\n"


def copy_bundle(bundle: Path, dest: Path) -> None:
    shutil.copytree(bundle, dest, symlinks=True)
    for path in [dest, *dest.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        if path.is_dir() or mode & 0o111:
            os.chmod(path, 0o755)
        else:
            os.chmod(path, 0o644)


def build(bundle: Path, out_dir: Path, version: str = __version__, arch: str | None = None,
          fast: bool = False) -> Path:
    """The .deb. ``fast``: zstd level 3 (1 s, ~125 MB; dpkg >= 1.21.18: Debian 12, Ubuntu 22.04)
    instead of xz (about 2 min on 2 cores, ~90 MB, every dpkg) - for local tests."""
    bundle = bundle.resolve()
    exe = bundle / APP_ID
    if not exe.is_file():
        raise SystemExit(f"no {exe}: build the PyInstaller bundle first")
    arch = arch or run("dpkg", "--print-architecture").stdout.strip()
    root = out_dir / f"deb-root-{arch}"
    if root.exists():
        shutil.rmtree(root)
    copy_bundle(bundle, root / INSTALL_DIR)
    (root / "usr" / "bin").mkdir(parents=True)
    os.symlink(f"/{INSTALL_DIR}/{APP_ID}", root / "usr" / "bin" / APP_ID)

    apps = root / "usr" / "share" / "applications"
    apps.mkdir(parents=True)
    (apps / f"{APP_ID}.desktop").write_text(launcher_entry(), encoding="utf-8")
    icons = REPO / "linda_desktop" / "resources" / "icons"
    hicolor = root / "usr" / "share" / "icons" / "hicolor"
    for size in ICON_SIZES:
        src = icons / f"app-{size}.png"
        if src.is_file():
            target = hicolor / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
    svg = icons / "src" / "app.svg"
    if svg.is_file():
        target = hicolor / "scalable" / "apps" / f"{APP_ID}.svg"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(svg, target)
    doc = root / "usr" / "share" / "doc" / APP_ID
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        f"Upstream-Name: {APP_ID}\n\nFiles: *\nCopyright: Linda Desktop engineers\nLicense: MIT\n"
        "\nFiles: opt/linda-desktop/_internal/*\nComment: third-party components bundled by PyInstaller\n"
        " (Python, Qt/PySide6 LGPL-3, Playwright Apache-2.0 with Node.js MIT, cryptography, keyring);\n"
        " their licence files are inside the bundle.\n", encoding="utf-8")
    for path in (root / "usr").rglob("*"):
        if not path.is_symlink():
            os.chmod(path, 0o755 if path.is_dir() else 0o644)

    depends, missing = compute_depends(bundle)
    if missing:
        print(f"build_deb: note: libraries no one could resolve (optional plugins): {sorted(missing)}")
    size_kb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink()) // 1024
    control = {
        "Package": APP_ID,
        "Version": version,
        "Section": "net",
        "Priority": "optional",
        "Architecture": arch,
        "Maintainer": MAINTAINER,
        "Installed-Size": str(size_kb),
        "Depends": ", ".join(depends),
        "Recommends": ", ".join(RECOMMENDS),
        "Suggests": ", ".join(SUGGESTS),
        "Description": DESCRIPTION,
    }
    debian = root / "DEBIAN"
    debian.mkdir()
    (debian / "control").write_text("".join(f"{k}: {v}\n" for k, v in control.items()), encoding="utf-8")
    for name, text in (("postinst", POSTINST), ("postrm", POSTRM)):
        (debian / name).write_text(text, encoding="utf-8")
        os.chmod(debian / name, 0o755)
    os.chmod(debian, 0o755)

    out_dir.mkdir(parents=True, exist_ok=True)
    deb = out_dir / f"{APP_ID}_{version}_{arch}.deb"
    # --root-owner-group: files owned by root in the package whoever builds it; xz keeps it small.
    compression = ["-Zzstd", "-z3"] if fast else ["-Zxz"]
    run("dpkg-deb", "--root-owner-group", *compression, "--build", str(root), str(deb))
    shutil.rmtree(root)
    return deb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=REPO / "dist" / APP_ID)
    parser.add_argument("--out", type=Path, default=REPO / "dist")
    parser.add_argument("--version", default=__version__)
    parser.add_argument("--fast", action="store_true", help="zstd instead of xz (quick local builds)")
    args = parser.parse_args(argv)
    deb = build(args.bundle, args.out, args.version, fast=args.fast)
    print(deb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
