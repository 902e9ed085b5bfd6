"""Start Linda Desktop at login: one strategy per OS, each enable/disable idempotent.

- Windows: a value in ``HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run``.
- macOS: a LaunchAgent plist in ``~/Library/LaunchAgents`` (written with plistlib).
- Linux and other freedesktop systems: an XDG autostart entry in
  ``$XDG_CONFIG_HOME/autostart`` (written with configparser from the .desktop template).

``is_enabled`` is true only when the entry exists, is not switched off by the desktop
(Task Manager on Windows, ``Hidden``/``X-GNOME-Autostart-enabled`` on Linux) and starts
*this* app with *these* options — an entry left by an older install elsewhere counts as off,
and ``enable`` rewrites it. Autostart is changed only by explicit calls, never as a side
effect of saving settings.
"""

from __future__ import annotations

import configparser
import importlib
import io
import os
import platform
import plistlib
import subprocess
from pathlib import Path
from typing import Any, Protocol

from linda_desktop import APP_ID, APP_NAME
from linda_desktop.base.atomic import atomic_write_bytes
from linda_desktop.base.errors import StorageError
from linda_desktop.system.launch import base_command, with_options

BUNDLE_ID = "app.linda.desktop"
TEMPLATE_NAME = "linda-desktop.desktop"
DESKTOP_SECTION = "Desktop Entry"


class Autostart(Protocol):
    def enable(self) -> None: ...

    def disable(self) -> None: ...

    def is_enabled(self) -> bool: ...

    def describe(self) -> str:
        """Where the entry lives, in words, for `status`, `doctor` and Diagnostics."""
        ...


def _storage_error(action: str, where: str, exc: OSError) -> StorageError:
    reason = exc.strerror or exc.__class__.__name__
    return StorageError(f"Could not {action} the autostart entry ({where}): {reason}",
                        fix="Check that your user can write there, then try again")


# --------------------------------------------------------------------------- Windows


RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
# Where Task Manager's "Startup apps" switch records a user's "Disabled" (binary; bit 0 set = off).
STARTUP_APPROVED_KEY = r"Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\Run"
RUN_VALUE_NAME = APP_NAME


def windows_command_line(argv: list[str]) -> str:
    """One command line for the Run key: the program always in quotes (paths with spaces must
    never be ambiguous), the rest quoted by the MS C runtime rules."""
    if not argv:
        raise ValueError("empty command")
    program, *args = argv
    return " ".join([f'"{program}"'] + [subprocess.list2cmdline([arg]) for arg in args])


class WindowsRunKeyAutostart:
    """``HKCU\\...\\Run`` value "Linda Desktop" = the quoted command line. ``winreg`` is injectable for tests."""

    def __init__(self, argv: list[str], winreg: Any = None) -> None:
        self.argv = list(argv)
        self.command_line = windows_command_line(self.argv)
        self._winreg = winreg

    @property
    def _reg(self) -> Any:
        if self._winreg is None:
            self._winreg = importlib.import_module("winreg")
        return self._winreg

    def enable(self) -> None:
        reg = self._reg
        try:
            key = reg.CreateKeyEx(reg.HKEY_CURRENT_USER, RUN_KEY, 0, reg.KEY_SET_VALUE)
            try:
                reg.SetValueEx(key, RUN_VALUE_NAME, 0, reg.REG_SZ, self.command_line)
            finally:
                reg.CloseKey(key)
            # An explicit "enable" from the app overrides an earlier "Disabled" in Task Manager.
            self._delete_value(STARTUP_APPROVED_KEY)
        except OSError as exc:
            raise _storage_error("write", self.describe(), exc) from exc

    def disable(self) -> None:
        try:
            self._delete_value(RUN_KEY)
        except OSError as exc:
            raise _storage_error("remove", self.describe(), exc) from exc

    def is_enabled(self) -> bool:
        value, kind = self._query(RUN_KEY)
        if kind not in (self._reg.REG_SZ, self._reg.REG_EXPAND_SZ) or value != self.command_line:
            return False
        approved, approved_kind = self._query(STARTUP_APPROVED_KEY)
        return not (approved_kind == self._reg.REG_BINARY and approved and bytes(approved)[0] & 1)

    def describe(self) -> str:
        return f'registry HKEY_CURRENT_USER\\{RUN_KEY}, value "{RUN_VALUE_NAME}"'

    def _query(self, subkey: str) -> tuple[Any, Any]:
        reg = self._reg
        try:
            key = reg.OpenKey(reg.HKEY_CURRENT_USER, subkey, 0, reg.KEY_QUERY_VALUE)
        except FileNotFoundError:
            return None, None
        try:
            value, kind = reg.QueryValueEx(key, RUN_VALUE_NAME)
            return value, kind
        except FileNotFoundError:
            return None, None
        finally:
            reg.CloseKey(key)

    def _delete_value(self, subkey: str) -> None:
        reg = self._reg
        try:
            key = reg.OpenKey(reg.HKEY_CURRENT_USER, subkey, 0, reg.KEY_SET_VALUE)
        except FileNotFoundError:
            return
        try:
            reg.DeleteValue(key, RUN_VALUE_NAME)
        except FileNotFoundError:
            pass
        finally:
            reg.CloseKey(key)


# --------------------------------------------------------------------------- macOS


class LaunchAgentAutostart:
    """``~/Library/LaunchAgents/<label>.plist``, loaded by launchd at the next login.

    Not loaded now (no ``launchctl``): enabling must not start a second copy of the app.
    """

    def __init__(self, argv: list[str], home: str | os.PathLike[str] | None = None, label: str = BUNDLE_ID) -> None:
        self.argv = list(argv)
        self.label = label
        self.path = Path(home if home is not None else Path.home()) / "Library" / "LaunchAgents" / f"{label}.plist"

    def plist(self) -> dict[str, Any]:
        return {
            "Label": self.label,
            "ProgramArguments": list(self.argv),
            "RunAtLoad": True,
            "ProcessType": "Interactive",
            "LimitLoadToSessionType": "Aqua",
        }

    def enable(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # launchd refuses agents writable by group or others.
            atomic_write_bytes(self.path, plistlib.dumps(self.plist(), sort_keys=False), mode=0o644)
        except OSError as exc:
            raise _storage_error("write", str(self.path), exc) from exc

    def disable(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise _storage_error("remove", str(self.path), exc) from exc

    def is_enabled(self) -> bool:
        try:
            with open(self.path, "rb") as handle:
                current = plistlib.load(handle)
        except (OSError, plistlib.InvalidFileException, ValueError):
            return False
        return (
            isinstance(current, dict)
            and current.get("Label") == self.label
            and current.get("ProgramArguments") == self.argv
            and current.get("RunAtLoad") is True
            and current.get("Disabled") is not True
        )

    def describe(self) -> str:
        return f"LaunchAgent {self.path}"


# --------------------------------------------------------------------------- Linux (XDG)

# Characters that force an Exec argument into double quotes (Desktop Entry spec, "The Exec key").
_EXEC_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


def quote_exec_arg(arg: str) -> str:
    """Quote one argument by the Exec rules: reserved characters force double quotes, inside
    which ``"`` `` ` `` ``$`` and ``\\`` take a backslash; a literal ``%`` is ``%%`` everywhere."""
    if arg == "" or any(ch in _EXEC_RESERVED for ch in arg):
        inner = "".join("\\" + ch if ch in '"`$\\' else ch for ch in arg)
        arg = f'"{inner}"'
    return arg.replace("%", "%%")


def escape_string_value(value: str) -> str:
    """The general escape of a desktop-file string value (applied after the Exec quoting)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def exec_line(argv: list[str]) -> str:
    """The value of ``Exec=`` exactly as it is written in the file."""
    if not argv:
        raise ValueError("empty command")
    return escape_string_value(" ".join(quote_exec_arg(arg) for arg in argv))


def xdg_config_home() -> Path:
    """``$XDG_CONFIG_HOME`` when set to an absolute path (the spec says to ignore others), else ``~/.config``."""
    value = os.environ.get("XDG_CONFIG_HOME", "")
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / ".config"


def _new_desktop_parser() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    return parser


def _template_entry() -> dict[str, str]:
    from linda_desktop import resources

    parser = _new_desktop_parser()
    with open(resources.path(TEMPLATE_NAME), encoding="utf-8") as handle:
        parser.read_file(handle)
    return dict(parser[DESKTOP_SECTION])


class XdgAutostart:
    """``$XDG_CONFIG_HOME/autostart/linda-desktop.desktop`` built from the packaged .desktop template."""

    def __init__(self, argv: list[str], config_home: str | os.PathLike[str] | None = None) -> None:
        self.argv = list(argv)
        self._config_home = Path(config_home) if config_home is not None else None

    @property
    def path(self) -> Path:
        # Resolved on use, so a changed XDG_CONFIG_HOME is honoured.
        return (self._config_home or xdg_config_home()) / "autostart" / f"{APP_ID}.desktop"

    def entry(self) -> dict[str, str]:
        """The keys of the autostart entry, in file order."""
        entry = _template_entry()
        for key in ("Categories", "Keywords"):  # menu-only keys, meaningless for autostart
            entry.pop(key, None)
        entry.update(
            {
                "Exec": exec_line(self.argv),
                "TryExec": escape_string_value(self.argv[0]),  # the entry is skipped if the app was removed
                "X-GNOME-Autostart-enabled": "true",
            }
        )
        return entry

    def render(self) -> bytes:
        parser = _new_desktop_parser()
        parser[DESKTOP_SECTION] = self.entry()
        buffer = io.StringIO()
        parser.write(buffer, space_around_delimiters=False)
        return buffer.getvalue().rstrip("\n").encode("utf-8") + b"\n"

    def enable(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Executable bit: some desktops only trust launchers that have it.
            atomic_write_bytes(self.path, self.render(), mode=0o755)
        except OSError as exc:
            raise _storage_error("write", str(self.path), exc) from exc

    def disable(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise _storage_error("remove", str(self.path), exc) from exc

    def is_enabled(self) -> bool:
        parser = _new_desktop_parser()
        try:
            with open(self.path, encoding="utf-8") as handle:
                parser.read_file(handle)
            entry = parser[DESKTOP_SECTION]
        except (OSError, UnicodeDecodeError, configparser.Error, KeyError):
            return False
        return (
            entry.get("Exec") == exec_line(self.argv)
            and entry.get("Hidden", "false").strip().lower() != "true"
            and entry.get("X-GNOME-Autostart-enabled", "true").strip().lower() != "false"
        )

    def describe(self) -> str:
        return f"XDG autostart entry {self.path}"


# --------------------------------------------------------------------------- choice


def autostart_for_platform(
    *, system: str | None = None, command: list[str] | None = None, data_dir: str | None = None
) -> Autostart:
    """The strategy for this OS (``system`` as ``platform.system()`` names it).

    ``command`` is how to start the app (default: this install, see ``launch.base_command``);
    the entry runs it with ``--data-dir DIR`` when ``data_dir`` is given, and ``--background``.
    """
    system = system or platform.system()
    argv = with_options(command if command is not None else base_command(windows=system == "Windows"),
                        background=True, data_dir=data_dir)
    if system == "Windows":
        return WindowsRunKeyAutostart(argv)
    if system == "Darwin":
        return LaunchAgentAutostart(argv)
    return XdgAutostart(argv)
