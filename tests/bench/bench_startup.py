"""Start-up benchmark: how long until the session is connected, against a bare Playwright floor.

    python tests/bench/bench_startup.py [--runs 7]

All are measured in the same run, from process start, on the same logged-in simulator profile
and the same browser, interleaved so drift hits each alike:

  (a) floor: a plain Playwright script that launches the browser on the profile and waits for
      the connected marker (`#pane-side`);
  (b) `linda-desktop run --json` to its `connected` event; the simulator resumes the way the real
      page does, UNLAUNCHED → OPENING → PAIRING → CONNECTED (issue 10: "through the PAIRING resume");
  (c) the same after the live profile's WhatsApp store was deleted (restore from a backup);
  (d) a local failure: the server rejects the live profile's key generation with code 0
      (`tear_rotation`) and the newest backup holds an older one: one restore, then connected;
  (e) the same when the newest backup is rejected too: restore one older generation (two restores);
  (f) a removal by the phone: time to the first QR event (`logged_out` first, no restore).

Prints absolute medians and each as a ratio to (a). Targets: (b) ≤ 1.25, (c) ≤ 2.0.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.e2e.harness import CHROMIUM, AppProcess, write_settings  # noqa: E402
from tests.plugins.fixtures import free_port  # noqa: E402
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


def time_app(data_dir: Path, url: str, *, restores: int | None) -> float:
    """Start to ``connected``; ``restores``: how many restores that must take (None: at least one)."""
    app = AppProcess(data_dir, url).start()
    try:
        event = app.wait_state("connected", 120)
        done = len(app.of("restore"))
        assert (done >= 1) if restores is None else (done == restores), app.summary()
        assert not app.of("qr"), app.summary()
        elapsed = event["_t"]
        assert app.terminate(120) == 0
        return elapsed
    finally:
        app.close()


def drop_newest_backup(data_dir: Path) -> None:
    """Leave an older key generation as the newest backup (the newest one is the live profile's)."""
    files = sorted((p for p in (data_dir / "backups").iterdir() if p.suffix in (".lindabak", ".lindaman")),
                   key=lambda p: p.name)
    files[-1].unlink()


def time_removal(data_dir: Path, sim: Simulator) -> float:
    """The phone removed this computer: start to the first QR; then link again for the next run."""
    sim.revoke()
    app = AppProcess(data_dir, sim.url).start()
    try:
        app.wait_state("logged_out", 120)
        event = app.wait_for(lambda e: e.get("event") == "qr", 120)
        assert not app.of("restore"), app.summary()
        elapsed = event["_t"]
        sim.link()
        app.wait_for(lambda e: e.get("event") == "backup" and e.get("reason") == "link", 60)
        assert app.terminate(120) == 0
        return elapsed
    finally:
        app.close()


def line(label: str, values: list[float], floor: float) -> str:
    m = statistics.median(values)
    return (f"{label:<44} median {m:6.2f} s  (min {min(values):.2f}, max {max(values):.2f})"
            f"  ratio {m / floor:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
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
        rows: dict[str, list[float]] = {k: [] for k in "abcdef"}
        for _ in range(args.runs):
            rows["a"].append(time_floor(data / "profile", sim.url))
            rows["b"].append(time_app(data, sim.url, restores=0))
            shutil.rmtree(store)
            rows["c"].append(time_app(data, sim.url, restores=None))
            sim.tear_rotation()
            drop_newest_backup(data)
            rows["d"].append(time_app(data, sim.url, restores=1))
            sim.tear_rotation()
            rows["e"].append(time_app(data, sim.url, restores=2))
        for _ in range(args.runs):
            rows["f"].append(time_removal(data, sim))
            rows["a"].append(time_floor(data / "profile", sim.url))
        a = statistics.median(rows["a"])
        print(f"runs: {args.runs} each, browser: {CHROMIUM}, simulator loading screen: 0.3 s")
        print(f"{'(a) bare Playwright floor':<44} median {a:6.2f} s  (min {min(rows['a']):.2f}, "
              f"max {max(rows['a']):.2f})")
        print(line("(b) run -> connected (PAIRING resume)", rows["b"], a) + "   target <= 1.25")
        print(line("(c) corrupted profile -> restored", rows["c"], a) + "   target <= 2.0")
        print(line("(d) local failure -> restored -> connected", rows["d"], a))
        print(line("(e) newest rejected -> one older -> connected", rows["e"], a))
        print(line("(f) removed by the phone -> QR", rows["f"], a))
        print("old system: 5-10 s to restore a session")
    finally:
        sim.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
