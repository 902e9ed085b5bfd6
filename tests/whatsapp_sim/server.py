"""HTTP layer of the simulator (stdlib ThreadingHTTPServer): routes onto ``Engine``."""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.whatsapp_sim import messaging
from tests.whatsapp_sim.engine import Engine, SimError

STATIC = Path(__file__).resolve().parent / "static"
MIN_CHROME = 100
_CHROME_RE = re.compile(r"(?:Headless)?Chrome/(\d+)")
UNSUPPORTED = {
    "en": ("WhatsApp works with Google Chrome 100+",
           "To use WhatsApp, update Chrome or use Mozilla Firefox, Safari, Microsoft Edge or Opera.",
           "Update Google Chrome"),
    "pt": ("O WhatsApp funciona com o Google Chrome 100+",
           "Para usar o WhatsApp, atualize o Chrome ou use o Mozilla Firefox, Safari, Microsoft Edge ou Opera.",
           "Atualizar o Google Chrome"),
    "de": ("WhatsApp funktioniert mit Google Chrome 100+",
           "Um WhatsApp zu nutzen, aktualisiere Chrome oder verwende Mozilla Firefox, Safari, Microsoft Edge "
           "oder Opera.", "Google Chrome aktualisieren"),
}


def unsupported_reason(user_agent: str) -> str | None:
    """Why WhatsApp would refuse this browser: a headless UA, or a Chrome older than 100."""
    if "HeadlessChrome" in user_agent:
        return "headless"
    match = _CHROME_RE.search(user_agent)
    if match and int(match.group(1)) < MIN_CHROME:
        return "outdated"
    return None


def pick_language(configured: str, accept_language: str) -> str:
    """The UI language: the ``language`` switch, else the browser's first language we have."""
    if configured:
        return configured
    for part in accept_language.split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in UNSUPPORTED:
            return code
    return "en"


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, engine: Engine, host: str = "127.0.0.1") -> None:
        self.engine = engine
        self.started = time.time()
        super().__init__((host, port), Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and the
        # browser's delayed ACK hold every answer back ~40 ms (real servers do not).
        sock, address = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, address


class Handler(BaseHTTPRequestHandler):
    server: SimServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet: polls are many
        if os.environ.get("WA_SIM_VERBOSE"):
            super().log_message(fmt, *args)

    # ------------------------------------------------------------------ plumbing
    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data: Any, status: int = 200) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return {}
        raw = self.rfile.read(length)
        try:
            data = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            raise SimError("bad_json", "body is not JSON", 400) from None
        if not isinstance(data, dict):
            raise SimError("bad_json", "body must be a JSON object", 400)
        return data

    @property
    def ua(self) -> str:
        return self.headers.get("User-Agent", "")

    # ------------------------------------------------------------------ routes
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        engine = self.server.engine
        try:
            if url.path == "/":
                self._index()
            elif url.path.startswith("/static/"):
                self._static(url.path[len("/static/"):])
            elif messaging.handles(url.path):  # bot API extras (messaging.py)
                self._json(*messaging.get(engine, url.path, query))
            elif url.path == "/_sim/api/poll":
                ack = query.get("ack", "")
                self._json(engine.page_poll(query.get("page_id", ""), self._report(query),
                                            int(ack) if ack.isdigit() else None))
            elif url.path == "/_sim/health":
                self._json({"ok": True, "pid": os.getpid(), "port": self.server.server_port,
                            "started": self.server.started})
            elif url.path == "/_sim/devices":
                self._json(engine.devices_view())
            elif url.path == "/_sim/pages":
                self._json({"pages": engine.pages_view()})
            elif url.path == "/_sim/config":
                self._json({"config": engine.config, "offline": engine.offline,
                            "faults": {**engine.faults, "frozen": engine.frozen}})
            elif url.path == "/_sim/counters":
                self._json(engine.counters_view())
            elif url.path == "/_sim/phone/messages":
                since = query.get("since", "0")
                self._json({"messages": engine.messages_view(query.get("direction") or None,
                                                             int(since) if since.isdigit() else 0)})
            elif url.path == "/favicon.ico":
                self._send(204, b"", "image/x-icon")
            else:
                self._send(404, b"<!doctype html><title>Not found</title><h1>Not found</h1>",
                           "text/html; charset=utf-8")
        except SimError as err:
            self._json({"error": err.code, "message": str(err)}, err.status)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        engine = self.server.engine
        try:
            body = self._body()
            pid = body.get("page_id", "")
            report = body.get("report") if isinstance(body.get("report"), dict) else {}
            route: dict[str, Callable[[], Any]] = {
                # the page
                "/_sim/api/hello": lambda: engine.page_hello(body["page_id"], self.ua, report),
                "/_sim/api/qr": lambda: engine.page_qr(body["page_id"], self.ua, body.get("via", "")),
                "/_sim/api/login": lambda: engine.page_login(
                    body["page_id"], body["device_id"], body.get("gen"), body.get("key", ""),
                    body.get("salt"), self.ua),
                "/_sim/api/use_here": lambda: engine.page_use_here(body["page_id"], body.get("via", "click")),
                "/_sim/api/click": lambda: engine.page_click(body["page_id"], body.get("label", ""),
                                                             bool(body.get("testid"))),
                "/_sim/api/close_conflict": lambda: engine.page_close_conflict(body["page_id"]),
                "/_sim/api/bye": lambda: engine.page_bye(pid, report),
                "/_sim/api/logout": lambda: engine.page_logout(
                    pid, body.get("device_id"), body.get("reason", ""), body.get("code"), report),
                "/_sim/api/shortcake": lambda: engine.page_shortcake(
                    body["page_id"], body.get("action", ""), body, self.headers.get("Origin", "")),
                "/_sim/api/pairing_code": lambda: engine.page_pairing_code(body["page_id"], body.get("phone", "")),
                "/_sim/api/send": lambda: engine.page_send(
                    body["page_id"], body["device_id"], body["secret"], body["to"], body["text"]),
                # the phone and the server (tests)
                "/_sim/phone/message": lambda: engine.phone_message(
                    body["from"], body["text"], body.get("name"), body.get("account"), body.get("chat_id")),
                "/_sim/phone/link": lambda: engine.phone_link(body.get("qr"), body.get("account")),
                "/_sim/phone/revoke": lambda: {"revoked": engine.phone_revoke(
                    body.get("device_id"), body.get("reason"))},
                "/_sim/phone/confirm_code": lambda: engine.phone_confirm_code(body.get("code")),
                "/_sim/phone/enter_code": lambda: engine.phone_enter_code(body["code"]),
                "/_sim/phone/age": lambda: {"aged": engine.age_phone(float(body.get("days", 14)),
                                                                     body.get("device_id"))},
                "/_sim/tear_rotation": lambda: {"torn": engine.tear_rotation(body.get("device_id"),
                                                                             body.get("reason"))},
                "/_sim/faults": lambda: {"faults": engine.set_faults(body)},
                "/_sim/logout_pages": lambda: {"pages": engine.logout_pages(body.get("device_id"),
                                                                            body.get("reason") or "")},
                "/_sim/counters/reset": lambda: engine.reset_counters(),
                "/_sim/conflict": lambda: {"pages": engine.conflict(body.get("device_id"))},
                "/_sim/offline": lambda: engine.set_offline(True),
                "/_sim/online": lambda: engine.set_offline(False),
                "/_sim/config": lambda: {"config": engine.configure(body)},
            }
            route.update(messaging.post_routes(engine, body))  # bot API extras (messaging.py)
            handler = route.get(url.path)
            if handler is None:
                raise SimError("not_found", f"no route {url.path}", 404)
            try:
                result = handler()
            except KeyError as missing:
                raise SimError("bad_request", f"missing field {missing}", 400) from None
            self._json(result if result is not None else {"ok": True})
        except SimError as err:
            self._json({"error": err.code, "message": str(err)}, err.status)

    # ------------------------------------------------------------------ pages
    @staticmethod
    def _report(query: dict[str, str]) -> dict[str, Any]:
        """What a page says about itself in its poll's query string."""
        out: dict[str, Any] = {k: query[k] for k in ("mode", "state", "url", "lang") if query.get(k)}
        for key in ("rb", "rc"):
            if query.get(key, "").isdigit():
                out[key] = int(query[key])
        for short, key in (("vis", "visible"), ("av", "available")):
            if query.get(short) in ("0", "1"):
                out[key] = query[short] == "1"
        return out

    def _index(self) -> None:
        engine = self.server.engine
        lang = pick_language(engine.config["language"], self.headers.get("Accept-Language", ""))
        if unsupported_reason(self.ua):
            title, text, link = UNSUPPORTED[lang]
            html = (STATIC / "unsupported.html").read_text().replace("{lang}", lang).replace(
                "{title}", title).replace("{text}", text).replace("{link}", link)
        else:
            html = (STATIC / "index.html").read_text().replace("/*CONFIG*/null", json.dumps(engine.page_config()))
        self._send(200, html.encode(), "text/html; charset=utf-8")

    def _static(self, name: str) -> None:
        path = (STATIC / name).resolve()
        if STATIC not in path.parents or not path.is_file():
            self._send(404, b"not found", "text/plain")
            return
        ctype = {"js": "text/javascript", "css": "text/css"}.get(path.suffix[1:], "text/plain")
        self._send(200, path.read_bytes(), ctype + "; charset=utf-8")


def serve(port: int, engine: Engine) -> SimServer:
    """Binds now (so callers know the port answers) and serves on a background thread."""
    server = SimServer(port, engine)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="wa-sim-http", daemon=True)
    thread.start()
    return server
