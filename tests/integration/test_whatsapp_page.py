"""WhatsAppPage against a real Chromium and the simulator (which follows whatsapp-web-reference.md):
every page state read right from the internal models and from the DOM alone, in English and in
German/Portuguese, changes pushed by the page (no polling, no churn), the logout reason captured
across WhatsApp's reload, the actions by internal command with clicks only as the fallback, one
tab per profile, the profile surviving, crashes and a busy profile reported."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Error as PlaywrightError

from linda_desktop.base.errors import BrowserLaunchFailed, ProfileInUse
from linda_desktop.base.events import LinkStep, PageSnapshot
from linda_desktop.base.events import PageState as S
from linda_desktop.browser.protocol import PairingCodeFailed
from linda_desktop.browser.whatsapp import WhatsAppPage, desktop_user_agent, fix_user_agent
from tests.whatsapp_sim.control import Simulator

browser = pytest.mark.browser


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 90))


async def collect(wa: WhatsAppPage, until: Any, timeout: float = 15,
                  since: PageSnapshot | None = None) -> list[PageSnapshot]:
    """Every distinct reading after ``since`` until ``until(snapshot)`` holds (or the timeout)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen: list[PageSnapshot] = []
    snap = since
    while True:
        snap = await wa.wait_for_change(snap, max(0.0, deadline - loop.time()))
        seen.append(snap)
        if until(snap) or loop.time() >= deadline:
            return seen


async def link_and_connect(wa: WhatsAppPage, sim: Simulator, *, synced: bool = True) -> PageSnapshot:
    snap = await wa.wait_for_state(S.QR, timeout=15)
    assert snap.state is S.QR and snap.qr, snap
    sim.link()
    seen = await collect(wa, lambda s: s.state is S.CONNECTED and (s.synced or not synced))
    assert seen[-1].state is S.CONNECTED, seen
    return seen[-1]


def counters(sim: Simulator) -> dict[str, Any]:
    return sim.counters()


# --------------------------------------------------------------------------- internal state (default)
@browser
def test_fresh_profile_rotating_qr_idle_and_refresh_by_command(simulator: Simulator, wa_options, tmp_path):
    simulator.configure(first_qr_seconds=1.0, qr_interval=0.7, qr_count=3)

    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "profile", simulator.url, **wa_options)
        await wa.start()
        try:
            seen = await collect(wa, lambda s: s.state is S.QR_IDLE)
            states = [s.state for s in seen]
            assert states[0] is S.LOADING and states[-1] is S.QR_IDLE, states
            codes = [s.qr for s in seen if s.state is S.QR and s.qr]
            assert len(set(codes)) == 3, states                    # all three payloads, in turn
            assert all(c.startswith("2@") and len(c.split(",")) == 5 for c in codes)
            qr = next(s for s in seen if s.state is S.QR)
            assert qr.source == "internal"
            # A fresh profile boots through ?post_logout=1&logout_reason=0: reported, not hidden.
            assert qr.logout is not None and qr.logout.code == "0" and qr.logout.post_logout
            assert qr.logout.reason is None
            assert seen[-1].qr is None                              # idle: nothing to scan
            reads = wa.reads
            assert await wa.refresh_qr() is True
            fresh = await wa.wait_for_state(S.QR, timeout=5)
            assert fresh.qr and fresh.qr not in codes and fresh.qr == simulator.current_qr()
            assert wa.reads - reads <= 1                            # refresh_qr's own check, no polling
        finally:
            await wa.close()
        c = counters(simulator)
        assert c["refresh_qr_calls"] >= 1 and c["text_clicks"] == 0, c      # Cmd.refreshQR, no click
        assert c["require_calls_before_boot"] == 0, c

    run(scenario())


@browser
def test_link_then_resume_goes_through_resuming_and_connected_before_synced(simulator: Simulator, wa_options,
                                                                           tmp_path):
    simulator.configure(sync_seconds=1.0, resume_sync_seconds=0.5, loading_seconds=0.6)

    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "profile", simulator.url, **wa_options)
        await wa.start()
        try:
            await wa.wait_for_state(S.QR, timeout=15)
            simulator.link()
            seen = await collect(wa, lambda s: s.state is S.CONNECTED and s.synced)
            connected = [s for s in seen if s.state is S.CONNECTED]
            assert not connected[0].synced and connected[-1].synced, seen   # the first sync comes later
            assert connected[-1].account == "15550001234" and connected[-1].logout is None
            reads = wa.reads
            await wa.reload()
            seen = await collect(wa, lambda s: s.state is S.CONNECTED and s.synced, since=connected[-1])
            states = [s.state for s in seen]
            assert S.RESUMING in states and S.QR not in states and S.PASSKEY not in states, states
            assert states.index(S.RESUMING) < states.index(S.CONNECTED)
            assert wa.reads == reads                                # every transition was pushed
        finally:
            await wa.close()
        devices = simulator.devices()
        assert len(devices["devices"]) == 1 and devices["logins"] >= 2 and not devices["revoked"]
        assert counters(simulator)["require_calls_before_boot"] == 0

    run(scenario())


@browser
def test_socket_states_map_to_page_states(simulator: Simulator, wa_options, tmp_path):
    """OUTDATED (a reload cures it), BANNED, NETWORK_BLOCKED, OFFLINE: each from Socket.state."""

    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "profile", simulator.url, **wa_options)
        await wa.start()
        try:
            await link_and_connect(wa, simulator)
            simulator.offline()
            assert (await wa.wait_for_state(S.OFFLINE, timeout=10)).state is S.OFFLINE
            simulator.online()
            assert (await wa.wait_for_state(S.CONNECTED, timeout=10)).state is S.CONNECTED
            simulator.deprecate_build(1)
            await wa.reload()
            snap = await wa.wait_until_settled(15)
            assert snap.state is S.OUTDATED and snap.source == "internal", snap
            await wa.reload()
            assert (await wa.wait_until_settled(15)).state is S.CONNECTED
            simulator.ban("TOS_BLOCK")
            await wa.reload()
            assert (await wa.wait_until_settled(15)).state is S.BANNED
            simulator.unban()
            simulator.proxyblock(True)
            await wa.reload()
            assert (await wa.wait_until_settled(15)).state is S.NETWORK_BLOCKED
            simulator.proxyblock(False)
            await wa.reload()
            assert (await wa.wait_until_settled(15)).state is S.CONNECTED
        finally:
            await wa.close()

    run(scenario())


@browser
@pytest.mark.parametrize("language", ["de", "pt"])
def test_conflict_is_taken_over_by_socket_takeover_in_any_language(simulator: Simulator, wa_options, tmp_path,
                                                                   language):
    simulator.configure(language=language, loading_seconds=0.6)

    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "profile", simulator.url, **wa_options)
        await wa.start()
        try:
            await link_and_connect(wa, simulator)
            assert await wa.take_over() is False                    # no conflict, nothing done
            await wa.reload()
            seen = await collect(wa, lambda s: s.state is S.CONNECTED and s.synced)
            assert S.RESUMING in [s.state for s in seen]           # the loading row, in this language
            assert await wa.page.evaluate("document.documentElement.lang") == language
            assert simulator.conflict() == 1
            assert (await wa.wait_for_state(S.CONFLICT, timeout=10)).state is S.CONFLICT
            assert await wa.take_over() is True
            assert (await wa.wait_for_state(S.CONNECTED, timeout=10)).state is S.CONNECTED
        finally:
            await wa.close()
        c = counters(simulator)
        assert c["takeover_calls"] == 1 and c["use_here_clicks"] == 0 and c["text_clicks"] == 0, c
        assert simulator.devices()["takeovers"] == 1

    run(scenario())


@browser
def test_canvas_only_qr_payload_is_built_from_the_internals(simulator: Simulator, wa_options, tmp_path):
    simulator.configure(qr_data_ref=False)

    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "profile", simulator.url, **wa_options)
        await wa.start()
        try:
            snap = await wa.wait_for_state(S.QR, timeout=15)
            if not snap.qr:   # the payload is assembled from async module calls: one more push
                snap = await wa.wait_for_change(snap, 5)
            assert await wa.page.locator("[data-ref]").count() == 0
            assert snap.state is S.QR and snap.qr == simulator.current_qr(), snap
            simulator.link(snap.qr)                                  # the phone scans what we read
            assert (await wa.wait_for_state(S.CONNECTED, timeout=15)).state is S.CONNECTED
        finally:
            await wa.close()

    run(scenario())


# --------------------------------------------------------------------------- DOM only (internals hidden)
@browser
@pytest.mark.parametrize("language", ["en", "de"])
def test_dom_only_main_states(simulator: Simulator, wa_options, tmp_path, language):
    simulator.configure(internals=False, language=language)

    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "profile", simulator.url, **wa_options)
        await wa.start()
        try:
            seen = await collect(wa, lambda s: s.state is S.QR and s.qr)
            assert seen[0].state is S.LOADING and all(s.source == "dom" for s in seen), seen
            assert seen[-1].qr == simulator.current_qr()
            simulator.link()
            snap = await wa.wait_for_state(S.CONNECTED, timeout=15)
            assert snap.state is S.CONNECTED and snap.synced and snap.source == "dom", snap
            simulator.offline()
            assert (await wa.wait_for_state(S.OFFLINE, timeout=10)).state is S.OFFLINE
            simulator.online()
            assert (await wa.wait_for_state(S.CONNECTED, timeout=10)).state is S.CONNECTED
            assert simulator.conflict() == 1
            assert (await wa.wait_for_state(S.CONFLICT, timeout=10)).state is S.CONFLICT
            assert await wa.take_over() is True                     # the click fallback, in this language
            assert (await wa.wait_for_state(S.CONNECTED, timeout=10)).state is S.CONNECTED
        finally:
            await wa.close()
        c = counters(simulator)
        assert c["use_here_clicks"] == 1 and c["takeover_calls"] == 0, c

    run(scenario())


@browser
def test_dom_only_idle_qr_is_refreshed_by_its_button_in_german(simulator: Simulator, wa_options, tmp_path):
    simulator.configure(internals=False, language="de", first_qr_seconds=0.8, qr_interval=0.5, qr_count=2)

    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "profile", simulator.url, **wa_options)
        await wa.start()
        try:
            idle = await wa.wait_for_state(S.QR_IDLE, timeout=15)
            assert idle.source == "dom" and idle.qr is None
            assert await wa.refresh_qr() is True                   # no Cmd.refreshQR: the button
            fresh = await wa.wait_for_state(S.QR, timeout=5)
            assert fresh.qr and fresh.qr == simulator.current_qr()
        finally:
            await wa.close()
        c = counters(simulator)
        assert c["refresh_qr_calls"] == 0 and c["clicks"].get("reload_qr") == 1, c

    run(scenario())


@browser
def test_dom_only_passkey_screen_headless_and_cancel_gives_a_new_qr(simulator: Simulator, wa_options, tmp_path):
    """The Shortcake screens by test id alone; headless, Continue cannot finish (WebAuthn needs a
    window); Cancel returns to a QR whose payload changed (the ADV secret was rotated)."""
    simulator.configure(internals=False, passkey=True, language="pt")

    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "profile", simulator.url, **wa_options)
        await wa.start()
        try:
            qr = await wa.wait_for_state(S.QR, timeout=15)
            simulator.link()
            snap = await wa.wait_for_state(S.PASSKEY, timeout=10)
            assert (snap.link_step, snap.source, snap.qr) == (LinkStep.PROMPT, "dom", None), snap
            await wa.page.locator("[data-testid='shortcake_passkey_continue_button']").click()
            assert (await wa.wait_for_change(snap, 1.5)).link_step is LinkStep.PROMPT   # still asking
            await wa.page.locator("[data-testid='shortcake_cancel_button']").click()
            again = await wa.wait_for_state(S.QR, timeout=10)
            assert again.qr and again.qr != qr.qr, again
        finally:
            await wa.close()

    run(scenario())


# --------------------------------------------------------------------------- logout reason
@browser
def test_logout_reason_captured_across_the_reload_local_and_removed(simulator: Simulator, wa_options, tmp_path):
    """The URL carries only numeric codes (and none for most reasons): the string reason is read
    in the page before WhatsApp reloads it, and reported with the URL's code and flag."""

    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "profile", simulator.url, **wa_options)
        await wa.start()
        try:
            await link_and_connect(wa, simulator)
            # Local: the salt is gone -> the page logs itself out with missing_enc_salt (no code).
            await wa.page.evaluate("localStorage.removeItem('WAWebEncKeySalt')")
            await wa.reload()
            snap = await wa.wait_for_state(S.QR, timeout=15)
            assert snap.logout is not None, snap
            assert (snap.logout.reason, snap.logout.code, snap.logout.post_logout) == \
                ("missing_enc_salt", None, True), snap
            assert "missing_enc_salt" not in wa.page.url               # only in the page, before its reload
            # The reload we ask for drops the old logout.
            await wa.reload()
            again = await wa.wait_for_state(S.QR, timeout=15)
            assert again.logout is None or again.logout.reason is None, again
        finally:
            await wa.close()
        wa = WhatsAppPage(tmp_path / "profile2", simulator.url, **wa_options)
        await wa.start()
        try:
            await link_and_connect(wa, simulator)
            simulator.revoke(reason="user_initiated")                   # removed by the phone
            snap = await wa.wait_for_state(S.QR, timeout=15)
            assert snap.logout is not None and snap.logout.reason == "user_initiated", snap
            assert snap.logout.code is None and snap.logout.post_logout
            assert snap.qr and snap.account is None                    # the page cleared its storage
        finally:
            await wa.close()

    run(scenario())


@browser
def test_logout_reason_with_a_code_and_kept_in_session_storage(simulator: Simulator, wa_options, tmp_path):
    """A rejected newest key generation: code 0 in the URL and web_fail_offline_resume in the page.
    The reason also survives in sessionStorage for a watcher that starts on the reloaded page."""

    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "profile", simulator.url, **wa_options)
        await wa.start()
        try:
            await link_and_connect(wa, simulator)
            simulator.tear_rotation()
            await wa.reload()
            snap = await wa.wait_for_state(S.QR, timeout=15)
            assert snap.logout is not None and snap.logout.code == "0", snap
            assert snap.logout.reason == "web_fail_offline_resume" and snap.logout.post_logout
            kept = json.loads(await wa.page.evaluate("sessionStorage.getItem('__linda_logout')"))
            assert kept["reason"] == "web_fail_offline_resume"
        finally:
            await wa.close()

    run(scenario())


# --------------------------------------------------------------------------- event-driven watching
@browser
def test_page_changes_without_a_state_change_push_nothing(simulator: Simulator, wa_options, tmp_path):
    """A busy chat list (rows added, renamed, attributes changed) and an unrelated node outside
    it: the page pushes no reading, wait_for_change sleeps to its timeout, nothing is read."""
    simulator.configure(chat_rows=200)

    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "profile", simulator.url, **wa_options)
        await wa.start()
        try:
            snap = await link_and_connect(wa, simulator)
            await asyncio.sleep(0.3)   # let the last pushes of the sync land
            pushes, reads = wa.pushes, wa.reads
            await wa.page.evaluate("""() => {
                const grid = document.querySelector('#pane-side [role=grid]');
                for (let i = 0; i < 300; i++) {
                    const row = document.createElement('div');
                    row.setAttribute('role', 'row');
                    row.textContent = 'Computer not connected ' + i;   // marker text, but in the chat list
                    grid.appendChild(row);
                }
                grid.querySelectorAll('span[title]').forEach((s) => { s.textContent = 'renamed'; s.className = 'x'; });
                const note = document.createElement('div');
                note.className = 'toast';
                document.body.appendChild(note);
                note.setAttribute('class', 'toast shown');
            }""")
            later = await wa.wait_for_change(snap, 2.0)
            assert later == snap
            assert wa.pushes == pushes and wa.reads == reads, (wa.pushes - pushes, wa.reads - reads)
            simulator.offline()                                         # a real change still comes at once
            assert (await wa.wait_for_change(snap, 10)).state is S.OFFLINE
            assert wa.pushes > pushes and wa.reads == reads
        finally:
            await wa.close()

    run(scenario())


@browser
def test_a_url_change_without_a_new_document_is_pushed(simulator: Simulator, wa_options, tmp_path):
    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "profile", simulator.url, **wa_options)
        await wa.start()
        try:
            snap = await wa.wait_for_state(S.QR, timeout=15)
            reads = wa.reads
            await wa.page.evaluate("history.replaceState(null, '', '/?post_logout=1&logout_reason=3')")
            later = await wa.wait_for_change(snap, 5)
            assert later.state is S.QR and later.logout is not None and later.logout.code == "3", later
            assert wa.reads == reads
        finally:
            await wa.close()

    run(scenario())


@browser
def test_safety_net_reads_a_page_that_went_quiet(simulator: Simulator, wa_options, tmp_path):
    """No push for the safety-net interval: one read confirms the page still answers."""

    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "profile", simulator.url, **wa_options)
        await wa.start()
        try:
            snap = await link_and_connect(wa, simulator)
            wa.safety_net_seconds = 0.5     # 30 s in the app; short here to see it happen
            reads = wa.reads
            assert await wa.wait_for_change(snap, 1.6) == snap
            assert 1 <= wa.reads - reads <= 4
        finally:
            await wa.close()

    run(scenario())


# --------------------------------------------------------------------------- one tab per profile
async def _two_tabs_then_kill(profile: Path, url: str, executable: str) -> None:
    """A bare Playwright browser with two WhatsApp tabs, killed: Chromium's session files remember both."""
    from playwright.async_api import async_playwright

    from linda_desktop.system.processes import main_browser_pid
    from tests.integration.conftest import OFFLINE_ARGS

    async with async_playwright() as p:
        ctx = await p.chromium.launch_persistent_context(str(profile), executable_path=executable,
                                                         args=list(OFFLINE_ARGS))
        await ctx.pages[0].goto(url)
        await (await ctx.new_page()).goto(url)
        await asyncio.sleep(3)                                    # the session file records both tabs
        pid = main_browser_pid(profile)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.5)
    prefs_file = profile / "Default" / "Preferences"
    prefs = json.loads(prefs_file.read_text()) if prefs_file.exists() else {}
    prefs.setdefault("session", {})["restore_on_startup"] = 1   # "continue where you left off"
    prefs_file.write_text(json.dumps(prefs))


@browser
def test_restored_tabs_after_a_kill_leave_one_whatsapp_page(simulator: Simulator, wa_options, tmp_path):
    profile, control = tmp_path / "profile", tmp_path / "control"

    async def scenario() -> None:
        await _two_tabs_then_kill(profile, simulator.url, wa_options["executable"])
        shutil.copytree(profile, control, symlinks=True)
        # The control: a plain launch of the same profile brings both WhatsApp tabs back.
        from playwright.async_api import async_playwright

        async with async_playwright() as p:
            ctx = await p.chromium.launch_persistent_context(str(control), executable_path=wa_options["executable"],
                                                             args=list(wa_options["extra_args"]))
            await asyncio.sleep(1.5)
            restored = [pg for pg in ctx.pages if pg.url.startswith(simulator.url)]
            await ctx.close()
        assert len(restored) == 2, restored
        wa = WhatsAppPage(profile, simulator.url, **wa_options)
        await wa.start()
        try:
            assert (await wa.wait_until_settled(15)).state is S.QR
            await asyncio.sleep(1.5)
            assert wa.page is not None and wa.page.context.pages == [wa.page]
            assert json.loads((profile / "Default" / "Preferences").read_text())["profile"]["exit_type"] == "Normal"
            # A second WhatsApp tab opened later (window.open, a link) is closed too.
            second = await wa.page.context.new_page()
            try:
                await second.goto(simulator.url)
            except PlaywrightError:
                pass                                              # closed while it loaded
            for _ in range(50):
                if second.is_closed():
                    break
                await asyncio.sleep(0.1)
            assert second.is_closed() and wa.extra_tabs_closed >= 1
        finally:
            await wa.close()

    run(scenario())


# --------------------------------------------------------------------------- pairing code
@browser
def test_pairing_code_by_wa_js_then_by_the_page_form(simulator: Simulator, wa_options, tmp_path):
    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "p1", simulator.url, **wa_options)
        await wa.start()
        try:
            await wa.wait_for_state(S.QR, timeout=15)
            with pytest.raises(PairingCodeFailed):
                await wa.request_pairing_code("12")                  # no phone number: refused here
            with pytest.raises(PairingCodeFailed) as info:
                await wa.request_pairing_code("+49 1512 3456789")    # WhatsApp refuses it: said at once
            assert "no pairing code" in str(info.value) and info.value.fix
            if (await wa.snapshot()).state is not S.QR:               # the refusal left the form open
                await wa.reload()
                await wa.wait_for_state(S.QR, timeout=15)
            code = await wa.request_pairing_code("+1 555 000-1234")
            assert len(code) == 9 and code[4] == "-"
            snap = await wa.wait_for_state(S.PAIRING_CODE, timeout=5)
            assert snap.pairing_code == code == f"{simulator.pairing_code()[:4]}-{simulator.pairing_code()[4:]}"
            simulator.enter_pairing_code(code)
            assert (await wa.wait_for_state(S.CONNECTED, timeout=15)).state is S.CONNECTED
        finally:
            await wa.close()
        simulator.configure(pairing_code_seconds=1.0)
        wa = WhatsAppPage(tmp_path / "p0", simulator.url, **wa_options)
        await wa.start()
        try:
            await wa.wait_for_state(S.QR, timeout=15)
            await wa.request_pairing_code("+1 555 000-1234")
            shown = await wa.wait_for_state(S.PAIRING_CODE, timeout=5)
            expired = await wa.wait_for_change(shown, 10)            # the code ran out
            assert expired.state is S.PAIRING_CODE and expired.pairing_code is None, expired
        finally:
            await wa.close()
        clicks = counters(simulator)["text_clicks"]
        simulator.configure(wpp_api=False, language="pt", pairing_code_seconds=180.0)
        wa = WhatsAppPage(tmp_path / "p2", simulator.url, **wa_options)
        await wa.start()
        try:
            await wa.wait_for_state(S.QR, timeout=15)
            code = await wa.request_pairing_code("+1 555 000-1234")
            assert code.replace("-", "") == simulator.pairing_code()
        finally:
            await wa.close()
        assert counters(simulator)["text_clicks"] > clicks          # the form: link, then Next

    run(scenario())


# --------------------------------------------------------------------------- the window
async def virtual_authenticator(page: Any) -> tuple[Any, str]:
    """CDP WebAuthn: a platform authenticator with user verification (no passkey on it yet)."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable")
    auth = await cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
        "hasUserVerification": True, "isUserVerified": True}})
    return cdp, auth["authenticatorId"]


async def add_passkey(cdp: Any, authenticator: str, rp_id: str) -> None:
    """The owner's passkey on the virtual authenticator."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    await cdp.send("WebAuthn.addCredential", {"authenticatorId": authenticator, "credential": {
        "credentialId": base64.b64encode(b"owner-passkey").decode(), "isResidentCredential": True,
        "rpId": rp_id, "privateKey": base64.b64encode(key).decode(),
        "userHandle": base64.b64encode(b"owner").decode(), "signCount": 0}})


@browser
def test_passkey_step_finishes_in_the_same_hidden_window_brought_on_screen(tmp_path, wa_options, xvfb):
    """One browser (same pid) shows the QR off screen, comes on screen for the Shortcake step,
    passes WebAuthn with a CDP virtual authenticator, shows the matching code, and is linked."""
    sim = Simulator(None, tmp_path / "sim", url_host="localhost", boot_seconds=0.2, loading_seconds=0.3,
                    passkey=True, sync_seconds=0.3)
    sim.start()
    args = ("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE localhost",)

    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "profile", sim.url, executable=wa_options["executable"], extra_args=args,
                          hidden_window=True, env={**os.environ, "DISPLAY": xvfb})
        await wa.start()
        try:
            pid = wa.browser_pid
            assert not wa.headless and not wa.visible and not await wa.window_on_screen()
            assert (await wa.wait_for_state(S.QR, timeout=15)).qr
            assert await wa.page.evaluate("window.outerHeight > window.innerHeight")   # a real window
            sim.link()
            snap = await wa.wait_for_state(S.PASSKEY, timeout=10)
            assert snap.link_step is LinkStep.PROMPT and snap.qr is None, snap
            assert await wa.show_window() is True
            assert wa.visible and await wa.window_on_screen()
            cdp, authenticator = await virtual_authenticator(wa.page)
            continue_button = wa.page.locator("[data-testid='shortcake_passkey_continue_button']")
            await continue_button.click()                            # no passkey yet: an error
            failed = await collect(wa, lambda s: s.link_step is LinkStep.ERROR, timeout=10, since=snap)
            assert failed[-1].state is S.PASSKEY and failed[-1].link_step is LinkStep.ERROR, failed
            await add_passkey(cdp, authenticator, "localhost")
            await continue_button.click()
            seen = await collect(wa, lambda s: s.link_step is LinkStep.CODE_MATCHING, timeout=15, since=failed[-1])
            steps = [s.link_step for s in seen if s.state is S.PASSKEY]
            assert steps[-1] is LinkStep.CODE_MATCHING and LinkStep.WAITING_FOR_PHONE in steps, seen
            assert seen[-1].verification_code == sim.passkey_code(timeout=5), seen[-1]
            await wa.page.locator("[data-testid='shortcake_code_confirm_button']").click()
            assert (await wa.wait_for_state(S.CONNECTED, timeout=15)).state is S.CONNECTED
            assert wa.browser_pid == pid                             # the same browser all along
            await wa.hide_window()
            assert not wa.visible and not await wa.window_on_screen()
        finally:
            await wa.close()

    try:
        run(scenario())
        assert sim.devices()["devices"][0]["status"] == "active"
        assert sim.counters()["link_attempts"] == 1                  # one scan served the whole link
    finally:
        sim.stop()


@browser
def test_headless_page_has_no_window_to_show(simulator: Simulator, wa_options, tmp_path):
    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "profile", simulator.url, **wa_options)
        await wa.start()
        try:
            assert await wa.show_window() is False and not wa.visible
            await wa.hide_window()
        finally:
            await wa.close()

    run(scenario())


# --------------------------------------------------------------------------- the browser itself
@browser
def test_user_agent_is_not_headless_and_a_headless_one_is_refused(simulator: Simulator, wa_options, tmp_path):
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
            await asyncio.sleep(0.5)
            assert (await wa.snapshot()).state is S.UNKNOWN
        finally:
            await wa.close()
        simulator.stop()
        down = WhatsAppPage(tmp_path / "p2", simulator.url, nav_retry_seconds=0.5, **wa_options)
        await down.start()  # an unreachable server is a state, not a launch failure
        try:
            assert (await down.snapshot()).state is S.OFFLINE
            simulator.start()
            # wait_for_change reloads a page stuck on the browser's error page by itself.
            assert (await down.wait_for_state(S.QR, timeout=20)).state is S.QR
        finally:
            await down.close()

    run(scenario())


@browser
def test_profile_survives_clean_close_and_relaunch_is_connected(simulator: Simulator, wa_options, tmp_path):
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
            assert snap.state is S.CONNECTED and snap.logout is None, snap
        finally:
            await again.close()

    run(scenario())
    assert simulator.devices()["link_attempts"] == 1


@browser
def test_flush_storage_makes_the_salt_survive_a_sigkill(simulator: Simulator, wa_options, tmp_path):
    """Right after linking, localStorage (the salt) is not on disk yet: killing every browser
    process at once (a power loss) loses it and the page logs out with missing_enc_salt.
    After flush_storage it survives."""

    async def link_then_kill(profile: Path, flush: bool) -> float:
        wa = WhatsAppPage(profile, simulator.url, **wa_options)
        await wa.start()
        await wa.wait_for_state(S.QR, timeout=15)
        simulator.link()
        linked_at = time.monotonic()
        seen = await collect(wa, lambda s: s.state is S.CONNECTED and s.synced)
        assert seen[-1].synced, seen   # flush_storage reloads: never during the first history sync
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
            assert snap.state is S.QR and snap.logout and snap.logout.reason == "missing_enc_salt", snap

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
            assert (await wa.wait_for_change(PageSnapshot(S.QR), 1)).state is S.UNKNOWN
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
            with pytest.raises(PlaywrightError):
                await wa.page.goto("chrome://crash", timeout=5_000)
            await asyncio.wait_for(fired.wait(), 10)
            assert wa.crashed and (await wa.snapshot()).state is S.UNKNOWN
        finally:
            await asyncio.wait_for(wa.close(), 20)
        assert not (tmp_path / "profile" / "SingletonLock").exists()  # closed, not killed
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    run(scenario())


@browser
def test_second_browser_on_the_same_profile_is_profile_in_use(simulator: Simulator, wa_options, tmp_path):
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


def test_desktop_user_agent_matches_chrome_reduced_form():
    assert desktop_user_agent("156.0.8078.108", "linux") == (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/156.0.0.0 Safari/537.36")
    assert "Windows NT 10.0" in desktop_user_agent("120.1.2.3", "win32")
    assert "Mac OS X" in desktop_user_agent("120.1.2.3", "darwin")
    assert fix_user_agent("x HeadlessChrome/156.0.0.0 y") == "x Chrome/156.0.0.0 y"
