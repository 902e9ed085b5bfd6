"""The Linux package for real: build the PyInstaller bundle and the .deb, install it with dpkg,
smoke-test the installed /usr/bin/linda-desktop (simulator link, restart, connected without a
QR), remove it with dpkg -r, and check that the user's data and login entry are still there.

Gated: it installs a package system-wide (root, dpkg) and takes about a minute, so it runs
only with LINDA_TEST_INSTALLERS=1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "linda-desktop"

pytestmark = [
    pytest.mark.skipif(os.environ.get("LINDA_TEST_INSTALLERS") != "1",
                       reason="builds and installs the .deb system-wide: set LINDA_TEST_INSTALLERS=1"),
    pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("dpkg-deb") is None,
                       reason="needs Debian/Ubuntu (dpkg)"),
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.timeout(900),
]


def installed() -> bool:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", PACKAGE], capture_output=True, text=True)
    return "install ok installed" in out.stdout


def test_deb_installs_runs_and_removes_leaving_user_data(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("dpkg -i needs root")
    if installed():
        pytest.skip("linda-desktop is already installed on this machine; not touching it")
    sys.path.insert(0, str(REPO / "installers"))
    sys.path.insert(0, str(REPO / "installers" / "linux"))
    import build_deb
    import build_release
    from smoke import run_smoke

    started = time.monotonic()
    bundle = build_release.build_bundle(tmp_path / "dist", tmp_path / "work")
    deb = build_deb.build(bundle, tmp_path / "dist", fast=True)
    built = time.monotonic()
    info = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends", "Recommends"], capture_output=True,
                          text=True, check=True).stdout
    assert "libxcb-cursor0" in info and "libegl1" in info and "Recommends: chromium" in info

    subprocess.run(["dpkg", "-i", str(deb)], check=True, capture_output=True)
    config_home = tmp_path / "config"
    try:
        assert installed()
        exe = Path("/usr/bin/linda-desktop")
        assert exe.is_symlink() and os.path.realpath(exe) == "/opt/linda-desktop/linda-desktop"
        subprocess.run(["desktop-file-validate", "/usr/share/applications/linda-desktop.desktop"], check=True)
        for size in (16, 32, 48, 256):
            assert Path(f"/usr/share/icons/hicolor/{size}x{size}/apps/linda-desktop.png").is_file()

        result = run_smoke([str(exe)], tmp_path / "smoke", browser=os.environ.get("LINDA_BROWSER"))
        assert result.restart_states[-1] == "connected"
        enabled = subprocess.run([str(exe), "autostart", "enable"], capture_output=True, text=True,
                                 env={**os.environ, "XDG_CONFIG_HOME": str(config_home)})
        assert enabled.returncode == 0, enabled.stderr
    finally:
        subprocess.run(["dpkg", "-r", PACKAGE], check=True, capture_output=True)
    finished = time.monotonic()

    assert not installed()
    assert not Path("/opt/linda-desktop").exists() and not Path("/usr/bin/linda-desktop").exists()
    assert not Path("/usr/share/applications/linda-desktop.desktop").exists()
    # The user's session, backups, state and login entry are untouched by the removal.
    data = tmp_path / "smoke" / "data"
    assert (data / "profile").is_dir()
    assert any((data / "backups").iterdir())
    assert (data / "state" / "session-state.json").is_file()
    entry = (config_home / "autostart" / "linda-desktop.desktop").read_text()
    # ... and the login entry is inert while the program is gone (TryExec names the missing binary).
    assert "TryExec=/opt/linda-desktop/linda-desktop" in entry
    # Purging (dpkg -r keeps the package's own postrm until then) leaves the user's files alone too.
    subprocess.run(["dpkg", "--purge", PACKAGE], check=True, capture_output=True)
    known = subprocess.run(["dpkg-query", "-W", PACKAGE], capture_output=True, text=True)
    assert known.returncode != 0
    assert any((data / "backups").iterdir()) and (config_home / "autostart" / "linda-desktop.desktop").is_file()
    print(f"\nbuild {built - started:.0f}s, install+smoke+remove {finished - built:.0f}s, "
          f"deb {deb.stat().st_size / 1e6:.0f} MB")
