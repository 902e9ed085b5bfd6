"""The control channel of the real app (`linda-desktop run`): read-only commands answer while a
long command runs (issue 9, Deliver 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from linda_desktop.session.profile import origin_storage_key
from tests.e2e.harness import CHROMIUM, REPO, AppProcess, cli


@pytest.mark.browser
@pytest.mark.slow
def test_status_answers_while_a_long_backup_runs(linked: AppProcess, data_dir: Path, sim) -> None:
    """The real app, a real long backup through the control channel (an 800 MB IndexedDB blob that
    does not compress or deduplicate): `status` answers at once meanwhile, and says it runs."""
    blob_dir = data_dir / "profile" / "Default" / "IndexedDB" / f"{origin_storage_key(sim.url)}.indexeddb.blob" / "1"
    blob_dir.mkdir(parents=True, exist_ok=True)
    with open(blob_dir / "big", "wb") as out:
        for _ in range(800):
            out.write(os.urandom(1 << 20))
    mark = len(linked.events)
    backup = subprocess.Popen([sys.executable, "-m", "linda_desktop", "backup", "--data-dir", str(data_dir),
                               "--browser", CHROMIUM, "--wa-url", sim.url], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)  # the command is on the channel and the backup under way
        assert backup.poll() is None, "the backup was not long enough to test anything"
        started = time.monotonic()
        status = cli(data_dir, "status", "--json", wa_url=sim.url, timeout=60)
        took = time.monotonic() - started
        still_running = backup.poll() is None
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["running"] is True
        assert still_running, f"status came back only after the backup ended ({took:.1f} s)"
        out, err = backup.communicate(timeout=600)
    finally:
        if backup.poll() is None:
            backup.kill()
            backup.communicate()
    assert backup.returncode == 0, err
    assert out.startswith("Backup ") and "saved" in out, out
    linked.wait_for(lambda e: e.get("event") == "backup" and e.get("reason") == "manual", 30, after=mark)
