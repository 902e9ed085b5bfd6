"""The durable webhook outbox (api/outbox.py over api/store.py) against a real local HTTP receiver:
order, both signatures, back-off, dead letters, a receiver down across an app restart, a slow one."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from linda_desktop.api.errors import ApiUnavailable
from linda_desktop.api.outbox import TARGET, Outbox, backoff
from linda_desktop.api.store import EventStore
from linda_desktop.api.webhooks import check_webhook_url, signature

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


def store_at(tmp_path: Path) -> EventStore:
    return EventStore(tmp_path / "events.sqlite3")


def put(store: EventStore, n: int, kind: str = "message") -> None:
    assert store.append(kind, {"id": f"false_1@c.us_{n}", "chat_id": "1@c.us", "text": f"m{n}", "timestamp": n},
                        dedup=f"msg:{n}", targets=(TARGET,))


def outbox(store: EventStore, url: str, **kw: Any) -> Outbox:
    kw.setdefault("base_delay", 0.05)
    kw.setdefault("max_delay", 0.2)
    return Outbox(store, url, token=TOKEN, **kw).start()


def test_events_arrive_in_order_signed_with_their_event_id(receiver: Receiver, tmp_path: Path) -> None:
    store = store_at(tmp_path)
    box = outbox(store, receiver.url)
    try:
        for n in range(20):
            put(store, n)
        box.wake()
        assert wait(lambda: box.delivered == 20)
        bodies = [json.loads(r["body"]) for r in receiver.requests]
        assert [b["text"] for b in bodies] == [f"m{n}" for n in range(20)]
        first = receiver.requests[0]
        assert first["headers"]["X-Linda-Event"] == "message"
        assert first["headers"]["X-Linda-Delivery"] == bodies[0]["event_id"]
        expected = "sha256=" + hmac.new(TOKEN.encode(), first["body"], hashlib.sha256).hexdigest()
        assert first["headers"]["X-Linda-Signature"] == expected == signature(TOKEN, first["body"])
        assert store.outbox_stats(TARGET)["delivered"] == 20
    finally:
        box.close()
        store.close()


def test_same_message_id_is_stored_once_across_a_reopen(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    put(store, 1)
    assert store.append("message", {"id": "x"}, dedup="msg:1") is None
    store.close()
    again = store_at(tmp_path)
    try:
        assert again.append("message", {"id": "x"}, dedup="msg:1") is None
        assert again.count("message") == 1
    finally:
        again.close()


def test_5xx_and_429_are_retried_with_the_same_event_id_and_back_off(tmp_path: Path) -> None:
    r = Receiver([503, 429, 500])
    store = store_at(tmp_path)
    box = outbox(store, r.url)
    try:
        put(store, 1)
        box.wake()
        assert wait(lambda: box.delivered == 1)
        ids = {req["headers"]["X-Linda-Delivery"] for req in r.requests}
        assert len(r.requests) == 4 and len(ids) == 1
        assert box.retries == 3
    finally:
        box.close()
        store.close()
        r.close()
    assert [backoff(n, 1.0, 600.0) for n in (1, 2, 3, 4, 11, 12)] == [1, 2, 4, 8, 600, 600]


def test_4xx_is_dead_at_once_and_the_next_event_still_goes(tmp_path: Path) -> None:
    r = Receiver([400])
    store = store_at(tmp_path)
    box = outbox(store, r.url)
    try:
        put(store, 1)
        put(store, 2)
        box.wake()
        assert wait(lambda: box.delivered == 1)
        assert [json.loads(q["body"])["text"] for q in r.requests] == ["m1", "m2"]
        stats = box.stats()
        assert stats["dead"] == 1 and stats["delivered"] == 1 and stats["dead_letters"][0]["last_error"] == "HTTP 400"
        # After the owner fixed the receiver: the dead letter goes again.
        assert store.retry_dead(TARGET) == 1
        box.wake()
        assert wait(lambda: box.delivered == 2)
    finally:
        box.close()
        store.close()
        r.close()


def test_unreachable_receiver_becomes_a_dead_letter_after_the_limit(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    box = outbox(store, "http://127.0.0.1:9/hook", max_attempts=3)
    try:
        put(store, 1)
        box.wake()
        assert wait(lambda: store.outbox_stats(TARGET)["dead"] == 1)
        assert store.dead_letters(TARGET)[0]["attempts"] == 3
    finally:
        box.close()
        store.close()


def test_receiver_down_across_an_app_restart_gets_everything_once(tmp_path: Path) -> None:
    r = Receiver([503] * 1000)
    store = store_at(tmp_path)
    box = outbox(store, r.url)
    for n in range(5):
        put(store, n)
    box.wake()
    assert wait(lambda: len(r.requests) >= 3)
    box.close()
    store.close()  # the app stops (or is killed: the store is WAL, committed per event)
    r.plan.clear()
    store = store_at(tmp_path)
    box = outbox(store, r.url)
    try:
        assert wait(lambda: box.delivered == 5)
        ok = [json.loads(q["body"])["text"] for q in r.requests if q["status"] == 200]
        assert ok == [f"m{n}" for n in range(5)]
    finally:
        box.close()
        store.close()
        r.close()


def test_waha_dialect_signs_with_hmac_sha512(receiver: Receiver, tmp_path: Path) -> None:
    store = store_at(tmp_path)
    box = outbox(store, receiver.url, dialect="waha", hmac_key="secret", account=lambda: "15550001234")
    try:
        put(store, 1)
        box.wake()
        assert wait(lambda: box.delivered == 1)
        req = receiver.requests[0]
        body = json.loads(req["body"])
        assert body["event"] == "message" and body["session"] == "default" and body["id"].startswith("evt_")
        assert req["headers"]["X-Webhook-Hmac"] == hmac.new(b"secret", req["body"], hashlib.sha512).hexdigest()
        assert req["headers"]["X-Webhook-Hmac-Algorithm"] == "sha512"
        assert req["headers"]["X-Webhook-Request-Id"] == body["id"]
    finally:
        box.close()
        store.close()


@pytest.mark.parametrize("url", ["http://192.168.1.5/hook", "http://example.com/hook", "https://10.0.0.1/",
                                 "ftp://127.0.0.1/", "127.0.0.1:3000", "http://user:pw@127.0.0.1/"])
def test_webhook_url_must_be_local_http(url: str) -> None:
    with pytest.raises(ApiUnavailable):
        check_webhook_url(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:3000/hook", "http://localhost:8080/", "http://[::1]:9/x"])
def test_local_webhook_urls_are_accepted(url: str) -> None:
    assert check_webhook_url(url) == url


def test_prune_keeps_pending_deliveries_and_message_ids(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    try:
        for n in range(30):
            put(store, n)  # pending deliveries
        for n in range(30):
            assert store.append("state", {"state": "connected", "n": n}, targets=(TARGET,))
        for event, _attempts, _next in store.pending(TARGET, 100):
            if event.kind == "state" or event.payload.get("timestamp", 99) < 10:
                store.delivered(event.seq, TARGET)
        removed = store.prune(keep=5)
        assert removed == 25  # the delivered state events outside the newest 5
        assert store.count("message") == 30  # message ids stay: dedup across restarts
        assert len(store.pending(TARGET, 100)) == 20
        assert store.append("message", {"id": "again"}, dedup="msg:3") is None
        old = [e for e in store.since(0, 100) if e.kind == "message"]
        assert old[0].payload == {"chat_id": "1@c.us", "timestamp": 0}  # delivered, pruned: no text
        assert old[-1].payload["text"] == "m29"  # pending: kept whole
    finally:
        store.close()
