"""Idle benchmark: CPU and memory of a connected, idle session, against bare Playwright holding
the same page (issue 13).

    python tests/bench/bench_idle.py [--seconds 60] [--rows 4,2000] [--target app|page|both]

For each chat-list size (the simulator's ``chat_rows``: its normal page and a 2,000-row list),
on the same linked profile, the same browser and the same simulator, one after the other:

  (a) floor: a plain Playwright script that opens the page, waits for the chat list, then
      holds it;
  (b) ``app``: ``linda-desktop run --json`` (the whole service: supervision, timers, the page
      watcher), connected and idle;
  (c) ``page``: only our page layer, a script holding a ``WhatsAppPage`` and waiting on
      ``wait_for_change`` as the service does (tells the page reading apart from the rest).

Each is left to settle for a few seconds after "connected", then measured for ``--seconds``:
CPU = user+system time of the WHOLE process tree (Python, the Playwright driver, every Chromium
process) over the window, as % of one core; RSS (and USS where the OS gives it) summed over the
tree at the end. Prints the figures and the ratios against (a). Target: CPU ratio <= 1.2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.e2e.harness import CHROMIUM, AppProcess, write_settings  # noqa: E402
from tests.whatsapp_sim.control import Simulator, free_port  # noqa: E402

OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"
SETTLE_SECONDS = 5.0

FLOOR_SCRIPT = r"""
import sys, time
from playwright.sync_api import sync_playwright
profile, url, exe, ua = sys.argv[1:5]
with sync_playwright() as p:
    ctx = p.chromium.launch_persistent_context(profile, executable_path=exe, headless=True,
        args=["--disable-blink-features=AutomationControlled", sys.argv[5]],
        user_agent=ua, service_workers="block")
    page = ctx.pages[0] if ctx.pages else ctx.new_page()
    page.goto(url)
    page.wait_for_selector("#pane-side", timeout=60000)
    print("connected", flush=True)
    sys.stdin.readline()
    ctx.close()
"""

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
    stop = asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    while not stop.done():
        snap = await wa.wait_for_change(snap, 0.5)   # what the service's supervision loop does
    await wa.close()

asyncio.run(main())
"""


@dataclass
class Figures:
    cpu_percent: float
    rss_mib: float
    uss_mib: float | None
    processes: int


def tree(root: int) -> list[psutil.Process]:
    try:
        parent = psutil.Process(root)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(procs: list[psutil.Process]) -> dict[tuple[int, float], float]:
    out: dict[tuple[int, float], float] = {}
    for proc in procs:
        try:
            times = proc.cpu_times()
            out[(proc.pid, proc.create_time())] = times.user + times.system
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return out


def measure(root: int, seconds: float) -> Figures:
    """CPU of the whole tree of ``root`` over ``seconds`` (processes born meanwhile count from 0)."""
    before = cpu_seconds(tree(root))
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    procs = tree(root)
    after = cpu_seconds(procs)
    used = sum(value - before.get(key, 0.0) for key, value in after.items())
    rss = uss = 0.0
    uss_ok = True
    for proc in procs:
        try:
            info = proc.memory_full_info()
            rss += info.rss
            uss += getattr(info, "uss", 0.0)
            uss_ok = uss_ok and hasattr(info, "uss")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    mib = 1024 * 1024
    return Figures(100.0 * used / elapsed, rss / mib, uss / mib if uss_ok else None, len(procs))


def chrome_user_agent() -> str:
    from linda_desktop.browser.discovery import browser_version

    version = (browser_version(CHROMIUM) or "Chromium 120.0.0.0").split()[-1]
    return (f"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            f"Chrome/{version} Safari/537.36")


def hold_script(script: str, argv: list[str], seconds: float) -> Figures:
    proc = subprocess.Popen([sys.executable, "-c", script, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=REPO)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline().strip()
        if line != "connected":
            raise RuntimeError(f"never connected: {line!r}")
        time.sleep(SETTLE_SECONDS)
        figures = measure(proc.pid, seconds)
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(60)
        return figures
    finally:
        if proc.poll() is None:
            proc.kill()


def hold_app(data: Path, url: str, seconds: float) -> Figures:
    app = AppProcess(data, url).start()
    try:
        app.wait_for(lambda e: e.get("event") == "state" and e.get("state") == "connected", 120)
        time.sleep(SETTLE_SECONDS)
        assert app.proc is not None
        figures = measure(app.proc.pid, seconds)
        assert app.terminate(120) == 0, app.summary()
        return figures
    finally:
        app.close()


def link_profile(data: Path, sim: Simulator) -> None:
    write_settings(data, flush_delay_seconds=6)
    app = AppProcess(data, sim.url).start()
    try:
        app.wait_for(lambda e: e.get("event") == "qr", 60)
        sim.link()
        app.wait_for(lambda e: e.get("event") == "backup", 90)
        assert app.terminate(120) == 0, app.summary()
    finally:
        app.close()


def show(name: str, f: Figures, floor: Figures | None) -> str:
    ratio = f"   x{f.cpu_percent / floor.cpu_percent:4.2f} CPU, x{f.rss_mib / floor.rss_mib:4.2f} RSS" \
        if floor and floor.cpu_percent > 0 else ""
    uss = f", USS {f.uss_mib:6.1f} MiB" if f.uss_mib is not None else ""
    return f"  {name:<22} CPU {f.cpu_percent:5.2f} % of a core, RSS {f.rss_mib:6.1f} MiB{uss}, " \
           f"{f.processes:2d} processes{ratio}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rows", default="4,2000", help="chat-list sizes, comma-separated")
    parser.add_argument("--target", choices=("app", "page", "both"), default="both")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="linda-bench-idle-"))
    sim = Simulator(free_port(), root / "sim", loading_seconds=0.3, sync_seconds=0.5, resume_sync_seconds=0.3)
    sim.start()
    try:
        data = root / "data"
        link_profile(data, sim)
        profile = data / "profile"
        print(f"browser: {CHROMIUM}; {args.seconds:.0f} s idle per run after {SETTLE_SECONDS:.0f} s to settle; "
              f"{psutil.cpu_count()} cores")
        for rows in (int(r) for r in args.rows.split(",")):
            sim.configure(chat_rows=rows)
            print(f"chat list of {rows} rows:")
            floor = hold_script(FLOOR_SCRIPT, [str(profile), sim.url, CHROMIUM, chrome_user_agent(), OFFLINE],
                                args.seconds)
            print(show("(a) bare Playwright", floor, None), flush=True)
            if args.target in ("app", "both"):
                print(show("(b) linda-desktop run", hold_app(data, sim.url, args.seconds), floor), flush=True)
            if args.target in ("page", "both"):
                page = hold_script(PAGE_SCRIPT, [str(profile), sim.url, CHROMIUM, OFFLINE, str(REPO)], args.seconds)
                print(show("(c) WhatsAppPage only", page, floor), flush=True)
        print("target: CPU ratio <= 1.2")
    finally:
        sim.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
