"""``python -m tests.whatsapp_sim --port 8765 --state-dir DIR [options]``: run the simulator.

Options given on the command line override (and are saved over) the config kept in
``DIR/state.json``; options left out keep their saved value. SIGTERM/SIGINT: save and exit 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from tests.whatsapp_sim.engine import Engine
from tests.whatsapp_sim.server import serve


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.whatsapp_sim",
                                     description="Local WhatsApp Web simulator for tests.")
    parser.add_argument("--port", type=int, required=True, help="fixed port (the origin must not move)")
    parser.add_argument("--state-dir", type=Path, required=True, help="where linked devices persist")
    parser.add_argument("--qr-interval", type=float, dest="qr_interval")
    parser.add_argument("--first-qr-seconds", type=float, dest="first_qr_seconds")
    parser.add_argument("--qr-count", type=int, dest="qr_count")
    parser.add_argument("--loading-seconds", type=float, dest="loading_seconds")
    parser.add_argument("--passkey", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--expose-internal", action=argparse.BooleanOptionalAction, default=None,
                        dest="expose_internal", help="expose window.require('WAWebSocketModel') & co.")
    parser.add_argument("--account", help="phone number of the simulated phone")
    parser.add_argument("--wpp-api", action=argparse.BooleanOptionalAction, default=None, dest="wpp_api",
                        help="serve the WPP (wa-js) API subset the bot bridge uses (default on)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = {k: getattr(args, k) for k in ("qr_interval", "first_qr_seconds", "qr_count",
                                               "loading_seconds", "passkey", "expose_internal",
                                               "account", "wpp_api")}
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
