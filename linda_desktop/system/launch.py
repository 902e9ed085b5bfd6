"""How to start this very app again: the command line that autostart entries (and relaunches) run.

A frozen build (PyInstaller sets ``sys.frozen``) *is* the executable; a source or pip install
is ``python -m linda_desktop``. On Windows the console-less ``pythonw.exe`` is preferred so
that a login start does not flash a console window.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

BACKGROUND_FLAG = "--background"
DATA_DIR_OPTION = "--data-dir"


def _interpreter(executable: str, system_is_windows: bool) -> str:
    """The Python to run the package with: ``pythonw.exe`` beside ``python.exe`` on Windows, if present."""
    if system_is_windows:
        candidate = Path(executable).with_name("pythonw.exe")
        if Path(executable).name.lower() == "python.exe" and candidate.is_file():
            return str(candidate)
    return executable


WINDOWED_EXE = "LindaDesktop.exe"  # installers/pyinstaller/bundle_info.py GUI_NAME


def base_command(*, frozen: bool | None = None, executable: str | None = None,
                 windows: bool | None = None) -> list[str]:
    """The bare command that starts the app, without options. Arguments exist for tests only."""
    frozen = bool(getattr(sys, "frozen", False)) if frozen is None else frozen
    executable = executable or sys.executable
    windows = (os.name == "nt") if windows is None else windows
    if frozen:
        return [_windowed_sibling(executable) if windows else executable]
    return [_interpreter(executable, windows), "-m", "linda_desktop"]


def _windowed_sibling(executable: str) -> str:
    """Frozen Windows builds ship a console exe (linda-desktop.exe) and a windowed one
    (LindaDesktop.exe): login starts and menu entries must use the windowed one, or a console
    window opens at every login."""
    sibling = Path(executable).with_name(WINDOWED_EXE)
    return str(sibling) if sibling.is_file() else executable


def with_options(command: list[str], *, background: bool = False,
                 data_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """``command`` plus the global ``--data-dir`` (made absolute: autostart runs from another cwd)
    and ``--background``."""
    argv = list(command)
    if data_dir:
        argv += [DATA_DIR_OPTION, str(Path(data_dir).expanduser().resolve())]
    if background:
        argv.append(BACKGROUND_FLAG)
    return argv


def app_command(background: bool = False, data_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The full command line that starts this app, e.g. ``[python, "-m", "linda_desktop", "--background"]``."""
    return with_options(base_command(), background=background, data_dir=data_dir)
