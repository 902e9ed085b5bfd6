"""cli.display_problem (issue 12 item 11): the tray's display check, made before Qt loads."""

from __future__ import annotations

import pytest

from linda_desktop.cli import display_problem


@pytest.mark.parametrize("env", [{}, {"QT_QPA_PLATFORM": "xcb"}, {"QT_QPA_PLATFORM": "wayland"},
                                 {"DISPLAY": ""}])
def test_no_display_on_linux_names_run(env: dict[str, str]) -> None:
    problem = display_problem(env, "linux")
    assert problem and "linda-desktop run" in problem and "\n" not in problem


@pytest.mark.parametrize("env", [{"DISPLAY": ":0"}, {"WAYLAND_DISPLAY": "wayland-0"},
                                 {"QT_QPA_PLATFORM": "offscreen"}, {"QT_QPA_PLATFORM": "wayland;offscreen"},
                                 {"QT_QPA_PLATFORM": "vnc:size=800x600"}])
def test_a_display_or_a_headless_platform_is_fine(env: dict[str, str]) -> None:
    assert display_problem(env, "linux") is None


@pytest.mark.parametrize("platform", ["win32", "darwin"])
def test_other_systems_always_have_a_display(platform: str) -> None:
    assert display_problem({}, platform) is None
