"""Fixtures for tests with a real Chromium and the WhatsApp Web simulator.

The shared ones (``chromium``, ``wa_options``, ``xvfb``, ``free_port``, ``make_simulator``) live in
tests/plugins/fixtures.py, which every suite loads; their names stay importable from here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.plugins.fixtures import (
    FAST,
    OFFLINE_ARGS,
    SimulatorFactory,
    chromium,
    kill_browsers_under,
    wa_options,
    xvfb,
)
from tests.whatsapp_sim.control import Simulator

__all__ = ["FAST", "OFFLINE_ARGS", "chromium", "kill_browsers_under", "simulator", "wa_options", "xvfb"]


@pytest.fixture
def simulator(make_simulator: SimulatorFactory) -> Iterator[Simulator]:
    """A running simulator with fast timings on a port chosen once for this test (restarts
    keep it, so the page's origin and its stored session stay the same)."""
    yield make_simulator(**FAST)
