"""Smoke test of a frozen (or any) Linda Desktop executable, run from a source checkout.

    python installers/smoke.py /opt/linda-desktop/linda-desktop [--browser /usr/bin/chromium]

Checks, in order: ``--version``; ``doctor`` exits 0; ``run --json`` against the WhatsApp Web
simulator (tests/whatsapp_sim) shows a QR, the simulated phone links, ``connected`` and the
first backup follow; after a clean stop and a restart the session is ``connected`` again with
no QR at all. Every process started here is ended here. On Linux without a D-Bus session it
re-runs itself under ``dbus-run-session`` with an unlocked throw-away gnome-keyring (the app
refuses to keep backup keys anywhere but a real keyring).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from linda_desktop import __version__  # noqa: E402


@dataclass
class SmokeResult:
    version: str = ""
    doctor_seconds: float = 0.0
    first_qr_seconds: float = 0.0
    linked_seconds: float = 0.0
    restart_connected_seconds: float = 0.0
    restart_states: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "log"}


def say(result: SmokeResult, text: str) -> None:
    result.log.append(text)
    print(f"smoke: {text}", flush=True)


def keyring_session_argv(argv: list[str]) -> list[str] | None:
    """The command that re-runs ``argv`` in a private D-Bus session with an unlocked keyring, or
    None when that is not needed (not Linux, a session exists) or not possible."""
    if not sys.platform.startswith("linux") or os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return None
    if not (shutil.which("dbus-run-session") and shutil.which("gnome-keyring-daemon")):
        return None
    # A throw-away keyring in a scratch home, as tests/run.sh does: never the user's own keyring.
    script = ('scratch="$(mktemp -d)"; trap \'rm -rf "$scratch"\' EXIT; '
              'export XDG_RUNTIME_DIR="$scratch/run" XDG_DATA_HOME="$scratch/data" XDG_CONFIG_HOME="$scratch/config"; '
              'mkdir -p "$XDG_RUNTIME_DIR" "$XDG_DATA_HOME" "$XDG_CONFIG_HOME"; chmod 700 "$XDG_RUNTIME_DIR"; '
              'printf %s smoke-keyring | gnome-keyring-daemon --unlock --components=secrets >/dev/null; '
              '"$@"')
    return ["dbus-run-session", "--", "bash", "-c", script, "smoke", *argv]


def _cmd(exe: list[str], *args: str, data_dir: Path, browser: str | None, wa_url: str | None = None) -> list[str]:
    cmd = [*exe, *args, "--data-dir", str(data_dir)]
    if browser:
        cmd += ["--browser", browser]
    if wa_url:
        cmd += ["--wa-url", wa_url]
    return cmd


def run_smoke(exe: list[str], work: Path, *, browser: str | None = None, timeout: float = 120) -> SmokeResult:
    """Raise AssertionError on the first failed check; return timings."""
    from tests.e2e.harness import AppProcess
    from tests.whatsapp_sim.control import Simulator, free_port

    result = SmokeResult()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("LINDA_DATA_DIR", None)
    out = subprocess.run([*exe, "--version"], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0 and out.stdout.strip() == f"linda-desktop {__version__}", (out.returncode, out.stdout, out.stderr)
    result.version = out.stdout.strip()
    say(result, f"--version: {result.version}")

    data_dir = work / "data"
    started = time.monotonic()
    out = subprocess.run(_cmd(exe, "doctor", data_dir=data_dir, browser=browser), capture_output=True, text=True,
                         timeout=120, env=env)
    result.doctor_seconds = round(time.monotonic() - started, 2)
    assert out.returncode == 0, f"doctor failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    assert "[OK  ] browser" in out.stdout and "[OK  ] keyring" in out.stdout, out.stdout
    say(result, "doctor: ok (" + out.stdout.splitlines()[0].strip() + ")")

    sim = Simulator(free_port(), work / "sim-state", loading_seconds=0.3, qr_interval=3, first_qr_seconds=3)
    sim.start()
    apps: list[AppProcess] = []
    try:
        def start() -> AppProcess:
            app = AppProcess(data_dir, sim.url)
            app.cmd = _cmd(exe, "run", "--json", data_dir=data_dir, browser=browser, wa_url=sim.url)
            app.env = env
            apps.append(app.start())
            return app

        first = start()
        qr = first.wait_for(lambda e: e.get("event") == "qr" and not e.get("idle"), timeout)
        result.first_qr_seconds = round(qr["_t"], 2)
        sim.link()
        connected = first.wait_state("connected", timeout)
        result.linked_seconds = round(connected["_t"], 2)
        first.wait_for(lambda e: e.get("event") == "backup" and e.get("reason") == "link", timeout)
        say(result, f"linked: QR after {result.first_qr_seconds}s, connected after {result.linked_seconds}s, backup taken")
        code = first.terminate(60) if os.name != "nt" else (first.kill() or 0)
        assert code == 0, f"run did not exit cleanly on SIGTERM: {code}; stderr: {first.stderr_lines[-10:]}"
        first.close()

        second = start()
        connected = second.wait_state("connected", timeout)
        result.restart_connected_seconds = round(connected["_t"], 2)
        result.restart_states = second.states()
        assert not second.of("qr"), f"a QR was shown after the restart: {second.summary()}"
        say(result, f"restart: connected after {result.restart_connected_seconds}s with no QR ({' → '.join(result.restart_states)})")
        if os.name != "nt":
            assert second.terminate(60) == 0
    finally:
        for app in apps:
            app.close()
        sim.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Smoke-test a Linda Desktop executable")
    parser.add_argument("exe", nargs="+", help="the executable (and any leading arguments)")
    parser.add_argument("--browser", default=os.environ.get("LINDA_BROWSER"))
    parser.add_argument("--json", action="store_true", help="print the timings as JSON at the end")
    args = parser.parse_args(argv)
    wrapped = keyring_session_argv([sys.executable, *sys.argv])
    if wrapped:
        return subprocess.call(wrapped)
    with tempfile.TemporaryDirectory(prefix="linda-smoke-") as work:
        result = run_smoke(args.exe, Path(work), browser=args.browser)
    if args.json:
        print(json.dumps(result.to_json()))
    print("smoke: all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
