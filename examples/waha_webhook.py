#!/usr/bin/env python3
"""A WAHA-style webhook receiver for Linda Desktop (``webhook_format: "waha"``). Standard library only.

    linda-desktop api set-webhook http://127.0.0.1:3000/waha --format waha
    LINDA_API_TOKEN="$(linda-desktop api token)" python examples/waha_webhook.py --port 3000

Checks ``X-Webhook-Hmac`` (hex HMAC-SHA512 of the raw body; the key is ``webhook_hmac_key`` or,
by default, the API token), drops an event id it has already seen (deliveries are at least
once), and prints each message; ``backfilled`` ones arrived while the app or this receiver was
down. Answer 2xx quickly: anything else is retried with back-off.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args()
    key = os.environ.get("LINDA_WEBHOOK_KEY") or os.environ.get("LINDA_API_TOKEN")
    if not key:
        print("set LINDA_API_TOKEN (linda-desktop api token) or LINDA_WEBHOOK_KEY", file=sys.stderr)
        return 2
    seen: collections.OrderedDict[str, None] = collections.OrderedDict()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            want = hmac.new(key.encode(), body, hashlib.sha512).hexdigest()
            if self.headers.get("X-Webhook-Hmac-Algorithm") != "sha512" or \
                    not hmac.compare_digest(want, self.headers.get("X-Webhook-Hmac", "")):
                self.send_response(401)
                self.end_headers()
                return
            event = json.loads(body)
            self.send_response(200)
            self.end_headers()
            if event["id"] in seen:  # the same event delivered again after a retry
                return
            seen[event["id"]] = None
            while len(seen) > 10_000:
                seen.popitem(last=False)
            payload = event.get("payload") or {}
            if event["event"] == "message":
                tag = " (backfilled)" if payload.get("backfilled") else ""
                print(f"{payload.get('from')}: {payload.get('body')}{tag}", flush=True)
            elif event["event"] == "message.ack":
                print(f"ack {payload.get('ackName')} for {payload.get('id')}", flush=True)
            elif event["event"] == "session.status":
                print(f"session {payload.get('status')}", flush=True)

        def log_message(self, *args: object) -> None:
            pass

    HTTPServer(("127.0.0.1", args.port), Handler).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
