"""Root of every test suite: the shared fixtures plugin, and the ``browser`` / ``keyring`` /
``xvfb`` markers turned into skips that say what is missing (pyproject runs pytest with
``--strict-markers``, so a misspelt marker is an error, never a silently running test).

With ``LINDA_TESTS_REQUIRE=browser,keyring,xvfb`` (or ``all``; .ci/run sets it) a missing thing
fails the marked tests instead: CI must not go green by skipping them.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading

import pytest

pytest_plugins = ["tests.plugins.fixtures"]

NEEDS = ("browser", "keyring", "xvfb")


@functools.cache
def _missing_browser() -> str | None:
    from linda_desktop.base.errors import BrowserNotFound
    from linda_desktop.browser.discovery import find_browser

    try:
        find_browser()
    except BrowserNotFound as exc:
        return f"no Chromium: {exc.message}"
    return None


@functools.cache
def _missing_keyring() -> str | None:
    """A real OS keyring (Secret Service on Linux) that answers: the probe reads one entry."""
    from linda_desktop.base.errors import KeyringUnavailable
    from linda_desktop.system.keyring_store import KeyringEntry, backend_name

    answer: list[str | None] = []

    def probe() -> None:
        try:
            KeyringEntry("linda-desktop-tests", "probe").check()
            answer.append(None)
        except KeyringUnavailable:
            answer.append(f"no usable keyring (backend {backend_name()}): run the tests with bash tests/run.sh")

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(15)
    return answer[0] if answer else "the keyring did not answer within 15 s"


@functools.cache
def _missing_xvfb() -> str | None:
    return None if shutil.which("Xvfb") else "Xvfb is not installed"


_CHECKS = {"browser": _missing_browser, "keyring": _missing_keyring, "xvfb": _missing_xvfb}


def _required() -> set[str]:
    wanted = {part.strip() for part in os.environ.get("LINDA_TESTS_REQUIRE", "").split(",") if part.strip()}
    return set(NEEDS) if "all" in wanted else wanted


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    required = _required()
    for item in items:
        for need in NEEDS:
            if item.get_closest_marker(need) is None:
                continue
            reason = _CHECKS[need]()
            if reason is None:
                continue
            if need in required:
                item.add_marker(pytest.mark.usefixtures(f"_require_{need}"))
            else:
                item.add_marker(pytest.mark.skip(reason=f"needs {need}: {reason}"))


def _fail_missing(need: str) -> None:
    pytest.fail(f"LINDA_TESTS_REQUIRE asks for {need}, which is missing: {_CHECKS[need]()}", pytrace=False)


@pytest.fixture
def _require_browser() -> None:
    _fail_missing("browser")


@pytest.fixture
def _require_keyring() -> None:
    _fail_missing("keyring")


@pytest.fixture
def _require_xvfb() -> None:
    _fail_missing("xvfb")
