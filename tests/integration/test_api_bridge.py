"""The in-page message bridge (browser/messaging.py) in real Chromium.

* over the WPP API the simulator serves (what the e2e tests use), including a tab reopened by
  the storage flush and malformed pushes from the page;
* with the real, pinned @wppconnect/wa-js injected into a page that is not WhatsApp: it loads
  (also under a strict Content-Security-Policy), waits for WhatsApp's modules, does not break
  the page probe, and sending says "not ready" instead of failing oddly.
"""

from __future__ import annotations

import asyncio
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from linda_desktop.base.events import PageState
from linda_desktop.browser.messaging import (
    MessageBridge,
    MessagingError,
    find_wajs,
    normalize_recipient,
    pinned_version,
)
from linda_desktop.browser.whatsapp import WhatsAppPage
from tests.plugins.fixtures import FAST
from tests.whatsapp_sim.control import Simulator, free_port

pytestmark = pytest.mark.browser


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def eventually(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.05)
    return check()


async def connected_page(sim: Simulator, tmp_path: Path, wa_options: dict[str, Any], bridge: MessageBridge,
                         *, attach_before_link: bool = True) -> WhatsAppPage:
    page = WhatsAppPage(tmp_path / "profile", sim.url, **wa_options)
    await page.start()
    if attach_before_link:
        await bridge.attach(page.page)
    await page.wait_for_state(PageState.QR, timeout=20)
    await asyncio.to_thread(sim.link)
    snap = await page.wait_for_state(PageState.CONNECTED, timeout=20)
    assert snap.state == PageState.CONNECTED
    return page


def test_bridge_attached_through_the_context_hook_runs_before_the_page_scripts(
        tmp_path: Path, wa_options: dict[str, Any]) -> None:
    """The service hands ``attach_context`` to WhatsAppPage.on_context: the bridge is an init
    script of the first document, not evaluated into a page that already runs (no message lost
    in the first moments after a launch)."""
    async def scenario(sim: Simulator) -> None:
        early = MessageBridge(lambda kind, data: None, find_wajs())
        page = WhatsAppPage(tmp_path / "p1", sim.url, **wa_options)
        page.on_context = early.attach_context
        await page.start()
        try:
            status = await eventually_status(early, page)
            assert status["early"] is True and status["hooked"] is True
        finally:
            await page.close()
        late = MessageBridge(lambda kind, data: None, find_wajs())
        page = WhatsAppPage(tmp_path / "p2", sim.url, **wa_options)
        await page.start()
        try:
            await page.wait_for_state(PageState.QR, timeout=20)  # the document that stays
            await late.attach(page.page)
            status = await eventually_status(late, page)
            assert status["early"] is False
        finally:
            await page.close()

    with Simulator(free_port(), tmp_path / "sim", **FAST) as sim:
        run(scenario(sim))


async def eventually_status(bridge: MessageBridge, page: WhatsAppPage) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    async def probe() -> bool:
        status = await bridge.status(page.page)
        if status and status.get("hooked"):
            found.append(status)
            return True
        return False
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not await probe():
        await asyncio.sleep(0.1)
    assert found, "the bridge never hooked"
    return found[0]


def test_recipients() -> None:
    assert normalize_recipient("+1 (555) 123-4567") == "15551234567@c.us"
    assert normalize_recipient("15551234567@c.us") == "15551234567@c.us"
    assert normalize_recipient("120363025246125486@g.us") == "120363025246125486@g.us"
    assert normalize_recipient("15551234567-1600000000@g.us") == "15551234567-1600000000@g.us"
    for bad in ("", "12", "abc", "1555@c.us", "15551234567@s.whatsapp.net", "+1 555 abc 4567", None, 15551234567):
        with pytest.raises(MessagingError) as info:
            normalize_recipient(bad)
        assert info.value.code == "invalid_recipient"


def test_bridge_over_the_simulated_wpp_api(tmp_path: Path, wa_options: dict[str, Any]) -> None:
    got: list[dict[str, Any]] = []
    own: list[dict[str, Any]] = []

    def on_page(kind: str, data: dict[str, Any]) -> None:
        if kind == "message":
            (own if data["from_me"] else got).append(data)

    bridge = MessageBridge(on_page, find_wajs())

    async def scenario(sim: Simulator) -> None:
        page = await connected_page(sim, tmp_path, wa_options, bridge)
        try:
            status = await bridge.status(page.page)
            assert status["api"] == "wa-js (simulator)" and status["ready"] and status["connected"]
            await asyncio.to_thread(sim.deliver, "15557654321", "first", name="Ann")
            assert await eventually(lambda: got)
            assert got[0]["text"] == "first" and got[0]["chat_id"] == "15557654321@c.us"
            assert got[0]["from"] == "15557654321" and got[0]["sender_name"] == "Ann"
            assert isinstance(got[0]["timestamp"], int) and got[0]["group"] is False

            result = await bridge.send(page.page, "15557654321@c.us", "reply one")
            assert result["ack"] == 1 and result["id"].startswith("true_15557654321@c.us_")
            sent = await asyncio.to_thread(sim.sent_messages)
            assert [m["text"] for m in sent] == ["reply one"]
            await asyncio.sleep(0.5)
            assert len(got) == 1, "our own message must not come back as an incoming one"
            assert [m["text"] for m in own] == ["reply one"] and own[0]["id"] == result["id"]

            # The quiet phone, the page's health and a round trip to the server.
            assert await bridge.quiet(page.page) is True
            health = await bridge.health(page.page)
            assert health is not None and health["ok"] and health["stream"]["info"] in ("NORMAL", "SYNCING")
            probe = await bridge.probe(page.page, timeout=5)
            assert probe is not None and probe["ok"] is True and not probe.get("skipped")
            # Catch-up: what is unread in the chats, marked backfilled, newer than each chat's mark.
            replayed = await bridge.replay(page.page, since=0, cap=50, marks={})
            assert replayed is not None and [m["text"] for m in replayed] == ["first"]
            assert replayed[0]["backfilled"] is True and replayed[0]["id"] == got[0]["id"]
            later = await bridge.replay(page.page, since=0, cap=50, marks={"15557654321@c.us": 2**31})
            assert later == []

            # A group message names its chat and its author.
            await asyncio.to_thread(sim.deliver, "15550002222", "in the group", chat_id="120363000000000001@g.us")
            assert await eventually(lambda: len(got) == 2)
            assert got[1]["group"] is True and got[1]["chat_id"] == "120363000000000001@g.us"
            assert got[1]["author"] == "15550002222@c.us" and got[1]["from"] == "15550002222"

            # Whatever the page pushes is checked: garbage is dropped, nothing breaks.
            await page.page.evaluate("""() => { window.__lindaEmit('message', {id: 5});
                window.__lindaEmit('message', 'garbage'); window.__lindaEmit('message', {id: 'x'});
                window.__lindaEmit('other', null); }""")
            await asyncio.sleep(0.3)
            assert len(got) == 2

            # WhatsApp refuses a chat: a typed error with its reason.
            with pytest.raises(MessagingError) as info:
                await bridge.send(page.page, "15550001111-1600000000@g.us", "x")
            assert info.value.code == "send_failed" and "invalid" in info.value.message

            # The storage flush replaces the tab: the bridge comes with the context.
            await page.flush_storage()
            await page.wait_for_state(PageState.CONNECTED, timeout=20)
            await asyncio.to_thread(sim.deliver, "15557654321", "after the flush")
            assert await eventually(lambda: len(got) == 3)
            assert got[2]["text"] == "after the flush"
            assert (await bridge.send(page.page, "15557654321@c.us", "reply two"))["ack"] == 1
            assert await eventually(lambda: len(own) == 2)
            assert bridge.received == 5 and bridge.sent == 2

            # Offline: WhatsApp does not take the message; the error says so.
            await asyncio.to_thread(sim.offline)
            with pytest.raises(MessagingError) as info:
                await bridge.send(page.page, "15557654321@c.us", "while offline")
            assert info.value.code == "send_failed"
            await asyncio.to_thread(sim.online)
        finally:
            await page.close()

    with Simulator(free_port(), tmp_path / "sim", **FAST) as sim:
        run(scenario(sim))


wajs_needed = pytest.mark.skipif(find_wajs() is None, reason="wa-js is not installed: "
                                 "npm ci --prefix linda_desktop/browser/wajs")


@wajs_needed
def test_real_wajs_loads_waits_and_keeps_the_page_readable(tmp_path: Path, wa_options: dict[str, Any]) -> None:
    info = find_wajs()
    assert info is not None and info.version == pinned_version()
    bridge = MessageBridge(lambda kind, payload: None, info)

    async def scenario(sim: Simulator) -> None:
        # Attached after the page loaded (the DevTools path), as the service does after launch.
        page = await connected_page(sim, tmp_path, wa_options, bridge, attach_before_link=False)
        try:
            await bridge.attach(page.page)
            status = await bridge.status(page.page)
            assert status["api"] == "wa-js" and status["version"] == info.version
            assert status["ready"] is False  # no WhatsApp modules here: the loader keeps waiting
            assert status["connected"] is True and status["dom_connected"] is True  # the DOM fallback
            assert await page.page.evaluate("() => window.WPPConfig.disableGoogleAnalytics") is True
            with pytest.raises(MessagingError) as err:
                await bridge.send(page.page, "15557654321@c.us", "x")
            assert err.value.code == "not_ready"
            # Catch-up, quiet phone, health and the server round trip all say "not ready" calmly.
            assert await bridge.replay(page.page, since=0, cap=10, marks={}) is None
            assert await bridge.quiet(page.page) is False
            health = await bridge.health(page.page)
            assert health is not None and health["ready"] is False and health["ok"] is True
            assert await bridge.probe(page.page, timeout=2) == {"ok": True, "skipped": True}
            assert await bridge.chats(page.page) is None
            # The page probe still reads the internal state through the require() wa-js traps.
            assert (await page.snapshot()).state == PageState.CONNECTED
            # A new document gets wa-js from the init script, before the page's own code.
            await page.reload()
            await page.wait_for_state(PageState.CONNECTED, timeout=20)
            status = await bridge.status(page.page)
            assert status["api"] == "wa-js" and status["version"] == info.version
            assert await page.page.evaluate("() => WPP.loader.loaderType") == "unknown"
        finally:
            await page.close()

    with Simulator(free_port(), tmp_path / "sim", wpp_api=False, expose_internal=True, **FAST) as sim:
        run(scenario(sim))


class _CspHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = (b"<!doctype html><title>csp</title><div id=pane-side></div><script src=/app.js></script>"
                b"<script>window.inlineRan = true;</script>"
                if self.path == "/" else b"window.pageScript = true;")
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if self.path == "/" else "text/javascript")
        self.send_header("Content-Security-Policy", "default-src 'self'; script-src 'self'")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@wajs_needed
def test_injection_works_under_a_strict_content_security_policy(tmp_path: Path, wa_options: dict[str, Any]) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CspHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    bridge = MessageBridge(lambda kind, payload: None, find_wajs())

    async def scenario() -> None:
        page = WhatsAppPage(tmp_path / "profile", f"http://127.0.0.1:{server.server_port}/", **wa_options)
        await page.start()
        try:
            assert await page.page.evaluate("() => window.pageScript") is True
            assert await page.page.evaluate("() => window.inlineRan === undefined")  # the CSP is enforced
            await bridge.attach(page.page)
            status = await bridge.status(page.page)
            assert status["api"] == "wa-js" and status["connected"] is True
            await page.reload()
            await asyncio.sleep(0.3)
            assert (await bridge.status(page.page))["version"] == find_wajs().version
        finally:
            await page.close()

    try:
        run(scenario())
    finally:
        server.shutdown()
        server.server_close()
