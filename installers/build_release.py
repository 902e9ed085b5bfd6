"""Build what this OS can build, then smoke-test the frozen app.

    python installers/build_release.py                # bundle + installer + smoke test
    python installers/build_release.py --no-smoke     # build only
    python installers/build_release.py --smoke-only   # test an existing dist/ bundle

- every OS: the PyInstaller one-dir bundle (installers/pyinstaller/linda_desktop.spec)
- Linux:    dist/linda-desktop_<version>_<arch>.deb (installers/linux/build_deb.py)
- Windows:  dist/LindaDesktop-<version>-setup.exe (Inno Setup's ISCC, if installed)
- macOS:    dist/Linda Desktop.app and dist/LindaDesktop-<version>.dmg (installers/macos/build_dmg.sh)

The smoke test (installers/smoke.py) runs the frozen executable: ``--version``, ``doctor``, and
``run --json`` against the WhatsApp Web simulator: link, restart, ``connected`` with no QR.
Needs a checkout (the simulator lives in tests/) and a Chromium-family browser.
Prints a JSON summary (paths, sizes in bytes, build and smoke seconds) on the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "installers" / "pyinstaller"))

import bundle_info as info  # noqa: E402

from linda_desktop import __version__  # noqa: E402

SPEC = REPO / "installers" / "pyinstaller" / "linda_desktop.spec"
IS_WIN = sys.platform == "win32"
IS_MAC = sys.platform == "darwin"


def tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def fetch_wajs() -> None:
    """The bot API's pinned in-page library, from the npm registry (never committed)."""
    npm = shutil.which("npm")
    if npm is None:
        print("WARNING: npm not found: the bundle ships without wa-js (bot API sends answer not_ready)")
        return
    subprocess.run([npm, "ci", "--prefix", str(REPO / "linda_desktop" / "browser" / "wajs"), "--ignore-scripts",
                    "--no-audit", "--no-fund"], check=True, cwd=REPO)


def build_bundle(dist: Path, work: Path) -> Path:
    fetch_wajs()
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
           "--distpath", str(dist), "--workpath", str(work), str(SPEC)]
    print("build:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)
    return bundle_dir(dist)


def bundle_dir(dist: Path) -> Path:
    return dist / info.DIST_DIR_NAME


def frozen_cli(dist: Path) -> Path:
    """The executable the smoke test runs (the console one on Windows)."""
    if IS_MAC:
        return dist / info.BUNDLE_NAME / "Contents" / "MacOS" / info.CLI_NAME
    return bundle_dir(dist) / (f"{info.CLI_NAME}.exe" if IS_WIN else info.CLI_NAME)


def find_iscc() -> str | None:
    found = shutil.which("iscc") or shutil.which("ISCC")
    if found:
        return found
    for root in (os.environ.get("ProgramFiles(x86)"), os.environ.get("ProgramFiles"),
                 os.environ.get("LOCALAPPDATA") and str(Path(os.environ["LOCALAPPDATA"], "Programs"))):
        if root and Path(root, "Inno Setup 6", "ISCC.exe").is_file():
            return str(Path(root, "Inno Setup 6", "ISCC.exe"))
    return None


def build_installer(dist: Path, *, fast: bool) -> Path | None:
    if IS_WIN:
        iscc = find_iscc()
        if iscc is None:
            print("build: Inno Setup (ISCC.exe) not found: no setup.exe (choco install innosetup)", flush=True)
            return None
        iss = REPO / "installers" / "windows" / "linda-desktop.iss"
        subprocess.run([iscc, f"/DAppVersion={__version__}", f"/DBundleDir={bundle_dir(dist)}",
                        f"/DRepoDir={REPO}", f"/O{dist}", str(iss)], check=True)
        return dist / f"LindaDesktop-{__version__}-setup.exe"
    if IS_MAC:
        subprocess.run(["bash", str(REPO / "installers" / "macos" / "build_dmg.sh"), str(dist)], check=True)
        return dist / f"LindaDesktop-{__version__}.dmg"
    if shutil.which("dpkg-deb") is None:
        print("build: dpkg-deb not found: no .deb", flush=True)
        return None
    sys.path.insert(0, str(REPO / "installers" / "linux"))
    import build_deb

    return build_deb.build(bundle_dir(dist), dist, __version__, fast=fast)


def smoke(exe: Path, browser: str | None) -> dict:
    """Run installers/smoke.py on ``exe`` in its own process (it sets up a keyring session on Linux)."""
    cmd = [sys.executable, str(REPO / "installers" / "smoke.py"), str(exe), "--json"]
    if browser:
        cmd += ["--browser", browser]
    out = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    print(out.stdout, end="", flush=True)
    if out.returncode != 0:
        raise SystemExit(f"smoke test failed ({out.returncode})")
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build and smoke-test Linda Desktop's installers")
    parser.add_argument("--dist", type=Path, default=REPO / "dist")
    parser.add_argument("--work", type=Path, default=REPO / "build" / "pyinstaller")
    parser.add_argument("--no-smoke", action="store_true")
    parser.add_argument("--smoke-only", action="store_true")
    parser.add_argument("--no-installer", action="store_true", help="the bundle only")
    parser.add_argument("--fast", action="store_true", help="quick compression (local tests)")
    parser.add_argument("--browser", default=os.environ.get("LINDA_BROWSER"),
                        help="browser for the smoke test (default: discovery, as users get)")
    args = parser.parse_args(argv)
    summary: dict = {"version": __version__, "platform": sys.platform}
    dist = args.dist.resolve()
    if not args.smoke_only:
        started = time.monotonic()
        bundle = build_bundle(dist, args.work.resolve())
        summary["bundle_seconds"] = round(time.monotonic() - started, 1)
        summary["bundle"] = str(bundle)
        summary["bundle_bytes"] = tree_size(bundle)
        if not args.no_installer:
            started = time.monotonic()
            installer = build_installer(dist, fast=args.fast)
            if installer is not None:
                summary["installer_seconds"] = round(time.monotonic() - started, 1)
                summary["installer"] = str(installer)
                summary["installer_bytes"] = tree_size(installer)
    if not args.no_smoke:
        started = time.monotonic()
        summary["smoke"] = smoke(frozen_cli(dist), args.browser)
        summary["smoke_seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
