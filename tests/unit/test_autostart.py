"""Autostart: real files for the XDG and LaunchAgent strategies, a fake registry for Windows.

The Exec quoting is checked against an independent decoder written from the Desktop Entry
spec, against GLib's real parser (``gio launch`` runs the entry) and ``desktop-file-validate``.
"""

from __future__ import annotations

import configparser
import json
import os
import plistlib
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from linda_desktop import resources
from linda_desktop.base.errors import StorageError
from linda_desktop.system import launch
from linda_desktop.system.autostart import (
    RUN_KEY,
    STARTUP_APPROVED_KEY,
    LaunchAgentAutostart,
    WindowsRunKeyAutostart,
    XdgAutostart,
    autostart_for_platform,
    exec_line,
)

NASTY_ARGS = [
    "/opt/Linda Desktop/bin/linda",
    "plain",
    'say "hi"',
    "cost $HOME `id`",
    "back\\slash",
    "100%",
    "semi;colon & pipe | tilde ~ (paren) #hash *?",
    "it's",
    "",
    "tab\there",
]


def read_desktop(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path, encoding="utf-8")
    assert parser.sections() == ["Desktop Entry"]
    return dict(parser["Desktop Entry"])


def decode_exec(value: str) -> list[str]:
    """Desktop Entry spec decoder (independent of the code under test): undo the string
    escapes, then split on unquoted spaces, undo quoting, then %% -> %."""
    unescaped, i = [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            escapes = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
            unescaped.append(escapes.get(value[i + 1], "\\" + value[i + 1]))
            i += 2
        else:
            unescaped.append(ch)
            i += 1
    text = "".join(unescaped)
    args: list[str] = []
    current: list[str] | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == " ":
            if current is not None:
                args.append("".join(current))
                current = None
            i += 1
        elif ch == '"':
            current = current if current is not None else []
            i += 1
            while text[i] != '"':
                if text[i] == "\\" and text[i + 1] in '"`$\\':
                    i += 1
                current.append(text[i])
                i += 1
            i += 1
        else:
            assert ch not in "\"'\\><~|&;$*?#()`\t\n", f"reserved {ch!r} outside quotes in {text!r}"
            current = current if current is not None else []
            current.append(ch)
            i += 1
    if current is not None:
        args.append("".join(current))
    return [arg.replace("%%", "%") for arg in args]


# --------------------------------------------------------------------------- Linux / XDG


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return home


def test_xdg_enable_writes_exact_entry_and_disable_removes_it(config_home: Path) -> None:
    argv = ["/usr/bin/python3", "-m", "linda_desktop", "--data-dir", "/data/My Linda", "--background"]
    auto = XdgAutostart(argv)
    target = config_home / "autostart" / "linda-desktop.desktop"
    assert auto.path == target
    assert not auto.is_enabled()

    auto.enable()
    assert auto.is_enabled()
    assert read_desktop(target) == {
        "Type": "Application",
        "Version": "1.0",
        "Name": "Linda Desktop",
        "GenericName": "WhatsApp session keeper",
        "Comment": "Keeps your WhatsApp Web session alive across every restart",
        "Exec": '/usr/bin/python3 -m linda_desktop --data-dir "/data/My Linda" --background',
        "TryExec": "/usr/bin/python3",
        "Icon": "linda-desktop",
        "Terminal": "false",
        "StartupNotify": "false",
        "X-GNOME-Autostart-enabled": "true",
    }
    text = target.read_text(encoding="utf-8")
    assert text.startswith("[Desktop Entry]\nType=Application\n")
    assert " = " not in text and text.endswith("true\n")
    assert str(target) in auto.describe()

    auto.enable()  # idempotent
    assert auto.is_enabled()
    assert sorted(p.name for p in target.parent.iterdir()) == ["linda-desktop.desktop"]

    auto.disable()
    assert not target.exists() and not auto.is_enabled()
    auto.disable()  # absent is fine
    assert not auto.is_enabled()


def test_xdg_defaults_to_dot_config_when_xdg_config_home_unset_or_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    auto = XdgAutostart(["/bin/app"])
    auto.enable()
    assert (tmp_path / ".config" / "autostart" / "linda-desktop.desktop").is_file()
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")  # the spec says: ignore relative values
    assert auto.path == tmp_path / ".config" / "autostart" / "linda-desktop.desktop"
    assert auto.is_enabled()


def test_xdg_entry_for_another_command_or_switched_off_is_not_enabled(config_home: Path) -> None:
    ours = XdgAutostart(["/new/place/linda-desktop", "--background"])
    XdgAutostart(["/old/place/linda-desktop", "--background"]).enable()
    assert not ours.is_enabled()
    ours.enable()  # rewrites the stale entry
    assert ours.is_enabled()

    for key, value in (("Hidden", "true"), ("X-GNOME-Autostart-enabled", "false")):
        ours.enable()
        text = ours.path.read_text(encoding="utf-8").replace("X-GNOME-Autostart-enabled=true\n", "")
        ours.path.write_text(text + f"{key}={value}\n", encoding="utf-8")
        assert not ours.is_enabled(), key

    ours.path.write_text("not a desktop file\x00", encoding="utf-8")
    assert not ours.is_enabled()
    ours.enable()
    assert ours.is_enabled()


def test_exec_quoting_round_trips_through_the_spec_decoder() -> None:
    line = exec_line(NASTY_ARGS)
    assert "\n" not in line and "\t" not in line
    assert decode_exec(line) == NASTY_ARGS
    assert exec_line(["/usr/bin/linda", "--background"]) == "/usr/bin/linda --background"
    assert exec_line(["/a b/c"]) == '"/a b/c"'
    # The spec's own example: a literal $ in a quoted argument is \\$ in the file.
    assert exec_line(["$x"]) == '"\\\\$x"'


def test_xdg_file_passes_desktop_file_validate(config_home: Path) -> None:
    validator = shutil.which("desktop-file-validate")
    if validator is None:
        pytest.skip("desktop-file-validate (desktop-file-utils) not installed")
    auto = XdgAutostart(NASTY_ARGS)
    auto.enable()
    for path in (auto.path, resources.path("linda-desktop.desktop")):
        result = subprocess.run([validator, str(path)], capture_output=True, text=True)
        assert result.returncode == 0 and result.stdout.strip() == "", (path, result.stdout, result.stderr)


def test_glib_launches_the_entry_with_exactly_our_argv(config_home: Path, tmp_path: Path) -> None:
    """A real desktop implementation (GLib's GDesktopAppInfo, as GNOME uses for autostart)
    parses our Exec line and runs it: the program must receive every argument unchanged."""
    gio = shutil.which("gio")
    if gio is None:
        pytest.skip("gio (libglib2.0-bin) not installed")
    folder = tmp_path / "odd $dir (1)"
    folder.mkdir()
    script = folder / "record 100%.py"
    out = tmp_path / "argv.json"
    script.write_text(
        "import json, sys\n"
        f"open({str(out)!r}, 'w').write(json.dumps(sys.argv[1:]))\n",
        encoding="utf-8",
    )
    args = NASTY_ARGS[1:]
    auto = XdgAutostart([sys.executable, str(script), *args])
    auto.enable()
    subprocess.run([gio, "launch", str(auto.path)], check=True, timeout=20, capture_output=True,
                   env={**os.environ, "DISPLAY": os.environ.get("DISPLAY", "")})
    deadline = time.monotonic() + 15
    while not out.exists() or not out.read_text():
        assert time.monotonic() < deadline, "the launched program never ran"
        time.sleep(0.05)
    assert json.loads(out.read_text()) == args


def test_template_is_packaged_and_describes_the_app() -> None:
    entry = read_desktop(resources.path("linda-desktop.desktop"))
    assert entry["Type"] == "Application" and entry["Name"] == "Linda Desktop"
    assert entry["Exec"] == "linda-desktop" and entry["Icon"] == "linda-desktop"


def test_xdg_enable_failure_is_a_typed_error(config_home: Path) -> None:
    config_home.mkdir(parents=True)
    (config_home / "autostart").write_text("a file where the folder should be")
    with pytest.raises(StorageError) as caught:
        XdgAutostart(["/bin/app"]).enable()
    assert "autostart" in str(caught.value) and caught.value.fix


# --------------------------------------------------------------------------- platform choice


def test_autostart_for_platform_picks_the_strategy_and_carries_the_data_dir(config_home: Path, tmp_path: Path) -> None:
    linux = autostart_for_platform(system="Linux", data_dir=str(tmp_path / "d"))
    assert isinstance(linux, XdgAutostart)
    assert linux.argv == launch.app_command(background=True, data_dir=str(tmp_path / "d"))
    assert linux.argv[-3:] == ["--data-dir", str(tmp_path / "d"), "--background"]

    mac = autostart_for_platform(system="Darwin",
                                 command=["/Applications/Linda Desktop.app/Contents/MacOS/Linda Desktop"])
    assert isinstance(mac, LaunchAgentAutostart)
    assert mac.argv == ["/Applications/Linda Desktop.app/Contents/MacOS/Linda Desktop", "--background"]

    win = autostart_for_platform(system="Windows", command=[r"C:\Program Files\Linda Desktop\Linda Desktop.exe"])
    assert isinstance(win, WindowsRunKeyAutostart)
    assert win.command_line == r'"C:\Program Files\Linda Desktop\Linda Desktop.exe" --background'


def test_relative_data_dir_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    argv = launch.app_command(data_dir="rel")
    assert argv[-2:] == ["--data-dir", str(tmp_path / "rel")]


def test_app_command_frozen_and_source(tmp_path: Path) -> None:
    assert launch.base_command(frozen=True, executable="/x/Linda Desktop") == ["/x/Linda Desktop"]
    command = launch.base_command(frozen=False, executable="/usr/bin/python3", windows=False)
    assert command == ["/usr/bin/python3", "-m", "linda_desktop"]
    (tmp_path / "python.exe").write_bytes(b"")
    (tmp_path / "pythonw.exe").write_bytes(b"")
    assert launch.base_command(frozen=False, executable=str(tmp_path / "python.exe"), windows=True) == [
        str(tmp_path / "pythonw.exe"), "-m", "linda_desktop"]
    (tmp_path / "pythonw.exe").unlink()
    command = launch.base_command(frozen=False, executable=str(tmp_path / "python.exe"), windows=True)
    assert command[0] == str(tmp_path / "python.exe")
    assert launch.app_command(background=True)[-1] == "--background"
    assert "--background" not in launch.app_command()


def test_the_source_command_really_starts_the_package(tmp_path: Path) -> None:
    """app_command() must name an interpreter that can import linda_desktop."""
    argv = launch.app_command()
    assert argv[1:] == ["-m", "linda_desktop"]
    probe = subprocess.run([argv[0], "-c", "import linda_desktop.system.launch"], capture_output=True, timeout=60)
    assert probe.returncode == 0, probe.stderr


# --------------------------------------------------------------------------- macOS


def test_launch_agent_plist_exact(tmp_path: Path) -> None:
    argv = ["/Applications/Linda Desktop.app/Contents/MacOS/Linda Desktop", "--background"]
    auto = LaunchAgentAutostart(argv, home=tmp_path)
    target = tmp_path / "Library" / "LaunchAgents" / "app.linda.desktop.plist"
    assert auto.path == target and not auto.is_enabled()

    auto.enable()
    auto.enable()  # idempotent
    with open(target, "rb") as handle:
        assert plistlib.load(handle) == {
            "Label": "app.linda.desktop",
            "ProgramArguments": argv,
            "RunAtLoad": True,
            "ProcessType": "Interactive",
            "LimitLoadToSessionType": "Aqua",
        }
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # launchd ignores group/world-writable agents
    assert auto.is_enabled()
    assert str(target) in auto.describe()

    assert not LaunchAgentAutostart(["/elsewhere/linda", "--background"], home=tmp_path).is_enabled()
    with open(target, "wb") as handle:
        plistlib.dump({**auto.plist(), "Disabled": True}, handle)
    assert not auto.is_enabled()
    target.write_bytes(b"garbage")
    assert not auto.is_enabled()

    auto.enable()
    auto.disable()
    auto.disable()
    assert not target.exists() and not auto.is_enabled()


# --------------------------------------------------------------------------- Windows


class FakeWinreg:
    """Just enough of ``winreg``: the constants with their real values, keys as dicts, access
    rights enforced, and FileNotFoundError where the real module raises it."""

    HKEY_CURRENT_USER = 0x80000001
    KEY_QUERY_VALUE = 0x0001
    KEY_SET_VALUE = 0x0002
    KEY_READ = 0x20019
    KEY_WRITE = 0x20006
    REG_SZ = 1
    REG_EXPAND_SZ = 2
    REG_BINARY = 3

    class Handle:
        def __init__(self, path: str, access: int) -> None:
            self.path, self.access, self.closed = path, access, False

    def __init__(self) -> None:
        self.keys: dict[str, dict[str, tuple[object, int]]] = {}
        self.handles: list[FakeWinreg.Handle] = []

    def _open(self, root: int, sub_key: str, access: int) -> Handle:
        assert root == self.HKEY_CURRENT_USER
        handle = self.Handle(sub_key, access)
        self.handles.append(handle)
        return handle

    def OpenKey(self, key: int, sub_key: str, reserved: int = 0, access: int = KEY_READ) -> Handle:
        if sub_key not in self.keys:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        return self._open(key, sub_key, access)

    def CreateKeyEx(self, key: int, sub_key: str, reserved: int = 0, access: int = KEY_WRITE) -> Handle:
        self.keys.setdefault(sub_key, {})
        return self._open(key, sub_key, access)

    def _check(self, handle: Handle, right: int) -> dict[str, tuple[object, int]]:
        assert not handle.closed, "use of a closed key"
        if not handle.access & right:
            raise PermissionError(5, "Access is denied")
        return self.keys[handle.path]

    def SetValueEx(self, key: Handle, value_name: str, reserved: int, type: int, value: object) -> None:
        self._check(key, self.KEY_SET_VALUE)[value_name] = (value, type)

    def QueryValueEx(self, key: Handle, value_name: str) -> tuple[object, int]:
        values = self._check(key, self.KEY_QUERY_VALUE)
        if value_name not in values:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        return values[value_name]

    def DeleteValue(self, key: Handle, value: str) -> None:
        values = self._check(key, self.KEY_SET_VALUE)
        if value not in values:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        del values[value]

    def CloseKey(self, hkey: Handle) -> None:
        hkey.closed = True


def test_windows_run_key_exact_values() -> None:
    reg = FakeWinreg()
    argv = [r"C:\Program Files\Linda Desktop\Linda Desktop.exe", "--data-dir", r"D:\My Data\linda", "--background"]
    auto = WindowsRunKeyAutostart(argv, winreg=reg)
    assert RUN_KEY == r"Software\Microsoft\Windows\CurrentVersion\Run"
    assert not auto.is_enabled()

    auto.disable()  # absent key is fine
    auto.enable()
    auto.enable()  # idempotent
    assert reg.keys[RUN_KEY] == {
        "Linda Desktop": (
            r'"C:\Program Files\Linda Desktop\Linda Desktop.exe" --data-dir "D:\My Data\linda" --background', reg.REG_SZ
        )
    }
    assert auto.is_enabled()
    assert all(h.closed for h in reg.handles), "every opened key is closed"
    assert "HKEY_CURRENT_USER" in auto.describe() and RUN_KEY in auto.describe()

    # Another install's value is not ours.
    assert not WindowsRunKeyAutostart([r"C:\Other\linda.exe", "--background"], winreg=reg).is_enabled()

    auto.disable()
    auto.disable()
    assert reg.keys[RUN_KEY] == {}
    assert not auto.is_enabled()


def test_windows_quotes_arguments_by_the_c_runtime_rules() -> None:
    argv = [r"C:\Python311\pythonw.exe", "-m", "linda_desktop", "--data-dir", "C:\\dir with space\\", "--background"]
    auto = WindowsRunKeyAutostart(argv, winreg=FakeWinreg())
    assert auto.command_line == (
        r'"C:\Python311\pythonw.exe" -m linda_desktop --data-dir "C:\dir with space\\" --background'
    )


def test_windows_task_manager_disable_is_respected_and_enable_clears_it() -> None:
    reg = FakeWinreg()
    auto = WindowsRunKeyAutostart([r"C:\Linda\Linda Desktop.exe", "--background"], winreg=reg)
    auto.enable()
    # What Task Manager writes when the user switches the app off in "Startup apps".
    reg.keys[STARTUP_APPROVED_KEY] = {"Linda Desktop": (b"\x03\x00\x00\x00" + bytes(8), reg.REG_BINARY)}
    assert not auto.is_enabled()
    reg.keys[STARTUP_APPROVED_KEY]["Linda Desktop"] = (b"\x02" + bytes(11), reg.REG_BINARY)
    assert auto.is_enabled()
    reg.keys[STARTUP_APPROVED_KEY]["Linda Desktop"] = (b"\x03" + bytes(11), reg.REG_BINARY)
    auto.enable()
    assert "Linda Desktop" not in reg.keys[STARTUP_APPROVED_KEY]
    assert auto.is_enabled()


def test_windows_registry_failure_is_a_typed_error() -> None:
    class ReadOnlyRegistry(FakeWinreg):
        def SetValueEx(self, *args: object) -> None:
            raise PermissionError(5, "Access is denied")

    with pytest.raises(StorageError) as caught:
        WindowsRunKeyAutostart([r"C:\Linda\linda.exe"], winreg=ReadOnlyRegistry()).enable()
    assert "Access is denied" in str(caught.value)
