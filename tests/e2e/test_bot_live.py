"""The bot API's live path (issue 14, "Prove it"), with the real app, Chromium and the simulator:

* a ciphertext placeholder then the decrypted message (same id) is one message, with its text;
* an ``@lid`` sender is resolved to the phone number WhatsApp knows, and stays a lid when it
  does not;
* a message 200 ms after launch is delivered;
* acks: sent → delivered → read, from the simulator's phone;
* a send while not connected is refused with a reason, or queued when asked and sent later;
* a quiet phone: after connect the device does not show as online (and without the bridge it
  does: Playwright's focus emulation makes the page "focused");
* liveness: the simulator's socket goes silent with the chat list on screen; the app notices,
  records the episode and reloads;
* liveness escalation: the socket stays silent across the reload (the freeze is the server's);
  the app waits its back-off, then restarts the browser, records both episodes and says so.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import wait_until, write_settings
from tests.e2e.test_bot_api import CUSTOMER, free_port
from tests.e2e.test_bot_replay import receiver_fixture, token_fixture  # noqa: F401  (fixtures)
from tests.e2e.webhook_receiver import Receiver

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.keyring]


def call(base: str, token: str, path: str, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        with urllib.request.urlopen(urllib.request.Request(base + path, data=data, headers=headers), timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def setup(data_dir: Path, receiver: Receiver, **extra: Any) -> str:
    port = free_port()
    write_settings(data_dir, api_enabled=True, api_port=port, webhook_url=receiver.url, flush_delay_seconds=1,
                   **extra)
    return f"http://127.0.0.1:{port}"


def linked(start_app: Any, sim: Any) -> Any:
    app = start_app()
    app.wait_state("needs_link", 60)
    sim.link()
    app.wait_state("connected", 30)
    # Past the first history sync (a device that leaves during it is logged out) and the link backup.
    app.wait_for(lambda e: e.get("event") == "backup" and e.get("reason") == "link", 60)
    return app


def ready(base: str, token: str) -> bool:
    status, body = call(base, token, "/v1/status")
    quiet = body.get("messaging", {}).get("link", {}).get("quiet") if status == 200 else None
    return bool(body.get("ready_to_send")) and quiet is not None


def test_ciphertext_then_decrypted_is_one_message_and_lid_senders_are_resolved(
        start_app, sim, data_dir: Path, receiver: Receiver, token: str) -> None:
    base = setup(data_dir, receiver)
    linked(start_app, sim)
    assert wait_until(lambda: ready(base, token), 30)
    sim._request("POST", "/_sim/phone/message_ex", {"from": CUSTOMER, "text": "secret words", "ciphertext": True})
    assert wait_until(lambda: receiver.messages(), 15), receiver.posts
    time.sleep(1.5)
    got = receiver.messages()
    assert len(got) == 1 and got[0]["text"] == "secret words" and got[0]["type"] == "chat"
    # @lid: the number when WhatsApp knows it, the lid when it does not.
    sim._request("POST", "/_sim/phone/message_ex", {"from": "15550009999", "text": "from a lid",
                                                    "lid": "123456789012345"})
    sim._request("POST", "/_sim/phone/message_ex", {"from": "15550008888", "text": "hidden number",
                                                    "lid": "987654321098765", "hide_phone": True})
    assert wait_until(lambda: len(receiver.messages()) >= 3, 15), receiver.posts
    by_text = {m["text"]: m for m in receiver.messages()}
    assert by_text["from a lid"]["chat_id"] == "123456789012345@lid"
    assert by_text["from a lid"]["from"] == "15550009999"
    assert by_text["hidden number"]["from"] is None
    assert receiver.bad == 0


def test_message_200_ms_after_launch_is_delivered(start_app, sim, data_dir: Path,
                                                  receiver: Receiver) -> None:
    setup(data_dir, receiver)
    assert linked(start_app, sim).terminate() == 0
    app = start_app()
    time.sleep(0.2)
    sim.deliver(CUSTOMER, "right after launch", name="Ann")
    app.wait_state("connected", 60)
    assert wait_until(lambda: [m for m in receiver.messages() if m["text"] == "right after launch"], 30), \
        receiver.posts
    time.sleep(1.0)
    assert len([m for m in receiver.messages() if m["text"] == "right after launch"]) == 1


def test_acks_sent_delivered_read_and_sends_while_not_connected(
        start_app, sim, data_dir: Path, receiver: Receiver, token: str) -> None:
    base = setup(data_dir, receiver)
    app = start_app()
    app.wait_state("needs_link", 60)
    assert wait_until(lambda: call(base, token, "/v1/status")[0] == 200, 20)
    # Not connected: refused with a reason, or queued when asked.
    status, body = call(base, token, "/v1/messages", {"to": CUSTOMER, "text": "too early"})
    assert status == 503 and body["error"] == "not_connected" and "queue" in body["message"]
    status, body = call(base, token, "/v1/messages", {"to": CUSTOMER, "text": "queued hello", "queue": True})
    assert status == 202 and body["queued"] is True and body["queue_id"].startswith("evt_")
    assert call(base, token, "/v1/status")[1]["send_queue"]["pending"] == 1
    sim.link()
    app.wait_state("connected", 30)
    assert wait_until(lambda: any(m["text"] == "queued hello" for m in sim.sent_messages()), 30), sim.sent_messages()
    assert wait_until(lambda: call(base, token, "/v1/status")[1]["send_queue"]["delivered"] == 1, 10)
    assert [m["text"] for m in sim.sent_messages()].count("too early") == 0
    # Truthful acks: the POST answers with WhatsApp's id; 1 → 2 → 3 follow as the phone gets and reads it.
    assert wait_until(lambda: ready(base, token), 20)
    status, sent = call(base, token, "/v1/messages", {"to": CUSTOMER, "text": "ack me"})
    assert status == 200 and sent["id"].startswith("true_") and sent["ack"] == 1
    raw_id = sent["id"].rsplit("_", 1)[1]
    sim._request("POST", "/_sim/phone/ack", {"id": raw_id, "ack": 2})
    time.sleep(0.5)
    sim._request("POST", "/_sim/phone/ack", {"id": raw_id, "ack": 3})

    def acks() -> list[int]:
        return [p["ack"] for p in receiver.posts if p.get("event") == "ack" and p["id"] == sent["id"]]
    assert wait_until(lambda: acks() == [1, 2, 3], 15), receiver.posts
    assert receiver.bad == 0


def test_quiet_phone_the_device_does_not_show_online(start_app, sim, data_dir: Path, receiver: Receiver,
                                                     token: str) -> None:
    def available() -> list[Any]:
        return [p.get("available") for p in sim.pages() if p.get("live") and p.get("mode") == "connected"]

    # Without the bridge: Playwright's focus emulation makes the headless page "focused": online.
    write_settings(data_dir, flush_delay_seconds=1)
    app = linked(start_app, sim)
    assert wait_until(lambda: available() == [True], 10), sim.pages()
    assert app.terminate() == 0
    # With the bot API: markUnavailable after every connect; it stays offline.
    base = setup(data_dir, receiver)
    app = start_app()
    app.wait_state("connected", 60)
    assert wait_until(lambda: ready(base, token), 30)
    assert call(base, token, "/v1/status")[1]["messaging"]["link"]["quiet"] is True
    # The page reports its presence on its next poll (150 ms); from then on it stays offline.
    assert wait_until(lambda: available() == [False], 5), sim.pages()
    samples = []
    for _ in range(15):
        samples += available()
        time.sleep(0.2)
    assert samples and not any(samples), samples


def test_connected_but_dead_is_noticed_recorded_and_healed(start_app, sim, data_dir: Path, receiver: Receiver,
                                                           token: str) -> None:
    # The bound: a server round trip every 20 checks (10 s here), answered or not within 10 s.
    base = setup(data_dir, receiver, liveness_check_seconds=0.5)
    app = linked(start_app, sim)
    assert wait_until(lambda: ready(base, token), 30)
    sim.freeze(True)
    frozen_at = time.monotonic()
    notice = app.wait_for(lambda e: e.get("event") == "notice" and e.get("kind") == "liveness", 40)
    assert "reload" in notice["message"]
    assert time.monotonic() - frozen_at < 25
    sim.freeze(False)
    assert wait_until(lambda: call(base, token, "/v1/status")[1]["state"] == "connected", 40)
    history = json.loads((data_dir / "state" / "session-state.json").read_text())
    episodes = call(base, token, "/v1/status")[1]["messaging"].get("link", {}).get("liveness_episodes") or []
    # Seen as a failed server round trip, the page's stream leaving NORMAL, or the page no longer
    # answering, whichever comes first; never as "all is well".
    assert episodes and episodes[0]["why"] in ("health_failed", "stream", "health_timeout"), episodes
    assert episodes[0]["action"] == "reload"
    assert any(h.get("event") == "liveness" and h["details"]["action"] == "reload"
               for h in history.get("history", [])), history


def test_a_reload_that_does_not_cure_escalates_to_a_browser_restart_after_the_back_off(
        start_app, sim, data_dir: Path, receiver: Receiver, token: str) -> None:
    from linda_desktop.service.bot_link import HEAL_BACKOFF_SECONDS

    base = setup(data_dir, receiver, liveness_check_seconds=0.5)
    app = linked(start_app, sim)
    assert wait_until(lambda: ready(base, token), 30)
    browsers = set(app.browser_pids())
    assert browsers
    # Frozen on the server: the reloaded page logs in, shows its chats, and is silent again.
    sim.freeze(True)

    def liveness(action: str) -> Any:
        return lambda e: e.get("event") == "notice" and e.get("kind") == "liveness" and action in e["message"]
    reload = app.wait_for(liveness("reload"), 40)
    assert browsers <= set(app.browser_pids())  # a reload keeps the browser
    restart = app.wait_for(liveness("restart browser"), HEAL_BACKOFF_SECONDS[0] + 60)
    # Back-off: the reloaded page gets its time before the app goes further.
    assert restart["_t"] - reload["_t"] >= HEAL_BACKOFF_SECONDS[0], (reload, restart)
    assert [e["message"] for e in app.of("notice") if e.get("kind") == "liveness"] == \
        [reload["message"], restart["message"]]
    after = app.events.index(restart)
    sim.freeze(False)
    # Reported as a state too (the supervisor relaunches the closed browser), then a new browser
    # and the session is back.
    app.wait_state("browser_crashed", 30, after=after)
    app.wait_state("connected", 90, after=after)
    assert wait_until(lambda: bool(app.browser_pids()) and not browsers & set(app.browser_pids()), 30), \
        (browsers, app.browser_pids())
    history = json.loads((data_dir / "state" / "session-state.json").read_text())
    actions = [h["details"]["action"] for h in history.get("history", []) if h.get("event") == "liveness"]
    assert actions == ["reload", "restart_browser"], history
    assert wait_until(lambda: ready(base, token), 30)
    episodes = call(base, token, "/v1/status")[1]["messaging"]["link"]["liveness_episodes"]
    assert [e["action"] for e in episodes] == ["reload", "restart_browser"], episodes
    # The restart ended the episode: the healthy new page is not healed again.
    time.sleep(5.0)
    assert len([e for e in app.of("notice") if e.get("kind") == "liveness"]) == 2
    assert receiver.bad == 0
