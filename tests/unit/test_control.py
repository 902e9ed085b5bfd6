"""service/control.py before a service is attached, through the real control channel: the
channel opens at once (start_or_connect), so early requests wait a bounded time and then say so.
With a service attached it is exercised end to end by tests/e2e/test_control_channel.py."""

from __future__ import annotations

import time
from pathlib import Path

from linda_desktop.service.control import ControlHandler
from linda_desktop.system import single_instance as si


def test_requests_before_the_service_runs_wait_then_say_it_is_starting(tmp_path: Path) -> None:
    handler = ControlHandler(ready_timeout=0.5)
    primary = si.start_or_connect(tmp_path / "state", handler)
    assert isinstance(primary, si.PrimaryInstance)
    try:
        client = si.connect_to_running(tmp_path / "state")
        assert client is not None
        assert client.request({"cmd": "ping"})["ok"] is True  # answered by the channel itself
        started = time.monotonic()
        answer = client.request({"cmd": "status"}, timeout=5)
        assert time.monotonic() - started >= 0.5
        assert answer == {"ok": False, "error": "Linda Desktop is still starting; try again in a moment"}
        assert client.request({"cmd": "format_disk"}) == {"ok": False, "error": "unknown command 'format_disk'"}
        assert client.request({"cmd": "backup"}, timeout=5)["ok"] is False
    finally:
        primary.close()
    assert si.connect_to_running(tmp_path / "state") is None
