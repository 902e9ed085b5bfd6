"""Start-up benchmark: how long until the session is connected, against a bare Playwright floor.

    python tests/bench/bench_startup.py [--runs 7]

All three are measured in the same run, from process start to "connected", on the same
logged-in simulator profile and the same browser, interleaved so drift hits each alike:

  (a) floor: a plain Playwright script that launches the browser on the profile and waits for
      the connected marker (`#pane-side`);
  (b) `linda-desktop run --json` from process start to its `connected` event;
  (c) the same after the live profile's WhatsApp store was deleted (restore from a backup).

Prints absolute medians and the ratios (b)/(a) and (c)/(a). Targets: ≤ 1.25 and ≤ 2.0.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.e2e.harness import CHROMIUM, AppProcess, write_settings  # noqa: E402
from tests.whatsapp_sim.control import Simulator  # noqa: E402

FLOOR_SCRIPT = r"""
import sys
from playwright.sync_api import sync_playwright
profile, url, exe = sys.argv[1:4]
with sync_playwright() as p:
    ctx = p.chromium.launch_persistent_context(profile, executable_path=exe, headless=True,
        args=["--disable-blink-features=AutomationControlled",
              "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"],
        user_agent=sys.argv[4], service_workers="block")
    page = ctx.pages[0] if ctx.pages else ctx.new_page()
    page.goto(url)
    page.wait_for_selector("#pane-side", timeout=60000)
    print("connected", flush=True)
    ctx.close()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chrome_user_agent() -> str:
    from linda_desktop.browser.discovery import browser_version

    version = (browser_version(CHROMIUM) or "Chromium 120.0.0.0").split()[-1]
    return (f"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            f"Chrome/{version} Safari/537.36")


def time_floor(profile: Path, url: str) -> float:
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", FLOOR_SCRIPT, str(profile), url, CHROMIUM, chrome_user_agent()],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "connected":
            elapsed = time.monotonic() - started
            break
    else:
        raise RuntimeError("floor script never saw the connected marker")
    proc.wait(60)
    return elapsed


def time_app(data_dir: Path, url: str, *, expect_restore: bool) -> float:
    app = AppProcess(data_dir, url).start()
    try:
        event = app.wait_state("connected", 120)
        if expect_restore:
            assert app.of("restore"), app.summary()
        else:
            assert not app.of("qr"), app.summary()
        elapsed = event["_t"]
        assert app.terminate(120) == 0
        return elapsed
    finally:
        app.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="linda-bench-"))
    sim = Simulator(free_port(), root / "sim", loading_seconds=0.3)
    sim.start()
    try:
        data = root / "data"
        write_settings(data, flush_delay_seconds=6)
        app = AppProcess(data, sim.url).start()
        app.wait_for(lambda e: e.get("event") == "qr", 60)
        sim.link()
        app.wait_for(lambda e: e.get("event") == "backup", 60)
        assert app.terminate(120) == 0
        app.close()

        store = data / "profile" / "Default" / "IndexedDB" / f"http_127.0.0.1_{sim.port}.indexeddb.leveldb"
        floor, plain, restored = [], [], []
        for _ in range(args.runs):
            floor.append(time_floor(data / "profile", sim.url))
            plain.append(time_app(data, sim.url, expect_restore=False))
            shutil.rmtree(store)
            restored.append(time_app(data, sim.url, expect_restore=True))
        a, b, c = (statistics.median(x) for x in (floor, plain, restored))
        print(f"runs: {args.runs} each, browser: {CHROMIUM}, simulator loading screen: 0.3 s")
        print(f"(a) bare Playwright floor        median {a:6.2f} s   (min {min(floor):.2f}, max {max(floor):.2f})")
        print(f"(b) linda-desktop run -> connected median {b:6.2f} s   (min {min(plain):.2f}, max {max(plain):.2f})")
        print(f"(c) corrupted profile -> restored median {c:6.2f} s   (min {min(restored):.2f}, max {max(restored):.2f})")
        print(f"ratio (b)/(a) = {b / a:.2f}   (target <= 1.25)")
        print(f"ratio (c)/(a) = {c / a:.2f}   (target <= 2.0)")
        print("old system: 5-10 s to restore a session")
    finally:
        sim.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
