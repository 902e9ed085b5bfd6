"""The command autostart and menu entries use for a frozen (PyInstaller) build."""

from __future__ import annotations

from pathlib import Path

from linda_desktop.system.launch import base_command


def test_frozen_windows_console_exe_hands_over_to_the_windowed_one(tmp_path: Path) -> None:
    console = tmp_path / "linda-desktop.exe"
    console.write_bytes(b"MZ")
    assert base_command(frozen=True, executable=str(console), windows=True) == [str(console)]
    windowed = tmp_path / "LindaDesktop.exe"
    windowed.write_bytes(b"MZ")
    assert base_command(frozen=True, executable=str(console), windows=True) == [str(windowed)]


def test_frozen_posix_uses_itself(tmp_path: Path) -> None:
    exe = tmp_path / "linda-desktop"
    (tmp_path / "LindaDesktop.exe").write_bytes(b"MZ")
    assert base_command(frozen=True, executable=str(exe), windows=False) == [str(exe)]
