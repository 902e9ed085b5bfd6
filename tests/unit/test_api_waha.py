"""WAHA's dialect, driven with the shapes of WAHA's published OpenAPI (tests/data/waha/schemas.json,
generated from the spec: see its "source") and with an existing WAHA client library (waha-py,
generated from the same spec) against the real server thread."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from linda_desktop.api import waha
from linda_desktop.api.outbox import waha_body
from linda_desktop.api.server import ApiServer
from linda_desktop.api.store import EventStore
from linda_desktop.base.events import SessionState, StateChanged
from linda_desktop.base.paths import resolve_paths
from linda_desktop.base.settings import Settings
from linda_desktop.service.session_service import SessionService

TOKEN = "waha-test-token-" + "y" * 27
SCHEMAS = json.loads((Path(__file__).resolve().parents[1] / "data" / "waha" / "schemas.json").read_text())["schemas"]


def check(name: str, value: Any) -> None:
    schema = dict(SCHEMAS[name])
    jsonschema.validate(value, schema)


@pytest.fixture
def service(tmp_path: Path) -> SessionService:
    return SessionService(resolve_paths(tmp_path / "data"), Settings(), wa_url="http://127.0.0.1:9/", browser=None,
                          on_event=lambda event: None)


@pytest.fixture
def api(service: SessionService) -> Iterator[ApiServer]:
    server = ApiServer(service, port=0, token_loader=lambda: TOKEN).start()
    assert server.wait_ready(10), server.error
    yield server
    server.close()


def incoming() -> dict[str, Any]:
    return {"id": "false_15557654321@c.us_3EB0AA", "chat_id": "15557654321@c.us", "chat_pn": None,
            "from": "15557654321",
            "from_id": "15557654321@c.us", "author": None, "sender_name": "Ann", "type": "chat", "text": "hi",
            "timestamp": 1760000000, "group": False, "from_me": False, "backfilled": True, "ack": None}


def test_webhook_envelopes_match_the_published_schemas(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "s.sqlite3")
    try:
        msg = store.append("message", incoming())
        ack = store.append("ack", {"id": "true_15557654321@c.us_3EB0BB", "chat_id": "15557654321@c.us", "ack": 3})
        status = store.append("session.status", {"name": "default", "status": "WORKING",
                                                 "statuses": [{"status": "WORKING", "timestamp": 1}]})
        assert msg and ack and status
        env = waha_body(msg, "15550001234")
        check("WAHAWebhookMessage", env)
        assert env["payload"]["backfilled"] is True and env["payload"]["from"] == "15557654321@c.us"
        check("WAHAWebhookMessageAck", waha_body(ack, "15550001234"))
        assert waha_body(ack, "15550001234")["payload"]["ackName"] == "READ"
        check("WAHAWebhookSessionStatus", waha_body(status, "15550001234"))
    finally:
        store.close()


def test_signature_is_hmac_sha512_of_the_body() -> None:
    body = b'{"event":"message"}'
    headers = waha.sign("k", body)
    assert headers["X-Webhook-Hmac-Algorithm"] == "sha512"
    assert headers["X-Webhook-Hmac"] == hmac.new(b"k", body, hashlib.sha512).hexdigest()


def test_session_status_mapping() -> None:
    assert [waha.session_status(s.value) for s in SessionState] == [
        "STARTING", "STARTING", "WORKING", "SCAN_QR_CODE", "SCAN_QR_CODE", "FAILED", "STARTING", "STARTING", "FAILED"]


def test_the_waha_py_client_works_unchanged(api: ApiServer, service: SessionService) -> None:
    waha_client = pytest.importorskip("waha", reason="waha-py (a WAHA client on PyPI) is not installed")
    client = waha_client.WahaClient(f"http://127.0.0.1:{api.port}", api_key=TOKEN)
    try:
        assert client.ping.ping() == {"message": "pong"}
        sessions = client.sessions.list()
        assert [s["name"] for s in sessions] == ["default"]
        check("SessionInfo", sessions[0])
        assert sessions[0]["status"] == "STARTING"
        one = client.sessions.get("default")
        check("SessionInfo", one)
        service._last_qr = "2@ref,key,key,key,WEB"
        service.state = SessionState.NEEDS_LINK
        assert client.sessions.get("default")["status"] == "SCAN_QR_CODE"
        raw = client.auth.get_qr("default", params={"format": "raw"})
        check("QRCodeValue", raw)
        assert raw == {"value": "2@ref,key,key,key,WEB"}
        image = client.auth.get_qr("default", params={"format": "image"})  # Accept: application/json
        check("Base64File", image)
        assert image["mimetype"] == "image/png"
        # Sending while not connected: refused with a reason (WAHA's error shape), never dropped.
        body = {"session": "default", "chatId": "15557654321@c.us", "text": "hello"}
        waha_client.generated.models.MessageTextRequest.model_validate(body)
        with pytest.raises(Exception) as err:
            client.chatting.send_text(body)
        assert "503" in str(err.value) or "not connected" in str(err.value).lower()
    finally:
        client.close()


def test_x_api_key_and_bearer_both_work_and_other_sessions_are_404(api: ApiServer) -> None:
    import urllib.error
    import urllib.request

    base = f"http://127.0.0.1:{api.port}"

    def get(path: str, headers: dict[str, str]) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(urllib.request.Request(base + path, headers=headers), timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    assert get("/api/sessions", {"X-Api-Key": TOKEN})[0] == 200
    assert get("/api/sessions", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert get("/api/sessions", {"X-Api-Key": "wrong"})[0] == 401
    assert get("/v1/status", {"X-Api-Key": TOKEN})[0] == 200
    status, body = get("/api/sessions/other", {"X-Api-Key": TOKEN})
    assert status == 404 and body["statusCode"] == 404
    status, body = get("/api/default/auth/qr?format=raw", {"X-Api-Key": TOKEN})
    assert status == 422 and "SCAN_QR_CODE" in body["message"]
    assert get("/health", {"X-Api-Key": TOKEN})[0] == 503  # not connected yet
    assert get("/ping", {})[1] == {"message": "pong"}


def test_session_status_events_follow_state_changes(api: ApiServer, service: SessionService) -> None:
    import time

    service._fan_out(StateChanged(SessionState.NEEDS_LINK))
    service._fan_out(StateChanged(SessionState.CONNECTED, account="15550001234"))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (api.store is None or api.store.count("session.status") < 2):
        time.sleep(0.05)
    assert api.store is not None
    got = [e.payload["status"] for e in api.store.since(0) if e.kind == "session.status"]
    assert got == ["SCAN_QR_CODE", "WORKING"]
