"""Outgoing webhooks against a real local HTTP receiver: order, signature, retries, give-up."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from linda_desktop.api.errors import ApiUnavailable
from linda_desktop.api.webhooks import WebhookSender, check_webhook_url, signature

TOKEN = "webhook-token"
FAST = (0.05, 0.05, 0.05)


class Receiver:
    """Answers with the statuses in ``plan`` (then 200), records every request."""

    def __init__(self, plan: list[int] | None = None) -> None:
        self.plan = list(plan or [])
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    status = receiver.plan.pop(0) if receiver.plan else 200
                    receiver.requests.append({"body": body, "headers": dict(self.headers), "status": status})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def wait(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_events_arrive_in_order_signed(receiver: Receiver) -> None:
    sender = WebhookSender(receiver.url, TOKEN, retry_delays=FAST)
    try:
        for n in range(20):
            sender.send({"event": "message", "id": str(n), "text": f"m{n}"})
        assert wait(lambda: sender.delivered == 20)
        ids = [json.loads(r["body"])["id"] for r in receiver.requests]
        assert ids == [str(n) for n in range(20)]
        first = receiver.requests[0]
        assert first["headers"]["X-Linda-Event"] == "message"
        expected = "sha256=" + hmac.new(TOKEN.encode(), first["body"], hashlib.sha256).hexdigest()
        assert first["headers"]["X-Linda-Signature"] == expected == signature(TOKEN, first["body"])
        assert len({r["headers"]["X-Linda-Delivery"] for r in receiver.requests}) == 20
    finally:
        sender.close()


def test_5xx_and_429_are_retried_with_the_same_delivery_id() -> None:
    receiver = Receiver([500, 503, 429])
    sender = WebhookSender(receiver.url, TOKEN, retry_delays=FAST)
    try:
        sender.send({"event": "message", "id": "x"})
        assert wait(lambda: sender.delivered == 1)
        assert [r["status"] for r in receiver.requests] == [500, 503, 429, 200]
        assert len({r["headers"]["X-Linda-Delivery"] for r in receiver.requests}) == 1
        assert sender.retries == 3 and sender.failed == 0
    finally:
        sender.close()
        receiver.close()


def test_4xx_is_not_retried_and_the_next_event_still_goes() -> None:
    receiver = Receiver([400])
    sender = WebhookSender(receiver.url, TOKEN, retry_delays=FAST)
    try:
        sender.send({"event": "message", "id": "refused"})
        sender.send({"event": "message", "id": "next"})
        assert wait(lambda: sender.delivered == 1 and sender.failed == 1)
        assert [json.loads(r["body"])["id"] for r in receiver.requests] == ["refused", "next"]
    finally:
        sender.close()
        receiver.close()


def test_unreachable_receiver_gives_up_after_the_retries_then_recovers() -> None:
    receiver = Receiver()
    url = receiver.url
    receiver.close()  # nothing listens there now
    sender = WebhookSender(url, TOKEN, retry_delays=FAST)
    try:
        sender.send({"event": "message", "id": "lost"})
        assert wait(lambda: sender.failed == 1)
        assert sender.retries == len(FAST)
        assert sender.stats()["pending"] == 0
    finally:
        sender.close()


def test_receiver_down_for_a_while_gets_the_event_when_back() -> None:
    probe = Receiver()
    port = probe.server.server_port
    probe.close()  # the bot is not up yet
    sender = WebhookSender(f"http://127.0.0.1:{port}/hook", TOKEN, retry_delays=(0.3,) * 6)
    got: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    try:
        sender.send({"event": "message", "id": "late"})
        assert wait(lambda: sender.retries >= 1)
        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)  # the bot comes up
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            assert wait(lambda: sender.delivered == 1, 5)
            assert json.loads(got[0])["id"] == "late"
        finally:
            server.shutdown()
            server.server_close()
    finally:
        sender.close()


def test_full_queue_drops_the_oldest() -> None:
    receiver = Receiver()
    port = receiver.server.server_port
    receiver.close()
    sender = WebhookSender(f"http://127.0.0.1:{port}/", TOKEN, retry_delays=(5.0,), max_queue=3)
    try:
        for n in range(6):
            sender.send({"event": "message", "id": str(n)})
        assert sender.dropped >= 2
        assert sender.stats()["pending"] <= 3
    finally:
        sender.close()


@pytest.mark.parametrize("url", ["http://192.168.1.5/hook", "http://example.com/hook", "https://10.0.0.1/",
                                 "ftp://127.0.0.1/", "127.0.0.1:3000", "http://user:pw@127.0.0.1/"])
def test_webhook_url_must_be_local_http(url: str) -> None:
    with pytest.raises(ApiUnavailable):
        check_webhook_url(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:3000/hook", "http://localhost:8080/", "http://[::1]:9/x"])
def test_local_webhook_urls_are_accepted(url: str) -> None:
    assert check_webhook_url(url) == url
