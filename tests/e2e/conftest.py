from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import harness
from tests.e2e.harness import AppProcess, write_settings
from tests.plugins.fixtures import SimulatorFactory
from tests.whatsapp_sim.control import Simulator


@pytest.fixture(autouse=True)
def app_stderr_is_clean() -> Iterator[harness.Watch]:
    """Every e2e test, for free: no app process it started may write a traceback, "Future
    exception was never retrieved" or "Logging error" to stderr (issue 12). Processes still
    running at the end are killed first, so that all they wrote is read."""
    watch = harness.WATCH = harness.Watch()
    yield watch
    watch.close()
    problems = watch.problems()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing e2e test shows the log file of every app it started (issue 9, Deliver 5)."""
    outcome: Any = yield
    report = outcome.get_result()
    if report.failed and report.when in ("call", "teardown"):
        for folder in harness.WATCH.data_dirs():
            report.sections.append((f"app log {folder / 'logs' / 'linda-desktop.log'}", harness.app_log(folder)))


@pytest.fixture
def sim(make_simulator: SimulatorFactory) -> Simulator:
    """A WhatsApp Web simulator on a fixed port for this test (kept across its restarts)."""
    return make_simulator(loading_seconds=0.3, qr_interval=3, first_qr_seconds=5)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    # Real delay before the first backup after linking (localStorage must reach the disk).
    write_settings(folder, flush_delay_seconds=6)
    return folder


@pytest.fixture
def apps() -> Iterator[list[AppProcess]]:
    """Every app process a test starts; all are killed (with their browsers) at the end."""
    started: list[AppProcess] = []
    yield started
    for app in reversed(started):  # newest first: an older app's profile may be a newer one's
        app.close()


@pytest.fixture
def start_app(apps: list[AppProcess], data_dir: Path, sim: object):
    def start(*extra: str) -> AppProcess:
        app = AppProcess(data_dir, sim.url, *extra).start()  # type: ignore[attr-defined]
        apps.append(app)
        return app
    return start


@pytest.fixture
def linked(start_app, sim) -> AppProcess:
    """A running app that has just linked and taken its first backup."""
    app = start_app()
    app.wait_state("needs_link", 60)
    app.wait_for(lambda e: e.get("event") == "qr", 30)
    sim.link()  # type: ignore[attr-defined]
    app.wait_state("connected", 30)
    app.wait_for(lambda e: e.get("event") == "backup" and e.get("reason") == "link", 30)
    return app


from tests.integration.conftest import xvfb  # noqa: E402,F401  (a private X server for visible windows)
