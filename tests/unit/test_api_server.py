"""The bot API's HTTP server against hostile and broken clients: real sockets, a real (not running)
SessionService, the real server thread. Nothing here may crash the server or the service."""

from __future__ import annotations

import json
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from linda_desktop.api import server as api_server
from linda_desktop.api.errors import ApiUnavailable
from linda_desktop.api.http import MAX_BODY
from linda_desktop.api.server import ApiServer, check_host
from linda_desktop.base.events import MessageReceived, SessionState, StateChanged
from linda_desktop.base.paths import resolve_paths
from linda_desktop.base.settings import Settings
from linda_desktop.service.session_service import SessionService

TOKEN = "unit-test-token-" + "x" * 27


@pytest.fixture
def service(tmp_path: Path) -> SessionService:
    paths = resolve_paths(tmp_path / "data")
    return SessionService(paths, Settings(), wa_url="http://127.0.0.1:9/", browser=None,
                          on_event=lambda event: None)


@pytest.fixture
def api(service: SessionService) -> Iterator[ApiServer]:
    server = ApiServer(service, port=0, token_loader=lambda: TOKEN).start()
    assert server.wait_ready(10), server.error
    yield server
    server.close()
    assert not server._thread.is_alive()


def raw(port: int, data: bytes, *, timeout: float = 5.0, read_all: bool = True) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if read_all:
                sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server answered and closed first (e.g. 503 when full)
            pass
        buf = b""
        while b"\r\n\r\n" not in buf:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1]) if lines and lines[0].startswith("HTTP/") else 0
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0") or 0)
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return status, headers, body


def request(port: int, method: str, path: str, *, token: str | None = TOKEN, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    merged = {"Content-Type": "application/json", **(headers or {})} if body is not None else dict(headers or {})
    if body is not None:
        merged.setdefault("Content-Length", str(len(body)))
    lines += [f"{k}: {v}" for k, v in merged.items()]
    status, got, data = raw(port, ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = data
    return status, got, parsed


def alive(api: ApiServer) -> None:
    status, _, body = request(api.port, "GET", "/v1/status")
    assert status == 200 and body["state"] == "starting"


# ------------------------------------------------------------------ token

def test_no_token_wrong_token_wrong_scheme_are_401(api: ApiServer) -> None:
    for path in ("/v1/status", "/v1/qr", "/v1/events", "/v1/nothing"):
        status, headers, body = request(api.port, "GET", path, token=None)
        assert status == 401 and body["error"] == "unauthorized", path
        assert headers["www-authenticate"].startswith("Bearer")
    assert request(api.port, "GET", "/v1/status", token=TOKEN[:-1] + "y")[0] == 401
    assert request(api.port, "GET", "/v1/status", token="")[0] == 401
    assert request(api.port, "POST", "/v1/messages", token="nope", body=b'{"to":"15551234567","text":"x"}')[0] == 401
    status, _, _ = request(api.port, "GET", "/v1/status", token=None, headers={"Authorization": f"Basic {TOKEN}"})
    assert status == 401
    alive(api)


def test_status_qr_and_openapi(api: ApiServer, service: SessionService) -> None:
    status, _, body = request(api.port, "GET", "/v1/status")
    assert status == 200
    assert body["state"] == "starting" and body["connected"] is False and body["webhook"] is None
    assert request(api.port, "GET", "/v1/qr")[2] == {"state": "starting", "qr": None}
    status, _, doc = request(api.port, "GET", "/v1/openapi.json", token=None)  # the document is public
    assert status == 200 and doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) >= {"/v1/status", "/v1/qr", "/v1/messages", "/v1/events"}
    status, headers, page = request(api.port, "GET", "/docs", token=None)
    assert status == 200 and headers["content-type"].startswith("text/html") and b"/v1/messages" in page


def test_host_header_must_be_loopback(api: ApiServer) -> None:
    for host in ("evil.example", f"rebind.example:{api.port}", "127.0.0.1:1", "10.0.0.1", f"[::2]:{api.port}"):
        data = f"GET /v1/status HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        assert raw(api.port, data.encode())[0] == 421, host
    data = f"GET /v1/status HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    assert raw(api.port, data.encode())[0] == 400  # no Host at all
    for host in (f"localhost:{api.port}", "127.0.0.1", f"[::1]:{api.port}"):
        data = f"GET /v1/status HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        assert raw(api.port, data.encode())[0] == 200, host


# ------------------------------------------------------------------ bodies

@pytest.mark.parametrize("body, code", [
    (b"{not json", "bad_json"),
    (b"", "bad_json"),
    (b"\xff\xfe\x00garbage", "bad_json"),
    (b"[1, 2]", "bad_body"),
    (b'"text"', "bad_body"),
    (b'{"to": "15551234567"}', "bad_body"),
    (b'{"text": "hi"}', "bad_body"),
    (b'{"to": 15551234567, "text": "hi"}', "bad_body"),
    (b'{"to": "15551234567", "text": ["hi"]}', "bad_body"),
    (b'{"to": "15551234567", "text": "hi", "txt": "typo"}', "bad_body"),
    (b'{"to": "12", "text": "hi"}', "invalid_recipient"),
    (b'{"to": "not a number", "text": "hi"}', "invalid_recipient"),
    (b'{"to": "abc@c.us", "text": "hi"}', "invalid_recipient"),
    (b'{"to": "15551234567", "text": "   "}', "invalid_text"),
    (json.dumps({"to": "15551234567", "text": "x" * 65537}).encode(), "invalid_text"),
    (b"[" * 100000, "bad_json"),
])
def test_bad_bodies_are_400_with_a_reason(api: ApiServer, body: bytes, code: str) -> None:
    status, _, answer = request(api.port, "POST", "/v1/messages", body=body)
    assert status == 400, answer
    assert answer["error"] == code and answer["message"]


def test_wrong_content_type_method_and_path(api: ApiServer) -> None:
    body = b'{"to": "15551234567", "text": "hi"}'
    assert request(api.port, "POST", "/v1/messages", body=body, headers={"Content-Type": "text/plain"})[0] == 415
    status, headers, _ = request(api.port, "GET", "/v1/messages")
    assert status == 405 and headers["allow"] == "POST"
    assert request(api.port, "DELETE", "/v1/status")[0] == 405
    assert request(api.port, "GET", "/v1/unknown")[0] == 404
    assert request(api.port, "GET", "/")[0] == 404


def test_valid_send_while_not_connected_is_503_with_retry_after(api: ApiServer) -> None:
    status, headers, body = request(api.port, "POST", "/v1/messages",
                                    body=b'{"to": "+1 555 123 4567", "text": "hello"}')
    assert status == 503 and body["error"] == "not_connected" and headers["retry-after"] == "5"


def test_oversized_body_is_413_before_it_is_read(api: ApiServer) -> None:
    head = (f"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:{api.port}\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {50 * 1024 * 1024}\r\n\r\n").encode()
    started = time.monotonic()
    status, headers, body = raw(api.port, head + b"{" * 1000, read_all=False)
    assert status == 413 and json.loads(body)["error"] == "body_too_large"
    assert headers["connection"] == "close" and time.monotonic() - started < 2
    # Just over the limit, really sent: refused too.
    big = b'{"to": "15551234567", "text": "' + b"a" * MAX_BODY + b'"}'
    assert request(api.port, "POST", "/v1/messages", body=big)[0] == 413
    alive(api)


@pytest.mark.parametrize("data, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /v1/status\r\n\r\n", 400),
    (b"GET http://evil/v1/status HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /v1/status HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n", 505),
    (b"get /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400),
    (b"GET /v1/status HTTP/1.1\r\nBad Header\r\n\r\n", 400),
    (b"GET /v1/status HTTP/1.1\r\n: empty\r\n\r\n", 400),
    (b"GET /v1/status HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
    (b"GET /v1/status HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n", 431),
    (b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n", 411),
    (b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 411),
    (b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n", 400),
    (b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
    (b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nshort", 408),
])
def test_malformed_requests_get_an_answer_not_a_crash(api: ApiServer, data: bytes, status: int,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("linda_desktop.api.http.BODY_TIMEOUT", 0.5)
    assert raw(api.port, data)[0] == status
    alive(api)


def test_slow_client_is_dropped(api: ApiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_server, "HEADER_TIMEOUT", 0.5)
    with socket.create_connection(("127.0.0.1", api.port), timeout=5) as sock:
        sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finishes the head
        started = time.monotonic()
        assert sock.recv(100) == b""  # closed by the server
        assert time.monotonic() - started < 3
    alive(api)


def test_random_bytes_never_crash_it(api: ApiServer) -> None:
    rng = random.Random(6)
    for _ in range(150):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
        if rng.random() < 0.5:
            data = b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n" + data
        try:
            raw(api.port, data, timeout=3)
        except OSError:
            pass
    alive(api)


def test_keep_alive_serves_several_requests_on_one_connection(api: ApiServer) -> None:
    one = f"GET /v1/qr HTTP/1.1\r\nHost: 127.0.0.1:{api.port}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", api.port), timeout=5) as sock:
        sock.sendall(one * 3)
        data = b""
        deadline = time.monotonic() + 5
        while data.count(b"HTTP/1.1 200") < 3 and time.monotonic() < deadline:
            data += sock.recv(65536)
    assert data.count(b"HTTP/1.1 200") == 3


def test_connection_limit(api: ApiServer) -> None:
    socks = [socket.create_connection(("127.0.0.1", api.port), timeout=5) for _ in range(api_server.MAX_CONNECTIONS)]
    try:
        time.sleep(0.3)
        status, _, _body = raw(api.port, b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert status == 503
    finally:
        for sock in socks:
            sock.close()
    time.sleep(0.3)
    alive(api)


# ------------------------------------------------------------------ bind

@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.com", ""])
def test_non_loopback_host_is_refused(host: str) -> None:
    with pytest.raises(ApiUnavailable) as info:
        check_host(host)
    assert "127.0.0.1" in str(info.value)


@pytest.mark.parametrize("host, bind", [("127.0.0.1", "127.0.0.1"), ("localhost", "127.0.0.1"),
                                        ("::1", "::1"), ("[::1]", "::1"), ("127.0.0.5", "127.0.0.5")])
def test_loopback_hosts_are_accepted(host: str, bind: str) -> None:
    assert check_host(host) == bind


def test_server_with_non_loopback_host_never_listens(service: SessionService) -> None:
    notices: list[tuple[str, str]] = []
    service.notify = lambda kind, message: notices.append((kind, message))  # type: ignore[method-assign]
    server = ApiServer(service, host="0.0.0.0", port=0, token_loader=lambda: TOKEN).start()
    assert not server.wait_ready(10)
    assert isinstance(server.error, ApiUnavailable) and "0.0.0.0" in str(server.error)
    assert notices and notices[0][0] == "api_unavailable"
    assert not server.running
    server.close()


def test_port_in_use_and_missing_keyring_say_why(service: SessionService) -> None:
    from linda_desktop.base.errors import KeyringUnavailable

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = ApiServer(service, port=taken.getsockname()[1], token_loader=lambda: TOKEN).start()
        assert not server.wait_ready(10)
        assert "in use" in str(server.error)

    def no_keyring() -> str:
        raise KeyringUnavailable("No usable system keyring", "install one")
    server = ApiServer(service, port=0, token_loader=no_keyring).start()
    assert not server.wait_ready(10)
    assert "keyring" in str(server.error)


def test_start_api_is_off_by_default(service: SessionService, tmp_path: Path) -> None:
    from linda_desktop.api import start_api

    handle = start_api(service, service.paths, Settings())
    assert handle.running is False and handle.url is None
    handle.close()


# ------------------------------------------------------------------ events

class Stream:
    def __init__(self, port: int, last_id: str | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        extra = f"Last-Event-ID: {last_id}\r\n" if last_id else ""
        self.sock.sendall(f"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                          f"{extra}\r\n".encode())
        self.buf = b""

    def events(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while self.buf.count(b"\ndata: ") < count and time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            self.buf += chunk
        out = []
        for frame in self.buf.split(b"\n\n"):
            fields = dict(line.split(": ", 1) for line in frame.decode().split("\n") if ": " in line
                          and not line.startswith(":"))
            if "data" in fields:
                out.append({**json.loads(fields["data"]), "_id": fields.get("id")})
        return out

    def close(self) -> None:
        self.sock.close()


def message(n: int) -> MessageReceived:
    return MessageReceived(id=f"false_15557654321@c.us_{n}", chat_id="15557654321@c.us", text=f"text {n}",
                           sender="15557654321")


def test_event_stream_gets_state_and_messages_and_replays_after_reconnect(api: ApiServer,
                                                                          service: SessionService) -> None:
    stream = Stream(api.port)
    first = stream.events(1)
    assert first[0]["event"] == "state" and first[0]["state"] == "starting"
    service.on_event(StateChanged(SessionState.CONNECTED, account="15550001234"))  # as _emit does
    service._fan_out(message(1))
    got = stream.events(3)
    assert [e["event"] for e in got] == ["state", "state", "message"]
    assert got[1] == {"event": "state", "state": "connected", "account": "15550001234", "_id": got[1]["_id"],
                      "event_id": got[1]["event_id"]}
    assert got[1]["event_id"].startswith("evt_") and got[1]["_id"].isdigit()
    assert got[2]["text"] == "text 1" and got[2]["from"] == "15557654321"
    last_id = got[2]["_id"]
    stream.close()
    # Missed while away: replayed after Last-Event-ID.
    service._fan_out(message(2))
    service._fan_out(message(3))
    time.sleep(0.2)
    again = Stream(api.port, last_id)
    replay = again.events(2)
    assert [e["text"] for e in replay] == ["text 2", "text 3"]
    again.close()
    # An id from another run (or garbage) gets the current state instead.
    other = Stream(api.port, "0-5")
    assert other.events(1)[0]["event"] == "state"
    other.close()
    alive(api)


def test_too_many_streams_is_503_and_closing_frees_them(api: ApiServer) -> None:
    streams = [Stream(api.port) for _ in range(api_server.MAX_STREAMS)]
    for stream in streams:
        assert stream.events(1)
    status, _, body = request(api.port, "GET", "/v1/events")
    assert status == 503 and body["error"] == "busy"
    for stream in streams:
        stream.close()
    time.sleep(0.5)
    extra = Stream(api.port)
    assert extra.events(1)[0]["event"] == "state"
    extra.close()


def test_close_stops_streams_and_unsubscribes(service: SessionService) -> None:
    server = ApiServer(service, port=0, token_loader=lambda: TOKEN).start()
    assert server.wait_ready(10)
    stream = Stream(server.port)
    assert stream.events(1)
    server.close()
    stream.sock.settimeout(5)
    data = b""
    while True:  # the server ends the stream
        chunk = stream.sock.recv(65536)
        if not chunk:
            break
        data += chunk
    stream.close()
    assert service._api_listeners == ()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", server.port)) != 0


def test_last_event_id_replays_across_a_restart_and_dedups_by_message_id(service: SessionService) -> None:
    """The SSE ids are the event store's sequence numbers: a bot that reconnects after the app
    restarted gets what it missed; the same WhatsApp message id is stored once."""
    first = ApiServer(service, port=0, token_loader=lambda: TOKEN).start()
    assert first.wait_ready(10)
    stream = Stream(first.port)
    stream.events(1)
    service._fan_out(message(1))
    got = stream.events(2)
    last_id = got[-1]["_id"]
    stream.close()
    service._fan_out(message(2))
    service._fan_out(message(2))  # WhatsApp fired twice (a decrypted ciphertext, a replay)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and first.store.count("message") < 2:  # type: ignore[union-attr]
        time.sleep(0.02)
    first.close()
    second = ApiServer(service, port=0, token_loader=lambda: TOKEN).start()
    try:
        assert second.wait_ready(10)
        service._fan_out(message(3))
        again = Stream(second.port, last_id)
        replay = again.events(2)
        assert [e["text"] for e in replay] == ["text 2", "text 3"]
        assert int(replay[0]["_id"]) > int(last_id)
        again.close()
        assert second.store is not None and second.store.count("message") == 3
        # `linda-desktop status` (the service's dict, as Diagnostics shows it) carries the API's view.
        status = service.status()["bot_api"]
        assert status["api"]["url"] == second.url and status["api"]["events"]["messages"] == 3
    finally:
        second.close()
