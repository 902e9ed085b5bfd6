"""WhatsAppPage against a real Chromium and the simulator: every page state read right, the
actions work, the profile survives, crashes and a busy profile are reported."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from linda_desktop.browser.selectors import Selectors, SelectorsError
from linda_desktop.browser.whatsapp import WhatsAppPage, classify, desktop_user_agent, fix_user_agent
from linda_desktop.base.errors import BrowserLaunchFailed, ProfileInUse
from linda_desktop.base.events import PageSnapshot, PageState as S
from linda_desktop.resources import path as resource_path
from tests.whatsapp_sim.control import Simulator


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 90))


async def link_and_connect(wa: WhatsAppPage, sim: Simulator) -> PageSnapshot:
    snap = await wa.wait_for_state(S.QR, timeout=15)
    assert snap.state is S.QR, snap
    sim.link()
    snap = await wa.wait_for_state(S.CONNECTED, timeout=15)
    assert snap.state is S.CONNECTED, snap
    return snap


# --------------------------------------------------------------------------- browser tests
browser = pytest.mark.browser


@browser
def test_loading_then_rotating_qr_then_idle_and_reload(simulator: Simulator, wa_options, tmp_path):
    simulator.configure(loading_seconds=1.0, first_qr_seconds=1.0, qr_interval=0.7, qr_count=3)

    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "profile", simulator.url, **wa_options)
        await wa.start()
        try:
            seen: list[PageSnapshot] = []
            snap = None
            while not seen or seen[-1].state is not S.QR_IDLE:
                snap = await wa.wait_for_change(snap, 6)
                seen.append(snap)
                assert len(seen) < 20, seen
            states = [s.state for s in seen]
            assert states[0] is S.LOADING and states[-1] is S.QR_IDLE, states
            assert any(s.progress is not None for s in seen if s.state is S.LOADING)
            codes = [s.qr for s in seen if s.state is S.QR]
            assert len(codes) == 3 and len(set(codes)) == 3, states   # all three payloads, in turn
            for code in codes:
                assert code.startswith("2@") and len(code.split(",")) == 5
            assert seen[-1].qr is None                                  # idle: nothing to scan
            assert await wa.reload_qr() is True
            fresh = await wa.wait_for_state(S.QR, timeout=5)
            assert fresh.state is S.QR and fresh.qr not in codes
            assert fresh.qr == simulator.current_qr()
        finally:
            await wa.close()

    run(scenario())


@browser
def test_link_connects_and_reload_stays_connected(simulator: Simulator, wa_options, tmp_path):
    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "profile", simulator.url, **wa_options)
        await wa.start()
        try:
            snap = await link_and_connect(wa, simulator)
            assert snap.account == "15550001234" and not snap.post_logout
            await wa.reload()
            assert (await wa.wait_until_settled(15)).state is S.CONNECTED
            devices = simulator.devices()
            assert len(devices["devices"]) == 1 and devices["logins"] >= 2
            assert not devices["revoked"]
        finally:
            await wa.close()

    run(scenario())


@browser
def test_revoke_shows_post_logout_qr_with_reason(simulator: Simulator, wa_options, tmp_path):
    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "profile", simulator.url, **wa_options)
        await wa.start()
        try:
            await link_and_connect(wa, simulator)
            simulator.revoke(reason="unknown_companion")
            snap = await wa.wait_for_state(S.QR, timeout=15)
            assert snap.state is S.QR and snap.post_logout and snap.reason == "unknown_companion"
            assert snap.qr and snap.account is None          # the page cleared its own storage
            assert await wa.page.evaluate("localStorage.length") == 0
            # reload() opens the plain URL again: a fresh QR, no logout flag any more.
            await wa.reload()
            again = await wa.wait_for_state(S.QR, timeout=15)
            assert again.state is S.QR and not again.post_logout and again.reason is None
        finally:
            await wa.close()

    run(scenario())


@browser
def test_conflict_use_here_takes_over(simulator: Simulator, wa_options, tmp_path):
    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "profile", simulator.url, **wa_options)
        await wa.start()
        try:
            await link_and_connect(wa, simulator)
            assert await wa.click_use_here() is False          # nothing to click yet
            assert simulator.conflict() == 1
            assert (await wa.wait_for_state(S.CONFLICT, timeout=10)).state is S.CONFLICT
            assert simulator.devices()["takeovers"] == 0
            assert await wa.click_use_here() is True
            assert (await wa.wait_for_state(S.CONNECTED, timeout=10)).state is S.CONNECTED
            devices = simulator.devices()
            assert devices["takeovers"] == 1 and devices["devices"][0]["takeovers"] == 1
        finally:
            await wa.close()

    run(scenario())


@browser
def test_offline_banner_comes_and_goes(simulator: Simulator, wa_options, tmp_path):
    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "profile", simulator.url, **wa_options)
        await wa.start()
        try:
            await link_and_connect(wa, simulator)
            simulator.offline()
            assert (await wa.wait_for_state(S.OFFLINE, timeout=10)).state is S.OFFLINE
            simulator.online()
            assert (await wa.wait_for_state(S.CONNECTED, timeout=10)).state is S.CONNECTED
        finally:
            await wa.close()

    run(scenario())


@browser
def test_user_agent_is_not_headless_and_a_headless_one_is_refused(simulator: Simulator, wa_options,
                                                                  tmp_path):
    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "p1", simulator.url, **wa_options)
        await wa.start()
        try:
            ua = await wa.page.evaluate("navigator.userAgent")
            assert "Headless" not in ua
            assert f"Chrome/{wa.browser_version.split('.')[0]}." in ua
            assert await wa.page.evaluate("navigator.webdriver") is False
            assert (await wa.wait_until_settled(10)).state is S.QR
        finally:
            await wa.close()
        raw_ua = fix_user_agent(ua).replace("Chrome/", "HeadlessChrome/")
        bad = WhatsAppPage(tmp_path / "p2", simulator.url, user_agent=raw_ua, **wa_options)
        await bad.start()
        try:
            assert (await bad.wait_until_settled(10)).state is S.UNSUPPORTED
        finally:
            await bad.close()

    run(scenario())


@browser
def test_unknown_page_and_unreachable_server(simulator: Simulator, wa_options, tmp_path):
    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "p1", simulator.url + "somewhere-else", **wa_options)
        await wa.start()
        try:
            snap = await wa.wait_for_change(None, 1)
            await asyncio.sleep(0.5)
            assert (await wa.snapshot()).state is S.UNKNOWN, snap
        finally:
            await wa.close()
        simulator.stop()
        down = WhatsAppPage(tmp_path / "p2", simulator.url, nav_retry_seconds=0.5, **wa_options)
        await down.start()  # an unreachable server is a state, not a launch failure
        try:
            snap = await down.snapshot()
            assert snap.state is S.OFFLINE and snap.reason.startswith("unreachable"), snap
            simulator.start()
            # wait_for_change reloads a page stuck on the browser's error page by itself.
            assert (await down.wait_for_state(S.QR, timeout=20)).state is S.QR
        finally:
            await down.close()

    run(scenario())


@browser
def test_profile_survives_clean_close_and_relaunch_is_connected(simulator: Simulator, wa_options,
                                                                tmp_path):
    profile = tmp_path / "profile"

    async def scenario() -> None:
        wa = WhatsAppPage(profile, simulator.url, **wa_options)
        await wa.start()
        await link_and_connect(wa, simulator)
        await wa.close()
        await wa.close()  # twice is fine
        assert not (profile / "SingletonLock").exists()
        idb = profile / "Default" / "IndexedDB" / f"http_127.0.0.1_{simulator.port}.indexeddb.leveldb"
        assert idb.is_dir()
        again = WhatsAppPage(profile, simulator.url, **wa_options)
        await again.start()
        try:
            snap = await again.wait_until_settled(15)
            assert snap.state is S.CONNECTED and not snap.post_logout, snap
        finally:
            await again.close()

    run(scenario())
    assert simulator.devices()["link_attempts"] == 1


@browser
def test_flush_storage_makes_the_salt_survive_a_sigkill(simulator: Simulator, wa_options, tmp_path):
    """Right after linking, localStorage (the salt) is not on disk yet: killing every browser
    process at once (a power loss) loses it and the page logs out with missing_enc_salt.
    After flush_storage it survives. (Killing only the main process is not enough to lose it:
    Chromium's storage service process may still commit when the browser goes away.)"""

    async def link_then_kill(profile: Path, flush: bool) -> float:
        wa = WhatsAppPage(profile, simulator.url, **wa_options)
        await wa.start()
        await wa.wait_for_state(S.QR, timeout=15)
        simulator.link()
        linked_at = time.monotonic()
        assert (await wa.wait_for_state(S.CONNECTED, timeout=15)).state is S.CONNECTED
        if flush:
            await wa.flush_storage()
            assert (await wa.wait_until_settled(15)).state is S.CONNECTED
        os.killpg(wa.browser_pid, signal.SIGKILL)  # Playwright starts it in its own group
        elapsed = time.monotonic() - linked_at
        await wa.close()
        return elapsed

    async def relaunch(profile: Path) -> PageSnapshot:
        wa = WhatsAppPage(profile, simulator.url, **wa_options)
        await wa.start()
        try:
            return await wa.wait_until_settled(15)
        finally:
            await wa.close()

    async def scenario() -> None:
        flushed = tmp_path / "flushed"
        await link_then_kill(flushed, flush=True)
        snap = await relaunch(flushed)
        assert snap.state is S.CONNECTED, snap
        control = tmp_path / "control"
        elapsed = await link_then_kill(control, flush=False)
        snap = await relaunch(control)
        if elapsed < 4.0:  # Chromium commits localStorage by itself ~5 s after a write
            assert snap.state is S.QR and snap.reason == "missing_enc_salt", snap

    run(scenario())


@browser
def test_killed_browser_fires_on_crash(simulator: Simulator, wa_options, tmp_path):
    async def scenario() -> None:
        fired = asyncio.Event()
        wa = WhatsAppPage(tmp_path / "profile", simulator.url, on_crash=fired.set, **wa_options)
        await wa.start()
        try:
            assert wa.browser_pid and not wa.crashed
            assert (await wa.wait_until_settled(10)).state is S.QR
            os.kill(wa.browser_pid, signal.SIGKILL)
            await asyncio.wait_for(fired.wait(), 15)
            assert wa.crashed
            snap = await wa.wait_for_change(PageSnapshot(S.QR), 1)
            assert snap.state is S.UNKNOWN and snap.reason == "browser_crashed"
        finally:
            await asyncio.wait_for(wa.close(), 20)

    run(scenario())


@browser
def test_renderer_crash_fires_on_crash_and_the_browser_still_closes_cleanly(simulator: Simulator,
                                                                           wa_options, tmp_path):
    async def scenario() -> None:
        fired = asyncio.Event()
        wa = WhatsAppPage(tmp_path / "profile", simulator.url, on_crash=fired.set, **wa_options)
        await wa.start()
        pid = wa.browser_pid
        try:
            assert (await wa.wait_until_settled(10)).state is S.QR
            with pytest.raises(Exception):
                await wa.page.goto("chrome://crash", timeout=5_000)
            await asyncio.wait_for(fired.wait(), 10)
            assert wa.crashed and (await wa.snapshot()).reason == "browser_crashed"
        finally:
            await asyncio.wait_for(wa.close(), 20)
        assert not (tmp_path / "profile" / "SingletonLock").exists()  # closed, not killed
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    run(scenario())


@browser
def test_second_browser_on_the_same_profile_is_profile_in_use(simulator: Simulator, wa_options,
                                                              tmp_path):
    async def scenario() -> None:
        first = WhatsAppPage(tmp_path / "profile", simulator.url, **wa_options)
        await first.start()
        try:
            second = WhatsAppPage(tmp_path / "profile", simulator.url, **wa_options)
            with pytest.raises(ProfileInUse) as info:
                await second.start()
            assert "in use" in str(info.value) and info.value.fix
            await second.close()
        finally:
            await first.close()

    run(scenario())


@browser
def test_browser_that_does_not_start_is_launch_failed(simulator: Simulator, tmp_path):
    fake = tmp_path / "fake-chrome"
    fake.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'Chromium 150.0.1.2'; exit 0; fi\n"
                    "echo 'cannot open display' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)

    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "profile", simulator.url, executable=str(fake))
        with pytest.raises(BrowserLaunchFailed) as info:
            await wa.start()
        assert "did not start" in str(info.value)
        await wa.close()

    run(scenario())


@browser
def test_internal_state_wins_over_dom_when_exposed(simulator: Simulator, wa_options, tmp_path):
    simulator.configure(expose_internal=True)

    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "profile", simulator.url, **wa_options)
        await wa.start()
        try:
            qr = await wa.wait_for_state(S.QR, timeout=15)
            assert qr.qr and len(qr.qr.split(",")) == 5   # payload from the DOM, not Conn.ref
            await link_and_connect(wa, simulator)
            socket = "window.require('WAWebSocketModel').Socket"
            await wa.page.evaluate(f"{socket}.hasSynced = false")
            assert (await wa.snapshot()).state is S.LOADING         # DOM says connected
            await wa.page.evaluate(f"{socket}.hasSynced = true; {socket}.state = 'TOS_BLOCK'")
            snap = await wa.snapshot()
            assert snap.state is S.UNKNOWN and snap.reason == "tos_block"
            await wa.page.evaluate(f"{socket}.state = 'CONNECTED'")
            assert (await wa.snapshot()).state is S.CONNECTED
        finally:
            await wa.close()

    run(scenario())


@browser
def test_passkey_link_stalls_headless_and_finishes_in_a_visible_window(simulator: Simulator,
                                                                      wa_options, tmp_path, xvfb):
    """The owner finishes the passkey step in a visible window on the same profile (here a
    Playwright click in a headed Chromium under Xvfb), then the app goes back to headless."""
    simulator.configure(passkey=True)
    profile = tmp_path / "profile"

    async def scenario() -> None:
        wa = WhatsAppPage(profile, simulator.url, **wa_options)
        await wa.start()
        try:
            await wa.wait_for_state(S.QR, timeout=15)
            simulator.link()
            assert (await wa.wait_for_state(S.PAIRING, timeout=10)).state is S.PAIRING
            continue_button = wa.page.get_by_role("button", name="Continue")
            await continue_button.click()          # a headless window cannot pass the passkey
            assert (await wa.wait_for_change(PageSnapshot(S.PAIRING), 2)).state is S.PAIRING
            assert "Waiting for your passkey" in await wa.page.inner_text(".hint")
            assert simulator.devices()["devices"][0]["status"] == "pending"
        finally:
            await wa.close()
        visible = WhatsAppPage(profile, simulator.url, headless=False,
                               env={**os.environ, "DISPLAY": xvfb}, **wa_options)
        await visible.start()
        try:
            assert (await visible.wait_until_settled(15)).state is S.PAIRING
            await visible.page.get_by_role("button", name="Continue").click()
            assert (await visible.wait_for_state(S.CONNECTED, timeout=15)).state is S.CONNECTED
        finally:
            await visible.close()
        assert simulator.devices()["devices"][0]["status"] == "active"
        back = WhatsAppPage(profile, simulator.url, **wa_options)
        await back.start()
        try:
            assert (await back.wait_until_settled(15)).state is S.CONNECTED
        finally:
            await back.close()

    run(scenario())


# --------------------------------------------------------------------------- no browser
def test_shipped_selectors_load_and_cover_every_page_state():
    sel = Selectors.load()
    assert sel.path == resource_path("selectors.json")
    assert set(sel.order) == {s for s in S if s is not S.UNKNOWN}
    assert "div[data-ref]" in sel.states[S.QR].selectors
    assert sel.internal_map["UNPAIRED_IDLE"] is S.QR_IDLE


@pytest.mark.parametrize("damage, words", [
    (None, "not found"),
    ("{not json", "unreadable"),
    ({"schema": 99}, "schema"),
    ("unknown_state", "nonsense"),
    ("empty_selector", "non-empty strings"),
    ("order_without_markers", "without markers"),
])
def test_broken_selectors_file_is_a_clear_error(tmp_path, damage, words):
    target = tmp_path / "selectors.json"
    good = json.loads(resource_path("selectors.json").read_text())
    if damage == "{not json":
        target.write_text(damage)
    elif isinstance(damage, dict):
        target.write_text(json.dumps({**good, **damage}))
    elif damage == "unknown_state":
        good["states"]["nonsense"] = {"selectors": ["x"]}
        target.write_text(json.dumps(good))
    elif damage == "empty_selector":
        good["states"]["qr"]["selectors"].append("")
        target.write_text(json.dumps(good))
    elif damage == "order_without_markers":
        del good["states"]["offline"]
        target.write_text(json.dumps(good))
    with pytest.raises(SelectorsError) as info:
        Selectors.load(target)
    assert words in str(info.value) and str(target) in str(info.value)


def test_classify_reads_order_url_and_internal_state():
    sel = Selectors.load()
    payload = "2@abc,k1,k2,k3,WEB"
    both = {"matches": {"qr": True, "conflict": True}, "qr": payload}
    assert classify(both, "http://x/", sel).state is S.CONFLICT          # order decides
    snap = classify({"matches": {"qr": True}, "qr": payload},
                    "http://x/?post_logout=1&logout_reason=missing_enc_salt", sel)
    assert (snap.state, snap.qr, snap.post_logout, snap.reason) == (S.QR, payload, True, "missing_enc_salt")
    assert classify({"matches": {"qr": True}, "qr": "garbage"}, "http://x/", sel).qr is None
    assert classify({"matches": {}}, "http://x/", sel).state is S.UNKNOWN
    assert classify(None, "http://x/", sel).state is S.UNKNOWN
    connected = {"matches": {"connected": True, "offline": True}, "account": '"15550001234:3@c.us"'}
    snap = classify(connected, "http://x/", sel)
    assert snap.state is S.OFFLINE and snap.account == "15550001234"
    internal = {"matches": {"connected": True}, "internal": {"state": "UNPAIRED_IDLE"}}
    assert classify(internal, "http://x/", sel).state is S.QR_IDLE
    internal = {"matches": {"qr": True}, "internal": {"state": "SOMETHING_NEW"}, "qr": payload}
    assert classify(internal, "http://x/", sel).state is S.QR             # unknown internal: DOM


def test_desktop_user_agent_matches_chrome_reduced_form():
    assert desktop_user_agent("156.0.8078.108", "linux") == (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/156.0.0.0 Safari/537.36")
    assert "Windows NT 10.0" in desktop_user_agent("120.1.2.3", "win32")
    assert "Mac OS X" in desktop_user_agent("120.1.2.3", "darwin")
    assert fix_user_agent("x HeadlessChrome/156.0.0.0 y") == "x Chrome/156.0.0.0 y"
