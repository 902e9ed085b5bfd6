"""``python -m tests.whatsapp_sim --port 8765 --state-dir DIR [options]``: run the simulator.

Options given on the command line override (and are saved over) the config kept in
``DIR/state.json``; options left out keep their saved value. SIGTERM/SIGINT: save and exit 0.
Every option of README "Options" can be given as ``--config '{"key": value, ...}'``; the common
ones also have flags.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from tests.whatsapp_sim.engine import Engine
from tests.whatsapp_sim.server import serve

FLAGS = ("qr_interval", "first_qr_seconds", "qr_count", "loading_seconds", "boot_seconds", "sync_seconds",
         "passkey", "internals", "account", "wpp_api", "language")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.whatsapp_sim",
                                     description="Local WhatsApp Web simulator for tests.")
    parser.add_argument("--port", type=int, required=True, help="fixed port (the origin must not move)")
    parser.add_argument("--state-dir", type=Path, required=True, help="where linked devices persist")
    parser.add_argument("--config", type=json.loads, default={}, help="JSON object of options (README)")
    parser.add_argument("--qr-interval", type=float, dest="qr_interval")
    parser.add_argument("--first-qr-seconds", type=float, dest="first_qr_seconds")
    parser.add_argument("--qr-count", type=int, dest="qr_count")
    parser.add_argument("--loading-seconds", type=float, dest="loading_seconds")
    parser.add_argument("--boot-seconds", type=float, dest="boot_seconds")
    parser.add_argument("--sync-seconds", type=float, dest="sync_seconds")
    parser.add_argument("--passkey", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--internals", action=argparse.BooleanOptionalAction, default=None,
                        help="window.require serves WAWeb* modules after boot (default on)")
    parser.add_argument("--account", help="phone number of the simulated phone")
    parser.add_argument("--language", help="en, pt or de (default: follow the browser)")
    parser.add_argument("--wpp-api", action=argparse.BooleanOptionalAction, default=None, dest="wpp_api",
                        help="serve the WPP (wa-js) API subset the bot bridge uses (default on)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides: dict[str, Any] = dict(args.config)
    overrides.update({k: getattr(args, k) for k in FLAGS if getattr(args, k) is not None})
    engine = Engine(args.state_dir, overrides)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = serve(args.port, engine)
    print(f"whatsapp-sim listening on http://127.0.0.1:{server.server_port}/", flush=True)
    while not stop.wait(2.0):
        engine.save_if_dirty()
    server.shutdown()
    server.server_close()
    engine.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
