"""A local webhook receiver for the bot-API end-to-end tests: records every POST, checks both
signature forms (ours, ``X-Linda-Signature`` HMAC-SHA256; WAHA's, ``X-Webhook-Hmac`` HMAC-SHA512)
and can play a receiver that is down."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Records every POST; answers 503 while ``down``; checks both signature forms."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.posts: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.bad = 0
        self.down = False
        self.refused = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if hook.down:
                    hook.refused += 1
                    self.send_response(503)
                    self.end_headers()
                    return
                if "X-Webhook-Hmac" in self.headers:
                    want = hmac.new(hook.token.encode(), body, hashlib.sha512).hexdigest()
                    ok = hmac.compare_digest(want, self.headers["X-Webhook-Hmac"]) and \
                        self.headers.get("X-Webhook-Hmac-Algorithm") == "sha512"
                else:
                    want = "sha256=" + hmac.new(hook.token.encode(), body, hashlib.sha256).hexdigest()
                    ok = hmac.compare_digest(want, self.headers.get("X-Linda-Signature", ""))
                if not ok:
                    hook.bad += 1
                hook.posts.append(json.loads(body))
                hook.headers.append(dict(self.headers))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def messages(self) -> list[dict[str, Any]]:
        return [p for p in self.posts if p.get("event") == "message"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
