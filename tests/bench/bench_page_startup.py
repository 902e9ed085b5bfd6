"""Start-up of the page layer alone: ``WhatsAppPage`` to its first CONNECTED reading, against a
bare Playwright script waiting for the chat list, from process start, on the same linked
simulator profile, interleaved (tells the page reading apart from the service in
bench_startup.py).

    python tests/bench/bench_page_startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bench.bench_idle import FLOOR_SCRIPT, OFFLINE, chrome_user_agent  # noqa: E402
from tests.e2e.harness import CHROMIUM  # noqa: E402
from tests.whatsapp_sim.control import Simulator, free_port  # noqa: E402

PAGE_SCRIPT = r"""
import asyncio, sys
from pathlib import Path
sys.path.insert(0, sys.argv[5])
from linda_desktop.browser.whatsapp import WhatsAppPage
from linda_desktop.base.events import PageState

async def main() -> None:
    profile, url, exe = sys.argv[1:4]
    wa = WhatsAppPage(Path(profile), url, exe, extra_args=[sys.argv[4]])
    await wa.start()
    snap = await wa.wait_for_state(PageState.CONNECTED, timeout=60)
    print("connected" if snap.state is PageState.CONNECTED else f"failed {snap.state}", flush=True)
    sys.stdin.readline()
    await wa.close()

asyncio.run(main())
"""


def time_to_connected(argv: list[str]) -> float:
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=REPO)
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline().strip()
    elapsed = time.monotonic() - started
    proc.stdin.write("\n")
    proc.stdin.flush()
    proc.wait(60)
    if line != "connected":
        raise RuntimeError(f"never connected: {line!r}")
    return elapsed


async def link(profile: Path, sim: Simulator) -> None:
    from linda_desktop.base.events import PageState
    from linda_desktop.browser.whatsapp import WhatsAppPage

    wa = WhatsAppPage(profile, sim.url, CHROMIUM, extra_args=[OFFLINE])
    await wa.start()
    try:
        await wa.wait_for_state(PageState.QR, timeout=30)
        sim.link()
        snap = None
        while snap is None or not (snap.state is PageState.CONNECTED and snap.synced):
            snap = await wa.wait_for_change(snap, 30)
        await wa.flush_storage()
        await wa.wait_for_state(PageState.CONNECTED, timeout=30)
    finally:
        await wa.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="linda-bench-page-"))
    sim = Simulator(free_port(), root / "sim", loading_seconds=0.3)
    sim.start()
    try:
        profile = root / "profile"
        asyncio.run(link(profile, sim))
        floor, page = [], []
        for _ in range(args.runs):
            floor.append(time_to_connected([FLOOR_SCRIPT, str(profile), sim.url, CHROMIUM, chrome_user_agent(),
                                            OFFLINE]))
            page.append(time_to_connected([PAGE_SCRIPT, str(profile), sim.url, CHROMIUM, OFFLINE, str(REPO)]))
        a, b = statistics.median(floor), statistics.median(page)
        print(f"runs: {args.runs} each, browser: {CHROMIUM}")
        print(f"(a) bare Playwright -> #pane-side    median {a:5.2f} s (min {min(floor):.2f}, max {max(floor):.2f})")
        print(f"(b) WhatsAppPage -> CONNECTED        median {b:5.2f} s (min {min(page):.2f}, max {max(page):.2f})")
        print(f"ratio (b)/(a) = {b / a:.2f}")
    finally:
        sim.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
