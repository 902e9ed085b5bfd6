"""Frozen app vs `python -m linda_desktop`: start-to-tray and start-to-connected, same run.

    python tests/bench/bench_frozen.py --frozen /opt/linda-desktop/linda-desktop [--runs 5]
    python tests/bench/bench_frozen.py --build        # builds the bundle into build/bench-dist first

Both programs are measured in the same run, interleaved (frozen, source, frozen, …) so drift
hits each alike, on the same data folder and browser:

  tray:      process start → the app's icon is docked in a real X tray (Xvfb + openbox + tint2;
             detected in `xwininfo -root -tree` as an embedded window of the app's WM_CLASS,
             polled every 20 ms). The tray app runs against the WhatsApp Web simulator.
  connected: `run --json` process start → its `connected` event, on a linked session.

Prints each sample, the medians and frozen/source ratios, and a JSON line. Needs Xvfb, openbox,
tint2, xwininfo, a Chromium, and (Linux) dbus-run-session + gnome-keyring: it re-runs itself in
a private D-Bus session with a throw-away keyring when there is none.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "installers"))

from smoke import keyring_session_argv  # noqa: E402

CHROMIUM = os.environ.get("LINDA_BROWSER", "/usr/bin/chromium")


def tray_time(desk, argv: list[str], timeout: float = 60) -> float:
    """Seconds from process start to the icon docked in the tray; the app is then quit (SIGTERM)."""
    from tests.screenshots.shoot import stop

    started = time.monotonic()
    proc = desk.start(argv, cwd=str(REPO))
    try:
        while time.monotonic() - started < timeout:
            if desk.tray_icon() is not None:
                return time.monotonic() - started
            if proc.poll() is not None:
                raise SystemExit(f"{argv[0]} exited with {proc.returncode} before its tray icon appeared")
            time.sleep(0.02)
        raise SystemExit(f"no tray icon within {timeout}s: {argv}")
    finally:
        stop(proc, grace=30)
        deadline = time.monotonic() + 10
        while desk.tray_icon() is not None and time.monotonic() < deadline:
            time.sleep(0.05)


def connected_time(argv: list[str], data_dir: Path, url: str) -> float:
    from tests.e2e.harness import AppProcess

    app = AppProcess(data_dir, url)
    app.cmd = [*argv, "run", "--json", "--data-dir", str(data_dir), "--wa-url", url, "--browser", CHROMIUM]
    app.start()
    try:
        event = app.wait_state("connected", 90)
        assert not app.of("qr"), app.summary()
        seconds = float(event["_t"])
        assert app.terminate(60) == 0
        return seconds
    finally:
        app.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frozen", type=Path, help="the frozen executable")
    parser.add_argument("--build", action="store_true", help="build the bundle first (build/bench-dist)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    wrapped = keyring_session_argv([sys.executable, *sys.argv])
    if wrapped:
        return subprocess.call(wrapped)

    frozen = args.frozen
    if args.build or frozen is None:
        import build_release

        dist = REPO / "build" / "bench-dist"
        frozen = build_release.build_bundle(dist, REPO / "build" / "bench-work") / "linda-desktop"
    programs = {"frozen": [str(frozen)], "source": [sys.executable, "-m", "linda_desktop"]}

    from tests.e2e.harness import write_settings
    from tests.screenshots.shoot import Desktop
    from tests.whatsapp_sim.control import Simulator, free_port

    samples: dict[str, dict[str, list[float]]] = {k: {"tray": [], "connected": []} for k in programs}
    with tempfile.TemporaryDirectory(prefix="bench-frozen-") as scratch:
        work = Path(scratch)
        sim = Simulator(free_port(), work / "sim", loading_seconds=0.3, qr_interval=3, first_qr_seconds=3)
        sim.start()
        try:
            # One linked session, shared by every run (each run ends with a clean exit).
            data = work / "data"
            write_settings(data, flush_delay_seconds=2)
            from tests.e2e.harness import AppProcess

            linker = AppProcess(data, sim.url)
            linker.cmd = [str(frozen), "run", "--json", "--data-dir", str(data), "--wa-url", sim.url,
                          "--browser", CHROMIUM]
            linker.start()
            linker.wait_for(lambda e: e.get("event") == "qr", 60)
            sim.link()
            linker.wait_for(lambda e: e.get("event") == "backup" and e.get("reason") == "link", 60)
            linker.terminate(60)
            linker.close()

            with Desktop(work) as desk:
                for i in range(args.runs):
                    for name, program in programs.items():
                        cmd = [*program, "--data-dir", str(data), "--wa-url", sim.url, "--browser", CHROMIUM]
                        seconds = tray_time(desk, cmd)
                        samples[name]["tray"].append(seconds)
                        print(f"run {i + 1} {name:6s} tray      {seconds:6.2f}s", flush=True)
            for i in range(args.runs):
                for name, program in programs.items():
                    seconds = connected_time(program, data, sim.url)
                    samples[name]["connected"].append(seconds)
                    print(f"run {i + 1} {name:6s} connected {seconds:6.2f}s", flush=True)
        finally:
            sim.stop()

    summary: dict = {"runs": args.runs, "frozen": str(frozen)}
    for metric in ("tray", "connected"):
        medians = {name: statistics.median(samples[name][metric]) for name in programs}
        summary[metric] = {**{k: round(v, 3) for k, v in medians.items()},
                           "ratio_frozen_to_source": round(medians["frozen"] / medians["source"], 3)}
        print(f"{metric:9s} median: frozen {medians['frozen']:.2f}s, source {medians['source']:.2f}s, "
              f"frozen/source {medians['frozen'] / medians['source']:.2f}", flush=True)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
