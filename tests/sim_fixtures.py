"""A simulator fixture shared by the tray tests that drive the real service.

Its codes rotate slowly, so the code on screen is still the page's when a test compares them.
Import it into a test module with ``from tests.sim_fixtures import ACCOUNT, steady_sim``; the
fixture is named ``sim``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.plugins.fixtures import SimulatorFactory
from tests.whatsapp_sim.control import Simulator

ACCOUNT = "31612345678"  # digits, as WhatsApp stores it (last-wid-md)


@pytest.fixture(name="sim")
def steady_sim(make_simulator: SimulatorFactory) -> Iterator[Simulator]:
    yield make_simulator(loading_seconds=0.3, first_qr_seconds=1, qr_interval=30, qr_count=5, account=ACCOUNT)
