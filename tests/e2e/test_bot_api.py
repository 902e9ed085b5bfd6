"""The local bot API end to end (issue 6): the real `linda-desktop run --json`, real Chromium,
the WhatsApp Web simulator, the example bot as a subprocess, a webhook receiver, SIGKILL.

Driver path covered: the in-page bridge (browser/messaging.py) over the WPP API that the
simulator serves in place of wa-js; the real, pinned wa-js file is also injected into every
page here when it is installed (npm ci), and must not get in the way.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import REPO, wait_until, write_settings
from tests.e2e.webhook_receiver import Receiver
from tests.plugins.fixtures import free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.keyring]

CUSTOMER = "15557654321"


@pytest.fixture
def token() -> str:
    from linda_desktop.api.token import load_token

    value = load_token(create=True)
    assert value
    return value


class EventStream:
    """GET /v1/events on a thread; collects the events."""

    def __init__(self, base: str, token: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.received_at: dict[str, float] = {}
        self.error: BaseException | None = None
        request = urllib.request.Request(base + "/v1/events", headers={"Authorization": f"Bearer {token}"})
        self.response = urllib.request.urlopen(request, timeout=30)
        assert self.response.status == 200
        assert self.response.headers["Content-Type"].startswith("text/event-stream")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        data: list[str] = []
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\n")
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    event = json.loads("\n".join(data))
                    if event.get("event") == "message":
                        self.received_at[event["id"]] = time.monotonic()
                    self.events.append(event)
                    data = []
        except (OSError, ValueError) as exc:
            self.error = exc

    def messages(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == "message"]

    def close(self) -> None:
        try:
            self.response.close()
        except Exception:  # noqa: BLE001 - already closed
            pass


def api(base: str, token: str | None, path: str, body: Any = None, method: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


@pytest.fixture
def webhook(token: str) -> Iterator[Receiver]:
    hook = Receiver(token)
    yield hook
    hook.close()


@pytest.fixture
def bot_settings(data_dir: Path, webhook: Receiver) -> dict[str, Any]:
    port = free_port()
    write_settings(data_dir, api_enabled=True, api_port=port, webhook_url=webhook.url)
    return {"base": f"http://127.0.0.1:{port}", "port": port}


@pytest.fixture
def bots() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def start_bot(bots: list, argv: list[str], base: str, token: str, log: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "LINDA_API_TOKEN": token, "LINDA_API_URL": base}
    with open(log, "w") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    bots.append(proc)
    return proc


def wait_reply(sim: Any, chat_id: str, contains: str, timeout: float = 30) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def check() -> bool:
        found[:] = [m for m in sim.sent_messages() if m["chat_id"] == chat_id and contains in m["text"]]
        return bool(found)

    assert wait_until(check, timeout, 0.1), f"no reply containing {contains!r}; sent: {sim.sent_messages()}"
    return found[0]


def test_message_reaches_stream_and_webhook_bot_replies_and_survives_sigkill(
        start_app, sim, token: str, webhook: Receiver, bot_settings: dict[str, Any], bots, tmp_path: Path) -> None:
    base = bot_settings["base"]
    app = start_app()
    app.wait_state("needs_link", 60)
    app.wait_for(lambda e: e.get("event") == "qr", 30)

    # While linking: status and the QR payload (the same one the app shows).
    assert wait_until(lambda: api(base, token, "/v1/status")[0] == 200, 20)
    assert api(base, token, "/v1/status")[1]["state"] == "needs_link"
    status, qr = api(base, token, "/v1/qr")
    assert status == 200 and qr["state"] == "needs_link" and qr["qr"].startswith("2@")

    sim.link()
    app.wait_state("connected", 30)
    assert wait_until(lambda: api(base, token, "/v1/status")[1].get("ready_to_send"), 20)
    status_body = api(base, token, "/v1/status")[1]
    assert status_body["connected"] is True and status_body["account"] == "15550001234"
    assert status_body["messaging"]["api"] == "wa-js (simulator)"
    assert status_body["webhook"]["url"] == webhook.url
    assert api(base, token, "/v1/qr")[1]["qr"] is None

    # 1. A customer writes: the event stream and the webhook both get it.
    stream = EventStream(base, token)
    try:
        assert wait_until(lambda: any(e.get("event") == "state" for e in stream.events), 5)
        sent_at = time.monotonic()
        delivered = sim.deliver(CUSTOMER, "Hello, are you open today?", name="Ann")
        assert wait_until(lambda: stream.messages(), 15), stream.events
        message = stream.messages()[0]
        assert message["text"] == "Hello, are you open today?"
        assert message["chat_id"] == f"{CUSTOMER}@c.us" and message["from"] == CUSTOMER
        assert message["sender_name"] == "Ann" and message["type"] == "chat" and message["group"] is False
        assert delivered["id"] in message["id"]
        assert stream.received_at[message["id"]] - sent_at < 5
        assert wait_until(lambda: webhook.messages(), 15), webhook.posts
        assert webhook.messages()[0]["id"] == message["id"]
        assert webhook.bad == 0

        # 2. The example bot answers; the simulator's phone records the reply — once.
        bot = start_bot(bots, [sys.executable, "examples/bot.py"], base, token, tmp_path / "bot.log")
        assert wait_until(lambda: "connected to the event stream" in (tmp_path / "bot.log").read_text(), 15)
        sim.deliver(CUSTOMER, "Do you deliver?", name="Ann")
        reply = wait_reply(sim, f"{CUSTOMER}@c.us", '"Do you deliver?"')
        assert reply["text"] == 'Thanks for your message! We got: "Do you deliver?"'
        # The app's own sent message comes back from WhatsApp as fromMe: never an event, no loop.
        time.sleep(1.0)
        replies = [m for m in sim.sent_messages() if "Do you deliver?" in m["text"]]
        assert len(replies) == 1, replies
        assert all(m["text"] != reply["text"] for m in stream.messages())
    finally:
        stream.close()

    # 3. SIGKILL the app; start it again: no QR, the bot reconnects and keeps answering.
    app.kill()
    again = start_app()
    again.wait_state("connected", 60)
    assert again.of("qr") == []
    assert bot.poll() is None, "the bot must survive the app's restart"
    assert wait_until(lambda: (tmp_path / "bot.log").read_text().count("connected to the event stream") >= 2, 30), \
        (tmp_path / "bot.log").read_text()
    hooks_before = len(webhook.messages())
    sim.deliver(CUSTOMER, "Still there after the restart?", name="Ann")
    wait_reply(sim, f"{CUSTOMER}@c.us", '"Still there after the restart?"')
    assert wait_until(lambda: len(webhook.messages()) > hooks_before, 15)
    assert "Still there" not in (tmp_path / "data" / "logs" / "linda-desktop.log").read_text()


def test_node_example_bot_replies(start_app, sim, token: str, bot_settings: dict[str, Any], bots,
                                  tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    base = bot_settings["base"]
    app = start_app()
    app.wait_state("needs_link", 60)
    app.wait_for(lambda e: e.get("event") == "qr", 30)
    sim.link()
    app.wait_state("connected", 30)
    start_bot(bots, [node, "examples/bot.mjs"], base, token, tmp_path / "node-bot.log")
    assert wait_until(lambda: "connected to the event stream" in (tmp_path / "node-bot.log").read_text(), 20), \
        (tmp_path / "node-bot.log").read_text()
    assert wait_until(lambda: api(base, token, "/v1/status")[1].get("ready_to_send"), 20)
    sim.deliver("15550009999", "ping from node test")
    reply = wait_reply(sim, "15550009999@c.us", '"ping from node test"')
    assert reply["text"] == 'Thanks! We got: "ping from node test"'


def test_send_errors_and_no_token_end_to_end(start_app, sim, token: str, bot_settings: dict[str, Any]) -> None:
    base = bot_settings["base"]
    app = start_app()
    app.wait_state("needs_link", 60)
    assert wait_until(lambda: api(base, token, "/v1/status")[0] == 200, 20)
    assert api(base, None, "/v1/status")[0] == 401
    assert api(base, "wrong-" + token, "/v1/messages", {"to": CUSTOMER, "text": "x"})[0] == 401
    # Not linked yet: a valid send is refused with 503 (retry later), not an error page.
    status, body = api(base, token, "/v1/messages", {"to": CUSTOMER, "text": "too early"})
    assert status == 503 and body["error"] == "not_connected"
    app.wait_for(lambda e: e.get("event") == "qr", 30)
    sim.link()
    app.wait_state("connected", 30)
    assert wait_until(lambda: api(base, token, "/v1/status")[1].get("ready_to_send"), 20)
    status, body = api(base, token, "/v1/messages", {"to": "+1 (555) 765-4321", "text": "Your order shipped."})
    assert status == 200, body
    assert body["to"] == f"{CUSTOMER}@c.us" and body["id"] and body["ack"] == 1
    assert [m["text"] for m in sim.sent_messages()] == ["Your order shipped."]
    assert api(base, token, "/v1/messages", {"to": "12", "text": "x"})[0] == 400
    # WhatsApp (here the simulator) refuses the chat: 502 send_failed with its reason.
    status, body = api(base, token, "/v1/messages", {"to": "15550001111-1600000000@g.us", "text": "x"})
    assert (status, body["error"]) == (502, "send_failed"), body
    assert "invalid" in body["message"]
    # The session is still fine after all that.
    assert api(base, token, "/v1/status")[1]["state"] == "connected"


def test_non_loopback_host_is_refused(start_app, sim, data_dir: Path) -> None:
    port = free_port()
    write_settings(data_dir, api_enabled=True, api_host="0.0.0.0", api_port=port)
    app = start_app()
    notice = app.wait_for(lambda e: e.get("event") == "notice" and e.get("kind") == "api_unavailable", 30)
    assert "0.0.0.0" in notice["message"] and "127.0.0.1" in notice["message"]
    app.wait_state("needs_link", 60)  # the session itself is unaffected
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
    if sys.platform.startswith("linux"):
        assert _listening_addresses(port) == []  # not on 0.0.0.0 nor anywhere else


def _listening_addresses(port: int) -> list[str]:
    """Local addresses with a TCP socket listening on ``port`` (Linux /proc; no traffic sent)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, state = fields[1], fields[3]
            host, _, hex_port = address.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                found.append(host)
    return found
