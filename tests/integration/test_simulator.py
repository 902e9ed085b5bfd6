"""The simulator itself, against whatsapp-web-reference.md: server rules over HTTP, and the page
in a real Chromium driven by bare Playwright (not by the app's page reader, so these tests check
the simulator's contract, README.md in tests/whatsapp_sim, and nothing of the app)."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.integration.conftest import OFFLINE_ARGS
from tests.whatsapp_sim.control import REPO_ROOT, Simulator, SimulatorError, free_port

CHROME_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/156.0.0.0 Safari/537.36")
# Records every Socket/Stream change and every logout reason, the way a faithful client does it:
# it waits for window.Debug.VERSION before it touches require (so it makes no early calls).
RECORDER = """
(() => {
  window.__rec = {states: [], info: [], reasons: [], cmdLogouts: 0, wpp: []};
  const hook = () => {
    if (!(window.Debug && window.Debug.VERSION)) { setTimeout(hook, 10); return; }
    let S;
    try { S = window.require('WAWebSocketModel').Socket; } catch (e) { return; }   // internals hidden
    const St = window.require('WAWebStreamModel').Stream;
    window.__rec.states.push(S.state);
    S.on('change:state', (_m, state) => window.__rec.states.push(state));
    St.on('change:info', (_m, info) => window.__rec.info.push(info));
    window.require('WAWebCmd').Cmd.on('logout', () => { window.__rec.cmdLogouts += 1; });
    const mod = window.require('WAWebLogoutReason');
    const original = mod.getErrorCodeFromLogoutReason;
    mod.getErrorCodeFromLogoutReason = (reason) => {
      if (window.__keepReason) window.__keepReason(reason);   // persisted outside the page
      return original(reason);
    };
    if (window.WPP) window.WPP.on('conn.logout_reason', (r) => window.__rec.wpp.push(r));
  };
  hook();
})();
"""


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


def get(url: str, user_agent: str, language: str = "") -> str:
    headers = {"User-Agent": user_agent}
    if language:
        headers["Accept-Language"] = language
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as res:
        return res.read().decode()


def query(url: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}


class Browser:
    """One persistent Chromium profile under Playwright, with the recorder and a reason sink."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.reasons: list[str] = []

    @property
    def page(self) -> Any:
        return self.context.pages[0]

    async def open(self, url: str) -> Any:
        page = self.context.pages[0] if self.context.pages else await self.context.new_page()
        await page.goto(url)
        return page

    @staticmethod
    async def booted(page: Any, timeout: float = 10) -> None:
        await page.wait_for_function("() => window.Debug && window.Debug.VERSION", timeout=timeout * 1000)

    @staticmethod
    async def socket(page: Any) -> list[Any]:
        return await page.evaluate("() => { const S = require('WAWebSocketModel').Socket;"
                                   " const St = require('WAWebStreamModel').Stream;"
                                   " return [S.state, S.hasSynced, St.info, St.mode, St.displayInfo]; }")

    @staticmethod
    async def wait_state(page: Any, state: str, timeout: float = 10, synced: bool | None = None) -> None:
        cond = "" if synced is None else f" && S.hasSynced === {str(synced).lower()}"
        await page.wait_for_function(
            "(want) => { if (!(window.Debug && window.Debug.VERSION)) return false;"
            " try { const S = require('WAWebSocketModel').Socket; return S.state === want" + cond + "; }"
            " catch (e) { return false; } }", arg=state, timeout=timeout * 1000)

    @staticmethod
    async def recorded(page: Any) -> dict[str, Any]:
        return await page.evaluate("() => window.__rec")


@asynccontextmanager
async def chromium_profile(chromium: str, profile: Path, *, headless: bool = True, locale: str | None = None,
                           env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(profile), executable_path=chromium, headless=headless, user_agent=CHROME_UA, locale=locale,
            args=[*OFFLINE_ARGS, *args], env=env)
        browser = Browser(context)
        await context.add_init_script(RECORDER)
        await context.expose_binding("__keepReason", lambda _source, reason: browser.reasons.append(reason))
        try:
            yield browser
        finally:
            await context.close()


async def linked_profile(chromium: str, sim: Simulator, profile: Path) -> str:
    """Links a new profile, waits for the first history sync, closes it cleanly."""
    async with chromium_profile(chromium, profile) as b:
        page = await b.open(sim.url)
        await page.wait_for_selector("div[data-ref] canvas[aria-label]", timeout=10000)
        device = sim.link()
        await b.wait_state(page, "CONNECTED", synced=True, timeout=15)
    return device


# =========================================================================== HTTP only
def test_unsupported_page_for_headless_and_old_chrome_in_the_browser_language(simulator: Simulator):
    headless = CHROME_UA.replace("Chrome/", "HeadlessChrome/")
    assert "WhatsApp works with Google Chrome 100+" in get(simulator.url, headless)
    assert "WhatsApp works with Google Chrome 100+" in get(simulator.url, CHROME_UA.replace("156.0", "99.0"))
    assert "O WhatsApp funciona com o Google Chrome 100+" in get(simulator.url, headless, "pt-BR,pt;q=0.9")
    assert "WhatsApp funktioniert mit Google Chrome 100+" in get(simulator.url, headless, "de-DE")
    normal = get(simulator.url, CHROME_UA)
    assert "works with Google Chrome" not in normal and '"loading_seconds": 0.3' in normal
    assert 'id="wa_web_initial_startup"' in normal and "<progress" in normal
    assert 'role="dialog"' in normal   # the always-present (hidden) dialog node


def test_qr_rotation_link_and_refusals(simulator: Simulator):
    simulator.configure(first_qr_seconds=0.6, qr_interval=0.4, qr_count=2)
    with pytest.raises(SimulatorError) as info:
        simulator.link(timeout=0)
    assert info.value.code == "no_qr"
    first = simulator._request("POST", "/_sim/api/qr", {"page_id": "p1"})
    fields = first["qr"].split(",")
    assert len(fields) == 5 and fields[0] == first["ref"] and fields[0].startswith("2@") and fields[4] == "WEB"
    assert fields[1:4] == [first["keys"]["noise"], first["keys"]["identity"], first["keys"]["adv"]]
    assert simulator.current_qr() == first["qr"]
    time.sleep(0.7)
    second = simulator._request("GET", "/_sim/api/poll?page_id=p1&mode=qr")
    assert second["qr"] != first["qr"] and second["qr"].split(",")[1:] == fields[1:]  # same keys
    with pytest.raises(SimulatorError) as info:
        simulator.link(first["qr"])  # a stale code does not link
    assert info.value.code == "qr_not_displayed"
    time.sleep(0.5)
    idle = simulator._request("GET", "/_sim/api/poll?page_id=p1&mode=qr")
    assert idle["idle"] and idle["qr"] is None
    simulator._request("GET", "/_sim/api/poll?page_id=p1&mode=qr_idle")
    with pytest.raises(SimulatorError):
        simulator.link(timeout=0)
    fresh = simulator._request("POST", "/_sim/api/qr", {"page_id": "p1", "via": "refresh_qr"})
    device = simulator.link(fresh["qr"])
    delivered = simulator._request("GET", "/_sim/api/poll?page_id=p1&mode=qr")["link"]
    assert delivered["device_id"] == device and delivered["wid"] == "15550001234:1@c.us" and delivered["gen"] == 1
    devices = simulator.devices()
    assert devices["link_attempts"] == 4 and devices["links"] == 1
    assert simulator.counters()["refresh_qr_calls"] == 1
    assert "secret" not in json.dumps(devices["devices"]) and "salt" not in json.dumps(devices["devices"])


def _login(sim: Simulator, page_id: str, creds: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body = {"page_id": page_id, "device_id": creds["device_id"], "gen": creds["gen"], "key": creds["key"],
            "salt": creds["salt"], **changes}
    return sim._request("POST", "/_sim/api/login", body)


def test_login_rules_key_generations_revoke_and_conflict_between_pages(simulator: Simulator):
    req = simulator._request
    req("POST", "/_sim/api/qr", {"page_id": "a"})
    device = simulator.link()
    link = req("GET", "/_sim/api/poll?page_id=a&mode=qr")["link"]
    first = _login(simulator, "a", link)
    assert first["status"] == "ok" and first["first_sync"] and first["creds"]["gen"] == 2
    gen2 = {**first["creds"], "salt": link["salt"]}
    assert _login(simulator, "x", link, key="0" * 64)["status"] == "revoked"
    assert _login(simulator, "x", link, salt="other") == {"status": "local", "reason": "web_fail_enc_salt"}
    # Before the first history sync is done, another page of the device (a reload) ends it: code 2.
    assert _login(simulator, "b", gen2) == {"status": "revoked", "reason": "history_sync_timeout"}
    simulator._request("POST", "/_sim/phone/revoke", {})   # nothing left to revoke
    assert simulator.devices()["revoked"][0]["revoked"]["reason"] == "history_sync_timeout"

    # A device whose first sync finished: two pages, key generations, conflicts.
    simulator.configure(sync_seconds=0)
    req("POST", "/_sim/api/qr", {"page_id": "c"})
    device = simulator.link()
    link = req("GET", "/_sim/api/poll?page_id=c&mode=qr")["link"]
    creds = {**_login(simulator, "c", link)["creds"], "salt": link["salt"]}
    assert req("GET", "/_sim/api/poll?page_id=c&mode=connected")["synced"] is True
    second = _login(simulator, "d", creds)   # a second live page of the same device
    assert second["status"] == "ok" and not second["first_sync"] and second["creds"]["gen"] == 3
    assert req("GET", "/_sim/api/poll?page_id=c&mode=connected")["conflict"] is True
    assert req("GET", "/_sim/api/poll?page_id=d&mode=connected")["conflict"] is False
    req("POST", "/_sim/api/use_here", {"page_id": "c", "via": "takeover"})
    assert req("GET", "/_sim/api/poll?page_id=d&mode=connected")["conflict"] is True
    counters = simulator.counters()
    assert counters["takeovers"] == 1 and counters["takeover_calls"] == 1 and counters["conflicts"] == 2
    # The newest generation is torn: rejected with a code-0 reason; an older one still works.
    newest = {**second["creds"], "salt": link["salt"]}
    assert simulator.tear_rotation() == [{"device_id": device, "rejected_gen": 3}]
    assert _login(simulator, "e", newest) == {"status": "rejected", "reason": "web_fail_offline_resume"}
    healed = _login(simulator, "f", creds)
    assert healed["status"] == "ok" and healed["creds"]["gen"] == 4
    assert _login(simulator, "g", newest)["status"] == "ok"   # healed: gen 3 is an older one now
    assert simulator.counters()["rejected_generations"] == 1
    # Phone removal (user_initiated by default), then the phone unused for 14 days.
    assert simulator.revoke() == [device]
    assert req("GET", "/_sim/api/poll?page_id=c&mode=connected")["revoked"] == "user_initiated"
    assert _login(simulator, "h", creds) == {"status": "revoked", "reason": "user_initiated"}
    req("POST", "/_sim/api/qr", {"page_id": "i"})
    other = simulator.link()
    link = req("GET", "/_sim/api/poll?page_id=i&mode=qr")["link"]
    assert simulator.age_phone(days=14) == [other]
    assert _login(simulator, "i", link) == {"status": "revoked", "reason": "unknown_companion"}


def test_a_late_rejection_and_a_server_logout_leave_the_device_linked(simulator: Simulator):
    """Field reports (§3): a restored profile answered with 0 some seconds *after* it connected,
    and post_logout=1 with no reason while the phone still lists the device."""
    req = simulator._request
    simulator.configure(sync_seconds=0, rejection_delay_seconds=0.6)
    req("POST", "/_sim/api/qr", {"page_id": "a"})
    device = simulator.link()
    link = req("GET", "/_sim/api/poll?page_id=a&mode=qr")["link"]
    older = {**link}
    newest = {**_login(simulator, "a", link)["creds"], "salt": link["salt"]}
    assert req("GET", "/_sim/api/poll?page_id=a&mode=connected")["synced"] is True
    simulator.tear_rotation()
    late = _login(simulator, "b", newest)
    assert late["status"] == "ok" and late["creds"]["gen"] == 2   # connects, no rotation
    assert "revoked" not in req("GET", "/_sim/api/poll?page_id=b&mode=connected")
    time.sleep(0.7)
    assert req("GET", "/_sim/api/poll?page_id=b&mode=connected")["revoked"] == "web_fail_offline_resume"
    assert simulator.counters()["rejected_generations"] == 1
    assert _login(simulator, "c", older)["status"] == "ok"   # an older copy authenticates
    req("GET", "/_sim/api/poll?page_id=c&mode=connected")
    assert simulator.logout_pages(device) >= 1
    assert req("GET", "/_sim/api/poll?page_id=c&mode=connected")["revoked"] == ""
    assert [d["device_id"] for d in simulator.devices()["devices"]] == [device]
    # The web client's own logout (Socket.logout(): user_initiated) unlinks the device.
    req("POST", "/_sim/api/logout", {"page_id": "c", "device_id": device, "reason": "user_initiated"})
    assert simulator.devices()["revoked"][0]["revoked"]["reason"] == "user_initiated"


def test_channel_messages_arrive_but_cannot_be_answered(simulator: Simulator):
    sent = simulator.deliver("15557654321", "news", chat_id="120363012345678901@newsletter")
    assert sent["chat_id"] == "120363012345678901@newsletter"
    assert simulator.messages()[-1]["chat_id"] == "120363012345678901@newsletter"
    with pytest.raises(SimulatorError):
        simulator.deliver("15557654321", "x", chat_id="123@broadcast")


def test_has_synced_can_lag_forever(simulator: Simulator):
    simulator.configure(sync_seconds=-1, resume_sync_seconds=-1)
    req = simulator._request
    req("POST", "/_sim/api/qr", {"page_id": "a"})
    simulator.link()
    link = req("GET", "/_sim/api/poll?page_id=a&mode=qr")["link"]
    assert _login(simulator, "a", link)["first_sync"] is True
    time.sleep(0.3)
    assert req("GET", "/_sim/api/poll?page_id=a&mode=connected")["synced"] is False
    assert simulator.devices()["devices"][0]["history_synced"] is False


def test_restart_keeps_devices_and_config_and_the_cli_overrides(tmp_path: Path):
    port = free_port()
    sim = Simulator(port, tmp_path / "state", loading_seconds=0.3)
    with sim:
        sim._request("POST", "/_sim/api/qr", {"page_id": "p"})
        device = sim.link()
        sim.configure(qr_count=9)
        sim.deprecate_build(2)
        url = sim.url
    assert not sim.running
    with sim:  # same port: same origin for the browser
        assert sim.url == url
        assert [d["device_id"] for d in sim.devices()["devices"]] == [device]
        config = sim._request("GET", "/_sim/config")
        assert config["config"]["qr_count"] == 9 and config["faults"]["deprecated_loads"] == 2
    sim.kill()
    proc = subprocess.Popen([sys.executable, "-m", "tests.whatsapp_sim", "--port", str(port),
                             "--state-dir", str(tmp_path / "state"), "--qr-count", "4", "--passkey",
                             "--config", '{"chat_rows": 7, "post_logout_variant": "never"}'],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert b"listening on http://127.0.0.1:" in proc.stdout.readline()
        config = json.loads(urllib.request.urlopen(url + "_sim/config", timeout=5).read())["config"]
        assert config["qr_count"] == 4 and config["passkey"] is True and config["loading_seconds"] == 0.3
        assert config["chat_rows"] == 7 and config["post_logout_variant"] == "never"
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
    with pytest.raises(TypeError):
        Simulator(port, tmp_path / "x", no_such_option=1)


# =========================================================================== §1 internals, boot, states
@pytest.mark.browser
def test_require_throws_until_boot_and_early_calls_are_counted(simulator: Simulator, chromium: str, tmp_path):
    simulator.configure(boot_seconds=1.0)
    # An eager client: as soon as the page's loader defined require, it asks for modules.
    early = """(() => { window.__early = [];
      const go = () => {
        if (typeof window.require !== 'function') { setTimeout(go, 0); return; }
        window.__debugAtStart = typeof window.Debug;
        for (let i = 0; i < 3; i++) { try { window.require('WAWebSocketModel'); window.__early.push('ok'); }
                                      catch (e) { window.__early.push(String(e.message)); } }
      };
      go(); })();"""

    async def scenario() -> None:
        async with chromium_profile(chromium, tmp_path / "p") as b:
            await b.context.add_init_script(early)
            page = await b.open(simulator.url)
            await page.wait_for_selector("#wa_web_initial_startup progress", timeout=5000)
            assert await page.evaluate("() => typeof window.Debug") == "undefined"
            await b.booted(page)
            assert await page.evaluate("() => window.__early") == ['Requiring unknown module "WAWebSocketModel"'] * 3
            assert await page.evaluate("() => window.__debugAtStart") == "undefined"
            assert (await page.evaluate("() => window.Debug.VERSION")).startswith("2.3000.")
            assert await page.evaluate("() => typeof require('WAWebCmd').Cmd.refreshQR") == "function"
            with pytest.raises(Exception, match="Requiring unknown module"):
                await page.evaluate("() => require('WAWebNoSuchModule')")
            await page.wait_for_selector("div[data-ref] canvas[aria-label]", timeout=10000)
            time.sleep(0.4)   # one poll carries the page's counts
            counters = simulator.counters()
            # 3 per load: the fresh profile's first load (redirect) and the post-logout load.
            assert counters["require_calls_before_boot"] == 6
            assert counters["logouts"] == 0   # the fresh boot's redirect is no logout

    run(scenario())


@pytest.mark.browser
def test_fresh_profile_boots_through_logout_reason_0_then_shows_the_qr(simulator: Simulator, chromium: str, tmp_path):
    async def scenario() -> None:
        async with chromium_profile(chromium, tmp_path / "p") as b:
            page = await b.open(simulator.url)
            await page.wait_for_selector("div[data-ref] canvas[aria-label]", timeout=10000)
            assert query(page.url) == {"post_logout": "1", "logout_reason": "0"}
            state = await b.socket(page)
            assert state[:1] == ["UNPAIRED"] and state[3] == "QR"
            assert b.reasons == [] and (await b.recorded(page))["cmdLogouts"] == 0   # no in-page logout
            payload = await page.get_attribute("div[data-ref]", "data-ref")
            assert payload == simulator.current_qr()
            keys = await page.evaluate("() => Object.keys(localStorage).sort()")
            assert "WANoiseInfo" in keys and "last-wid-md" not in keys   # not "logged in" (§6)
            assert await page.evaluate("() => require('WAWebConnModel').Conn.ref") == payload.split(",")[0]
            # wordmark on the QR screen; the hidden dialog node is there on every screen
            assert await page.locator("[data-icon='wa-wordmark-refreshed']").count() == 1
            assert await page.locator("[role=dialog]").count() == 1
            assert not await page.locator("[role=dialog]").is_visible()
        async with chromium_profile(chromium, tmp_path / "p") as b:   # second start: no redirect
            page = await b.open(simulator.url)
            await page.wait_for_selector("div[data-ref] canvas[aria-label]", timeout=10000)
            assert query(page.url) == {}

    run(scenario())


@pytest.mark.browser
def test_linked_resume_goes_through_pairing_and_syncs_after_connected(simulator: Simulator, chromium: str, tmp_path):
    simulator.configure(sync_seconds=1.5, resume_sync_seconds=0.8, loading_seconds=0.6, chat_rows=2000)

    async def scenario() -> None:
        async with chromium_profile(chromium, tmp_path / "p") as b:
            page = await b.open(simulator.url)
            await page.wait_for_selector("div[data-ref]", timeout=10000)
            simulator.link()
            await b.wait_state(page, "CONNECTED", synced=False)
            assert await page.locator("#pane-side").count() == 1   # chat list at CONNECTED, before sync
            assert (await b.socket(page))[2:4] == ["SYNCING", "MAIN"]
            started = time.monotonic()
            await b.wait_state(page, "CONNECTED", synced=True)
            assert time.monotonic() - started > 0.9
            assert (await b.socket(page))[2:] == ["NORMAL", "MAIN", "NORMAL"]
            assert await page.locator("#pane-side div[role='row']").count() == 2000
            assert await page.locator("#side input[aria-label='Search or start a new chat']").count() == 1
            assert await page.locator("#side [data-icon='wa-wordmark-refreshed']").count() == 1
            keys = await page.evaluate("() => Object.keys(localStorage)")
            assert {"last-wid-md", "WANoiseInfo", "WANoiseInfoIv", "WALid", "WAWebEncKeySalt"} <= set(keys)
            assert (await page.evaluate("() => localStorage.getItem('WALid')")).endswith('@lid"')
            databases = await page.evaluate("async () => (await indexedDB.databases()).map((d) => d.name).sort()")
            assert databases == ["model-storage", "signal-storage", "wawc"]
        async with chromium_profile(chromium, tmp_path / "p") as b:
            page = await b.open(simulator.url)
            await b.wait_state(page, "CONNECTED", synced=False)
            rec = await b.recorded(page)
            assert rec["states"] == ["UNLAUNCHED", "OPENING", "PAIRING", "CONNECTED"]
            assert rec["info"][:3] == ["OPENING", "PAIRING", "RESUMING"]
            await b.wait_state(page, "CONNECTED", synced=True)
            assert query(page.url) == {}

    run(scenario())


@pytest.mark.browser
def test_reload_during_the_first_sync_logs_out_with_code_2(simulator: Simulator, chromium: str, tmp_path):
    simulator.configure(sync_seconds=60)

    async def scenario() -> None:
        async with chromium_profile(chromium, tmp_path / "p") as b:
            page = await b.open(simulator.url)
            await page.wait_for_selector("div[data-ref]", timeout=10000)
            device = simulator.link()
            await b.wait_state(page, "CONNECTED", synced=False)
            await page.reload()
            await page.wait_for_url("**/?post_logout=1&logout_reason=2", timeout=10000)
            await page.wait_for_selector("div[data-ref]", timeout=10000)
            assert b.reasons == ["history_sync_timeout"]   # the string reason, captured in the page
            assert simulator.devices()["revoked"][0]["device_id"] == device

    run(scenario())


# =========================================================================== §3 logout
@pytest.mark.browser
def test_logout_urls_carry_only_the_code_and_the_string_reason_stays_in_the_page(simulator: Simulator,
                                                                                 chromium: str, tmp_path):
    simulator.configure(sync_seconds=0)
    cases = [  # reason given to the phone -> URL query after the page's reload
        ("user_initiated", {"post_logout": "1"}),
        ("unknown_companion", {"post_logout": "1"}),
        ("syncd_failure", {"post_logout": "1", "logout_reason": "1"}),
        ("account_locked", {"post_logout": "1", "logout_reason": "3",
                            "logout_message_header": "Sua conta está bloqueada",
                            "logout_message_subtext": "Abra o WhatsApp no seu celular para desbloquear sua conta."}),
        ("", {"post_logout": "1"}),
    ]

    async def scenario() -> None:
        async with chromium_profile(chromium, tmp_path / "p", locale="pt-BR") as b:
            page = await b.open(simulator.url)
            for reason, want in cases:
                await page.wait_for_selector("div[data-ref]", timeout=10000)
                simulator.link()
                await b.wait_state(page, "CONNECTED", synced=True)
                async with page.expect_navigation(timeout=10000):
                    simulator.revoke(reason=reason)
                await page.wait_for_selector("div[data-ref]", timeout=10000)
                assert query(page.url) == want, reason
                assert b.reasons[-1] == reason
                assert await page.evaluate("() => localStorage.getItem('last-wid-md')") is None   # wiped
                assert (await b.recorded(page))["states"][-1] == "UNPAIRED"
                if reason == "account_locked":   # the page shows the texts that came in the URL
                    assert "Sua conta está bloqueada" in await page.get_by_role("alert").inner_text()
            events = [e for e in simulator.devices()["events"] if e["kind"] == "page_logout"]
            assert [(e["reason"], e["code"]) for e in events] == [
                ("user_initiated", None), ("unknown_companion", None), ("syncd_failure", "1"),
                ("account_locked", "3"), ("", None)]
        # A build variant that never adds post_logout (storage cleared fine).
        simulator.configure(post_logout_variant="never")
        async with chromium_profile(chromium, tmp_path / "p", locale="pt-BR") as b:
            page = await b.open(simulator.url)
            await page.wait_for_selector("div[data-ref]", timeout=10000)
            simulator.link()
            await b.wait_state(page, "CONNECTED", synced=True)
            async with page.expect_navigation(timeout=10000):
                simulator.revoke(reason="history_sync_timeout")
            await page.wait_for_selector("div[data-ref]", timeout=10000)
            assert query(page.url) == {"logout_reason": "2"}
            assert b.reasons == ["history_sync_timeout"]

    run(scenario())


@pytest.mark.browser
def test_lost_salt_logs_out_locally_without_a_code_and_the_device_stays(simulator: Simulator, chromium: str, tmp_path):
    simulator.configure(sync_seconds=0)
    profile = tmp_path / "p"

    async def scenario() -> None:
        device = await linked_profile(chromium, simulator, profile)
        shutil.rmtree(profile / "Default" / "Local Storage")
        async with chromium_profile(chromium, profile) as b:
            page = await b.open(simulator.url)
            await page.wait_for_url("**/?post_logout=1", timeout=10000)
            await page.wait_for_selector("div[data-ref]", timeout=10000)
            assert query(page.url) == {"post_logout": "1"}
            assert b.reasons == ["missing_enc_salt"]
        assert [d["device_id"] for d in simulator.devices()["devices"]] == [device]   # a restore can help

    run(scenario())


@pytest.mark.browser
@pytest.mark.parametrize("delay", [0.0, 1.5])
def test_restored_newest_profile_is_rejected_with_0_and_an_older_backup_connects(simulator: Simulator,
                                                                                 chromium: str, tmp_path, delay):
    """Real Chromium profiles and real copies of them: the key rotation is torn on the newest.
    With a delay the newest first connects (and syncs), then is logged out, as in the field."""
    simulator.configure(sync_seconds=0, rejection_delay_seconds=delay)
    live, older, newest = tmp_path / "live", tmp_path / "backup-1", tmp_path / "backup-2"

    async def connect(profile: Path) -> Browser:
        async with chromium_profile(chromium, profile) as b:
            page = await b.open(simulator.url)
            await b.wait_state(page, "CONNECTED", synced=True)
        return b

    async def scenario() -> None:
        await linked_profile(chromium, simulator, live)
        shutil.copytree(live, older)          # generation 2
        await connect(live)
        shutil.copytree(live, newest)         # generation 3
        assert simulator.tear_rotation()[0]["rejected_gen"] == 3
        shutil.rmtree(live)
        shutil.copytree(newest, live)          # restore the newest backup
        async with chromium_profile(chromium, live) as b:
            page = await b.open(simulator.url)
            if delay:
                await b.wait_state(page, "CONNECTED", synced=True)
                assert "post_logout" not in page.url
            await page.wait_for_url("**/?post_logout=1&logout_reason=0", timeout=10000)
            await page.wait_for_selector("div[data-ref]", timeout=10000)
            assert b.reasons == ["web_fail_offline_resume"]
        shutil.rmtree(live)
        shutil.copytree(older, live)           # restore one older generation
        await connect(live)
        assert simulator.counters()["rejected_generations"] == 1
        assert len(simulator.devices()["devices"]) == 1

    run(scenario())


# =========================================================================== §1 modes
@pytest.mark.browser
def test_conflict_is_taken_over_by_socket_takeover_and_the_german_click_counts_as_text(
        simulator: Simulator, chromium: str, tmp_path):
    """Two WhatsApp tabs on one profile (what Chromium restores after a kill, §6) fight."""
    simulator.configure(sync_seconds=0)

    async def scenario() -> None:
        async with chromium_profile(chromium, tmp_path / "p", locale="de-DE") as b:
            first = await b.open(simulator.url)
            await first.wait_for_selector("div[data-ref]", timeout=10000)
            device = simulator.link()
            await b.wait_state(first, "CONNECTED", synced=True)
            second = await b.context.new_page()
            await second.goto(simulator.url)
            await b.wait_state(second, "CONNECTED")
            await b.wait_state(first, "CONFLICT")
            pages = simulator.wait_for_page(lambda p: p["conflict"] and p["state"] == "CONFLICT")
            both = [p for p in simulator.pages() if p["live"] and p["device_id"] == device]
            assert len(both) == 2 and [p["conflict"] for p in both] == [True, False]
            assert pages["state"] == "CONFLICT" and pages["lang"] == "de"
            dialog = first.get_by_role("dialog").filter(has_text="Hier verwenden")
            assert await dialog.is_visible()
            assert await first.evaluate("() => require('WAWebSocketModel').Socket.takeover()") is True
            await b.wait_state(first, "CONNECTED")
            await b.wait_state(second, "CONFLICT")
            assert (await b.socket(second))[3] == "CONFLICT"
            counters = simulator.counters()
            assert (counters["takeover_calls"], counters["text_clicks"]) == (1, 0)
            await second.get_by_role("button", name="Hier verwenden").click()
            await b.wait_state(second, "CONNECTED")
            await b.wait_state(first, "CONFLICT")
            counters = simulator.counters()
            assert (counters["use_here_clicks"], counters["text_clicks"], counters["takeovers"]) == (1, 1, 2)
            assert counters["clicks"] == {"use_here": 1}

    run(scenario())


@pytest.mark.browser
def test_deprecated_version_is_cured_by_a_reload_and_a_ban_is_said_in_words(simulator: Simulator,
                                                                          chromium: str, tmp_path):
    simulator.configure(sync_seconds=0)

    async def scenario() -> None:
        await linked_profile(chromium, simulator, tmp_path / "p")
        simulator.deprecate_build(1)
        async with chromium_profile(chromium, tmp_path / "p", locale="pt-BR") as b:
            page = await b.open(simulator.url)
            await b.wait_state(page, "DEPRECATED_VERSION")
            assert "desatualizada" in await page.inner_text("#app")
            assert await page.evaluate("() => WPP.conn.needsUpdate()") is True
            await page.reload()
            await b.wait_state(page, "CONNECTED", synced=True)
            simulator.ban("TOS_BLOCK")
            await b.wait_state(page, "TOS_BLOCK")
            text = await page.inner_text("#app")
            assert "não tem permissão para usar o WhatsApp" in text
            assert await page.locator("div[data-ref], canvas, #pane-side").count() == 0
            await page.reload()
            await b.wait_state(page, "TOS_BLOCK")   # reloading does not help
            assert (await b.socket(page))[3] == "TOS_BLOCK"
            simulator.unban()
            simulator.proxyblock()
            await page.reload()
            await b.wait_state(page, "PROXYBLOCK")
            assert "bloqueado nesta rede" in await page.inner_text("#app")
            simulator.proxyblock(False)
            await page.reload()
            await b.wait_state(page, "CONNECTED")
        assert simulator.counters()["deprecated_loads"] == 1

    run(scenario())


@pytest.mark.browser
def test_unpaired_idle_gets_new_codes_from_cmd_refresh_qr(simulator: Simulator, chromium: str, tmp_path):
    simulator.configure(first_qr_seconds=0.6, qr_interval=0.3, qr_count=2)

    async def scenario() -> None:
        async with chromium_profile(chromium, tmp_path / "p") as b:
            page = await b.open(simulator.url)
            await b.wait_state(page, "UNPAIRED_IDLE", timeout=10)
            stale = await page.get_attribute("div[data-ref]", "data-ref")
            assert await page.locator("div[data-ref] button").count() == 1   # only once codes ran out
            await page.evaluate("() => require('WAWebCmd').Cmd.refreshQR()")
            await b.wait_state(page, "UNPAIRED")
            assert await page.get_attribute("div[data-ref]", "data-ref") != stale
            assert await page.locator("div[data-ref] button").count() == 0
            await b.wait_state(page, "UNPAIRED_IDLE", timeout=10)
            await page.get_by_role("button", name="Click to reload QR code").click()
            await b.wait_state(page, "UNPAIRED")
        counters = simulator.counters()
        assert (counters["refresh_qr_calls"], counters["text_clicks"], counters["clicks"]) == (1, 1, {"reload_qr": 1})

    run(scenario())


@pytest.mark.browser
def test_internals_hidden_leaves_only_the_dom(simulator: Simulator, chromium: str, tmp_path):
    simulator.configure(internals=False, sync_seconds=0)

    async def scenario() -> None:
        async with chromium_profile(chromium, tmp_path / "p") as b:
            page = await b.open(simulator.url)
            await page.wait_for_selector("div[data-ref] canvas[aria-label]", timeout=10000)
            assert await page.evaluate("() => !!window.Debug.VERSION") is True
            with pytest.raises(Exception, match="Requiring unknown module"):
                await page.evaluate("() => require('WAWebSocketModel')")
            simulator.link()
            await page.wait_for_selector("#pane-side div[role='row']", timeout=10000)
            simulator.offline()
            await page.get_by_text("Computer not connected").wait_for(timeout=5000)
            simulator.online()

    run(scenario())


@pytest.mark.browser
def test_a_connected_page_rides_out_offline_and_a_server_restart_in_german(simulator: Simulator,
                                                                          chromium: str, tmp_path):
    simulator.configure(sync_seconds=0)

    async def scenario() -> None:
        async with chromium_profile(chromium, tmp_path / "p", locale="de-DE") as b:
            page = await b.open(simulator.url)
            await page.wait_for_selector("div[data-ref]", timeout=10000)
            assert await page.locator("canvas[aria-label='Scanne diesen QR-Code, um ein Gerät zu verknüpfen!']").count()
            simulator.link()
            await b.wait_state(page, "CONNECTED", synced=True)
            simulator.offline()
            await b.wait_state(page, "TIMEOUT")
            assert (await b.socket(page))[2:] == ["OFFLINE", "MAIN", "OFFLINE"]
            await page.get_by_text("Computer nicht verbunden").wait_for(timeout=3000)
            assert await page.locator("#pane-side div[role='row']").count() == 4   # the chat list stays
            simulator.online()
            await b.wait_state(page, "CONNECTED")
            simulator.stop()   # the server vanishes: connecting, then offline
            await b.wait_state(page, "TIMEOUT", timeout=10)
            simulator.start()
            await b.wait_state(page, "CONNECTED", timeout=15)
            assert await page.get_by_text("Computer nicht verbunden").count() == 0
            assert simulator.pages()[-1]["device_id"] == simulator.devices()["devices"][0]["device_id"]

    run(scenario())


@pytest.mark.browser
def test_canvas_only_qr_is_built_from_internals(simulator: Simulator, chromium: str, tmp_path):
    simulator.configure(qr_data_ref=False)
    # whatsapp-web.js's recipe (src/Client.js) with the module names it uses.
    wwebjs = """async () => {
      const R = {...require('WAWebCompanionRegClientUtils'), ...require('WAWebAdvSignatureApi'),
                 ...require('WAWebUserPrefsInfoStore'), ...require('WAWebSignalStoreApi')};
      const B = require('WABase64');
      const reg = await R.waSignalStore.getRegistrationInfo();
      const noise = await R.waNoiseInfo.get();
      return [require('WAWebConnModel').Conn.ref, B.encodeB64(noise.staticKeyPair.pubKey),
              B.encodeB64(reg.identityKeyPair.pubKey), await R.getADVSecretKey(), R.DEVICE_PLATFORM].join(',');
    }"""

    async def scenario() -> None:
        async with chromium_profile(chromium, tmp_path / "p") as b:
            page = await b.open(simulator.url)
            await page.wait_for_selector("canvas[aria-label='Scan this QR code to link a device!']", timeout=10000)
            assert await page.locator("[data-ref]").count() == 0
            payload = await page.evaluate(wwebjs)
            assert payload == simulator.current_qr()
            auth = await page.evaluate("() => WPP.conn.getAuthCode()")
            assert auth["fullCode"] + ",WEB" == payload and auth["type"] == "multidevice"
            simulator.link(payload)
            await b.wait_state(page, "CONNECTED")

    run(scenario())


# =========================================================================== §4 passkey, pairing code
LOCALHOST_RULES = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE localhost"
SHORTCAKE_CARDS = ("shortcake_passkey_prompt_card", "shortcake_waiting_for_phone_card", "shortcake_code_matching_card")


async def shortcake_card(page: Any) -> str | None:
    for card in SHORTCAKE_CARDS:
        if await page.locator(f"[data-testid='shortcake_passkey_screen'] [data-testid='{card}']").count():
            return card
    return None


@pytest.mark.browser
def test_passkey_screen_rotates_the_adv_secret_and_never_completes_headless(simulator: Simulator,
                                                                            chromium: str, tmp_path):
    simulator.configure(passkey=True, passkey_stage_seconds=2.0, language="de")

    async def scenario() -> None:
        async with chromium_profile(chromium, tmp_path / "p") as b:
            page = await b.open(simulator.url)
            await page.wait_for_selector("div[data-ref]", timeout=10000)
            shown = await page.get_attribute("div[data-ref]", "data-ref")
            assert simulator.link() is None   # the scan starts the passkey step: no device yet
            await page.wait_for_selector("[data-testid='shortcake_passkey_screen']", timeout=5000)
            assert await shortcake_card(page) == "shortcake_passkey_prompt_card"
            wordmark = "[data-testid='shortcake_passkey_screen'] [data-icon='wa-wordmark-refreshed']"
            assert await page.locator(wordmark).count() == 1
            stage = await page.evaluate("() => require('WAWebShortcakeLinkingApi').Shortcake.stage")
            assert stage == "prompt" and simulator.passkey_stage() == "prompt"
            assert (await b.socket(page))[0] == "UNPAIRED"
            with pytest.raises(SimulatorError) as info:   # the shown QR is no longer valid
                simulator.link(shown, timeout=0)
            assert info.value.code == "qr_not_displayed"
            assert await page.locator("div[data-ref]").count() == 0
            await page.get_by_test_id("shortcake_passkey_continue_button").click()
            await page.get_by_text("Warten auf deinen Passkey").wait_for(timeout=3000)
            assert await page.evaluate("() => require('WAWebShortcakeLinkingApi').getStage()") == "webauthn"
            # Headless: navigator.credentials.get never completes; the stage times out -> a new QR.
            await page.wait_for_selector("div[data-ref]", timeout=6000)
            assert "anderen QR-Code scannen" in await page.get_by_role("alert").inner_text()
            assert await page.get_attribute("div[data-ref]", "data-ref") != shown
            # A new scan; a second window on the profile knows nothing of it and shows a QR;
            # then a reload: the pending link is lost, the page starts over with a QR.
            simulator.link()
            await page.wait_for_selector("[data-testid='shortcake_passkey_screen']", timeout=5000)
            other = await b.context.new_page()
            await other.goto(simulator.url)
            await other.wait_for_selector("div[data-ref]", timeout=10000)
            await other.close()
            assert await shortcake_card(page) == "shortcake_passkey_prompt_card"
            await page.reload()
            await page.wait_for_selector("div[data-ref]", timeout=10000)
            assert simulator.passkey_stage() is None
            # Cancel returns to a fresh QR too.
            simulator.link()
            await page.get_by_test_id("shortcake_cancel_button").click()
            await page.wait_for_selector("div[data-ref]", timeout=5000)
        assert simulator.devices()["devices"] == []
        counters = simulator.counters()
        assert counters["text_clicks"] == 0 and counters["testid_clicks"] == 2 and counters["passkey_links"] == 0

    run(scenario())


async def virtual_authenticator(context: Any, page: Any, rp_id: str) -> tuple[Any, str]:
    """CDP WebAuthn: a platform authenticator with user verification and one resident passkey."""
    cdp = await context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable")
    auth = await cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
        "hasUserVerification": True, "isUserVerified": True}})
    await add_passkey(cdp, auth["authenticatorId"], rp_id)
    return cdp, auth["authenticatorId"]


async def add_passkey(cdp: Any, authenticator_id: str, rp_id: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    await cdp.send("WebAuthn.addCredential", {"authenticatorId": authenticator_id, "credential": {
        "credentialId": base64.b64encode(f"passkey-{rp_id}".encode()).decode(), "isResidentCredential": True,
        "rpId": rp_id, "privateKey": base64.b64encode(key).decode(),
        "userHandle": base64.b64encode(b"owner").decode(), "signCount": 0}})


@pytest.mark.browser
@pytest.mark.xvfb
def test_passkey_link_completes_in_a_visible_window_with_a_virtual_authenticator(tmp_path, chromium: str, xvfb: str):
    """The same page from the scan to connected; WebAuthn needs a domain, so the page is opened
    as http://localhost:PORT (rpId "localhost" stands in for whatsapp.com)."""
    sim = Simulator(free_port(), tmp_path / "sim", url_host="localhost", loading_seconds=0.3, sync_seconds=0,
                    first_qr_seconds=30, passkey=True, passkey_phone_seconds=0.3)

    async def scenario() -> None:
        async with chromium_profile(chromium, tmp_path / "p", headless=False, env={"DISPLAY": xvfb},
                                    args=(LOCALHOST_RULES,)) as b:
            page = await b.open(sim.url)
            await page.wait_for_selector("div[data-ref]", timeout=10000)
            await virtual_authenticator(b.context, page, "localhost")
            sim.link()
            await page.get_by_test_id("shortcake_passkey_continue_button").click(timeout=5000)
            await page.get_by_test_id("shortcake_code_matching_card").wait_for(timeout=5000)
            code = await page.get_by_test_id("shortcake_verification_code_display").inner_text()
            assert len(code) == 9 and code[4] == "-" and await page.get_by_role("status").inner_text() == code
            assert sim.passkey_code() == code
            page_ids = {p["page_id"] for p in sim.pages() if p["live"]}
            await page.get_by_test_id("shortcake_code_confirm_button").click()
            await b.wait_state(page, "CONNECTED", synced=True, timeout=10)
            assert {p["page_id"] for p in sim.pages() if p["live"]} == page_ids   # one page throughout
            assert sim.counters()["qr_lists"] == 1   # no second QR
            assert query(page.url) == {"post_logout": "1", "logout_reason": "0"}   # no reload since the QR

    with sim:
        run(scenario())
        counters = sim.counters()
        assert counters["passkey_links"] == 1 and counters["links"] == 1 and counters["text_clicks"] == 0
        assert sim.devices()["devices"][0]["via"] == "qr+passkey"


@pytest.mark.browser
@pytest.mark.xvfb
def test_passkey_refused_by_the_authenticator_returns_to_the_prompt_with_an_alert(tmp_path, chromium: str, xvfb: str):
    """No passkey for this rpId: WebAuthn fails, the prompt card comes back with role=alert; then
    the phone confirms the code itself (sim.confirm_passkey_code)."""
    sim = Simulator(free_port(), tmp_path / "sim", url_host="localhost", loading_seconds=0.3, sync_seconds=0,
                    first_qr_seconds=30, passkey=True, passkey_phone_seconds=0.3)

    async def scenario() -> None:
        async with chromium_profile(chromium, tmp_path / "p", headless=False, env={"DISPLAY": xvfb},
                                    args=(LOCALHOST_RULES,)) as b:
            page = await b.open(sim.url)
            await page.wait_for_selector("div[data-ref]", timeout=10000)
            cdp, authenticator = await virtual_authenticator(b.context, page, "elsewhere.example")
            sim.link()
            await page.get_by_test_id("shortcake_passkey_continue_button").click(timeout=5000)
            alert = page.get_by_test_id("shortcake_passkey_prompt_card").get_by_role("alert")
            await alert.wait_for(timeout=10000)   # NotAllowedError: back to the prompt card
            assert sim.passkey_stage() == "prompt"
            await add_passkey(cdp, authenticator, "localhost")
            await page.get_by_test_id("shortcake_passkey_continue_button").click()
            await page.get_by_test_id("shortcake_code_matching_card").wait_for(timeout=5000)
            sim.confirm_passkey_code(sim.passkey_code())
            await b.wait_state(page, "CONNECTED", timeout=10)

    with sim:
        run(scenario())


@pytest.mark.browser
def test_pairing_code_instead_of_qr(simulator: Simulator, chromium: str, tmp_path):
    simulator.configure(pairing_code_seconds=1.0, sync_seconds=0)

    async def scenario() -> None:
        async with chromium_profile(chromium, tmp_path / "p", locale="pt-BR") as b:
            page = await b.open(simulator.url)
            await page.wait_for_selector("div[data-ref]", timeout=10000)
            await page.get_by_role("button", name="Conectar com número de telefone").click()
            await page.get_by_label("Número de telefone").fill("+1 555 999 0000")   # not the account
            await page.get_by_role("button", name="Avançar").click()
            await page.get_by_role("alert").wait_for(timeout=3000)
            await page.get_by_label("Número de telefone").fill("+1 555 000 1234")
            await page.get_by_role("button", name="Avançar").click()
            await page.wait_for_selector("[data-link-code]", timeout=3000)
            shown = await page.get_attribute("[data-link-code]", "data-link-code")
            assert len(shown) == 9 and shown.replace("-", "") == simulator.pairing_code()
            assert simulator.current_qr() is None   # the QR is not on screen
            time.sleep(1.2)
            with pytest.raises(SimulatorError) as info:
                simulator.enter_pairing_code(shown)
            assert info.value.code == "code_expired"
            await page.get_by_role("alert").wait_for(timeout=3000)
            # wa-js's call gives a new code without touching the form
            code = await page.evaluate("() => WPP.conn.genLinkDeviceCodeForPhoneNumber('15550001234')")
            assert len(code) == 8 and code == simulator.pairing_code() and code != shown.replace("-", "")
            with pytest.raises(SimulatorError) as info:
                simulator.enter_pairing_code("AAAA-AAAA")
            assert info.value.code == "bad_code"
            device = simulator.enter_pairing_code(code)
            await b.wait_state(page, "CONNECTED", synced=True)
            assert simulator.devices()["devices"][0]["device_id"] == device
            assert simulator.devices()["devices"][0]["via"] == "pairing_code"
        counters = simulator.counters()
        assert counters["pairing_codes"] == 2 and counters["pairing_code_links"] == 1
        assert counters["clicks"] == {"link_with_phone_number": 1, "pairing_next": 2}

    run(scenario())


# =========================================================================== bot side: presence, liveness
@pytest.mark.browser
def test_the_phone_records_presence_and_a_frozen_socket_delivers_nothing(simulator: Simulator, chromium: str,
                                                                         tmp_path):
    simulator.configure(sync_seconds=0)

    async def scenario() -> None:
        async with chromium_profile(chromium, tmp_path / "p") as b:
            page = await b.open(simulator.url)
            await page.wait_for_selector("div[data-ref]", timeout=10000)
            await page.evaluate("() => { window.__msgs = [];"
                                " WPP.on('chat.new_message', (m) => window.__msgs.push(m.body)); }")
            simulator.link()
            await b.wait_state(page, "CONNECTED", synced=True)
            focused = await page.evaluate("() => document.hasFocus() && document.visibilityState === 'visible'")
            time.sleep(0.4)
            device = simulator.devices()["devices"][0]
            assert device["online"] is focused   # a focused, visible page shows "online" by itself
            await page.evaluate("() => WPP.conn.markUnavailable()")
            time.sleep(0.4)
            assert simulator.devices()["devices"][0]["online"] is False
            assert await page.evaluate("() => require('WAWebStreamModel').Stream.available") is False
            simulator.freeze()
            simulator.deliver("15557654321", "while frozen")
            time.sleep(0.6)
            assert await page.evaluate("() => window.__msgs") == []
            assert await page.locator("#pane-side div[role='row']").count() == 4   # still looks connected
            assert (await b.socket(page))[:3] == ["CONNECTED", True, "NORMAL"]
            simulator.freeze(False)
            await page.wait_for_function("() => window.__msgs.length === 1", timeout=5000)

    run(scenario())
