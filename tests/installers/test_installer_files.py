"""The Windows and macOS installer pieces that can be checked on any OS.

Neither Inno Setup's compiler nor macOS tools run here; these tests hold the installer files to
the values the app itself uses (mutex name, Run value, bundle id), so the two cannot drift apart,
and check the plist with plistlib and the shell scripts with bash -n (and shellcheck if present).
"""

from __future__ import annotations

import plistlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from linda_desktop import APP_NAME, __version__
from linda_desktop.system import autostart, single_instance

REPO = Path(__file__).resolve().parents[2]
ISS = REPO / "installers" / "windows" / "linda-desktop.iss"
sys.path.insert(0, str(REPO / "installers" / "pyinstaller"))

import bundle_info  # noqa: E402


def iss_sections() -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = ""
    for raw in ISS.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        match = re.fullmatch(r"\[(\w+)\]", line)
        if match:
            current = match.group(1)
            sections.setdefault(current, [])
        else:
            sections.setdefault(current, []).append(line)
    return sections


def iss_defines() -> dict[str, str]:
    return dict(re.findall(r'#define (\w+) "([^"]*)"', ISS.read_text(encoding="utf-8")))


def setup_values() -> dict[str, str]:
    return dict(line.split("=", 1) for line in iss_sections()["Setup"])


def test_inno_setup_is_per_user_and_guards_the_running_app():
    setup = setup_values()
    assert setup["PrivilegesRequired"] == "lowest"
    assert setup["AppMutex"] == single_instance.MUTEX_NAME
    assert setup["DefaultDirName"].startswith("{localappdata}\\Programs")
    assert set(iss_sections()) >= {"Setup", "Tasks", "Files", "Icons", "Registry", "Run", "Code"}


def test_inno_setup_start_at_login_writes_exactly_what_the_app_writes():
    defines = iss_defines()
    registry = " ".join(iss_sections()["Registry"])
    assert defines["RunKey"] == autostart.RUN_KEY and defines["ApprovedKey"] == autostart.STARTUP_APPROVED_KEY
    assert defines["RunValue"] == autostart.RUN_VALUE_NAME == APP_NAME
    # Inno writes """{app}\X.exe"" --background": the same quoting the app's WindowsRunKeyAutostart uses.
    exe = "C:\\Users\\a b\\AppData\\Local\\Programs\\Linda Desktop\\" + defines["AppExe"]
    app_line = autostart.WindowsRunKeyAutostart([exe, "--background"], winreg=object()).command_line
    match = re.search(r'ValueData: "(.*?)"; Tasks: autostart', registry)
    assert match is not None
    inno_line = (match.group(1).replace('""', '"').replace("{app}", exe.rsplit("\\", 1)[0])
                 .replace("{#AppExe}", defines["AppExe"]))
    assert inno_line == app_line
    assert "Flags: uninsdeletevalue" in registry
    code = "\n".join(iss_sections()["Code"])
    assert "RegDeleteValue(HKEY_CURRENT_USER, '{#RunKey}', '{#RunValue}')" in code
    assert "MB_DEFBUTTON2, IDNO) = IDYES" in code  # data is removed only on an explicit Yes


def test_inno_setup_exe_names_match_the_spec_and_data_folder_matches_platformdirs():
    defines = iss_defines()
    assert defines["AppExe"] == f"{bundle_info.GUI_NAME}.exe"
    assert defines["CliExe"] == f"{bundle_info.CLI_NAME}.exe"
    from linda_desktop.base.paths import APP_AUTHOR, APP_DIR_NAME

    assert defines["DataDir"] == f"{{localappdata}}\\{APP_AUTHOR}\\{APP_DIR_NAME}"


def test_macos_info_plist_is_a_valid_menu_bar_only_app():
    info = bundle_info.mac_info_plist()
    loaded = plistlib.loads(plistlib.dumps(info, fmt=plistlib.FMT_XML))
    assert loaded["LSUIElement"] is True
    assert loaded["CFBundleIdentifier"] == autostart.BUNDLE_ID
    assert loaded["CFBundleShortVersionString"] == __version__
    assert loaded["CFBundleExecutable"] == bundle_info.CLI_NAME
    entitlements = plistlib.loads((REPO / "installers" / "macos" / "entitlements.plist").read_bytes())
    assert entitlements["com.apple.security.cs.allow-jit"] is True  # Playwright's node needs it


def test_windows_version_strings_carry_four_part_version():
    strings = bundle_info.windows_version_strings("1.2.3rc1")
    assert strings["FileVersion"] == "1.2.3.0" and strings["ProductVersion"] == "1.2.3rc1"
    assert bundle_info.version_tuple("2.0") == (2, 0, 0, 0)


@pytest.mark.parametrize("script", ["installers/macos/build_dmg.sh"])
def test_shell_scripts_parse(script):
    subprocess.run(["bash", "-n", str(REPO / script)], check=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", str(REPO / script)], check=True)


def test_release_workflow_builds_all_three_oses():
    text = (REPO / ".github" / "workflows" / "release.yml").read_text(encoding="utf-8")
    for os_name in ("windows-", "macos-", "ubuntu-"):
        assert os_name in text
    assert "installers/build_release.py" in text and "upload-artifact" in text
    try:
        import yaml  # type: ignore[import-not-found]
    except ImportError:
        return
    assert "jobs" in yaml.safe_load(text)
