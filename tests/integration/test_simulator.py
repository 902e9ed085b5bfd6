"""The simulator itself: server-side rules over HTTP, and the behaviours that need a browser
(restart keeps the session, two live copies conflict, a lost salt logs the page out)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from linda_desktop.browser.whatsapp import WhatsAppPage
from linda_desktop.base.events import PageState as S
from tests.whatsapp_sim.control import REPO_ROOT, Simulator, SimulatorError, free_port


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 90))


def get(url: str, user_agent: str) -> str:
    req = urllib.request.Request(url, headers={"User-Agent": user_agent})
    with urllib.request.urlopen(req, timeout=5) as res:
        return res.read().decode()


CHROME_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/156.0.0.0 Safari/537.36")


# --------------------------------------------------------------------------- HTTP only
def test_unsupported_page_for_headless_and_old_chrome(simulator: Simulator):
    assert "WhatsApp works with Google Chrome 85+" in get(simulator.url, CHROME_UA.replace("Chrome/", "HeadlessChrome/"))
    assert "WhatsApp works with Google Chrome 85+" in get(simulator.url, CHROME_UA.replace("156.0", "84.0"))
    normal = get(simulator.url, CHROME_UA)
    assert "works with Google Chrome" not in normal and '"loading_seconds": 0.3' in normal


def test_qr_rotation_link_and_refusals(simulator: Simulator):
    simulator.configure(first_qr_seconds=0.6, qr_interval=0.4, qr_count=2)
    with pytest.raises(SimulatorError) as info:
        simulator.link(timeout=0)
    assert info.value.code == "no_qr"
    first = simulator._request("POST", "/_sim/api/qr", {"page_id": "p1"})
    fields = first["qr"].split(",")
    assert len(fields) == 5 and fields[0] == first["ref"] and fields[0].startswith("2@")
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
    # The page saw "idle" and says so: it no longer shows a code to scan.
    simulator._request("GET", "/_sim/api/poll?page_id=p1&mode=qr_idle")
    with pytest.raises(SimulatorError):
        simulator.link(timeout=0)
    fresh = simulator._request("POST", "/_sim/api/qr", {"page_id": "p1"})  # the reload button
    device = simulator.link(fresh["qr"])
    delivered = simulator._request("GET", "/_sim/api/poll?page_id=p1&mode=qr")["link"]
    assert delivered["device_id"] == device and delivered["wid"] == "15550001234:1@c.us"
    devices = simulator.devices()
    assert devices["link_attempts"] == 4 and devices["links"] == 1
    assert "secret" not in json.dumps(devices["devices"])


def test_login_rules_revoke_and_conflict_between_pages(simulator: Simulator):
    req = simulator._request
    req("POST", "/_sim/api/qr", {"page_id": "a"})
    device = simulator.link()
    creds = req("GET", "/_sim/api/poll?page_id=a&mode=qr")["link"]
    login = {"device_id": device, "secret": creds["secret"], "salt": creds["salt"]}
    assert req("POST", "/_sim/api/login", {"page_id": "a", **login})["status"] == "ok"
    assert req("POST", "/_sim/api/login", {"page_id": "x", **login, "secret": "bad"})["status"] == "revoked"
    broken = req("POST", "/_sim/api/login", {"page_id": "x", **login, "salt": "other"})
    assert broken == {"status": "broken", "reason": "missing_enc_salt"}
    # A second live page of the same device: the older one gets the conflict.
    assert req("POST", "/_sim/api/login", {"page_id": "b", **login})["status"] == "ok"
    assert req("GET", "/_sim/api/poll?page_id=a&mode=connected")["conflict"] is True
    assert req("GET", "/_sim/api/poll?page_id=b&mode=connected")["conflict"] is False
    req("POST", "/_sim/api/use_here", {"page_id": "a"})
    assert req("GET", "/_sim/api/poll?page_id=b&mode=connected")["conflict"] is True
    assert simulator.devices()["takeovers"] == 1
    assert simulator.revoke(reason="") == [device]
    assert req("GET", "/_sim/api/poll?page_id=a&mode=connected")["revoked"] == ""
    assert req("POST", "/_sim/api/login", {"page_id": "c", **login})["status"] == "revoked"
    view = simulator.devices()
    assert view["devices"] == [] and view["revoked"][0]["device_id"] == device


def test_restart_keeps_devices_and_config_and_the_cli_overrides(tmp_path: Path):
    port = free_port()
    sim = Simulator(port, tmp_path / "state", loading_seconds=0.3)
    with sim:
        sim._request("POST", "/_sim/api/qr", {"page_id": "p"})
        device = sim.link()
        sim.configure(qr_count=9)
        url = sim.url
    assert not sim.running
    with sim:  # same port: same origin for the browser
        assert sim.url == url
        assert [d["device_id"] for d in sim.devices()["devices"]] == [device]
        assert sim._request("GET", "/_sim/config")["config"]["qr_count"] == 9
    sim.kill()
    # The command line itself, as documented: options override the saved config.
    proc = subprocess.Popen([sys.executable, "-m", "tests.whatsapp_sim", "--port", str(port),
                             "--state-dir", str(tmp_path / "state"), "--qr-count", "4", "--passkey"],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert b"listening on http://127.0.0.1:" in proc.stdout.readline()
        config = json.loads(urllib.request.urlopen(url + "_sim/config", timeout=5).read())["config"]
        assert config["qr_count"] == 4 and config["passkey"] is True and config["loading_seconds"] == 0.3
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


# --------------------------------------------------------------------------- with a browser
@pytest.mark.browser
def test_connected_page_rides_out_a_simulator_restart(simulator: Simulator, wa_options, tmp_path):
    async def scenario() -> None:
        wa = WhatsAppPage(tmp_path / "profile", simulator.url, **wa_options)
        await wa.start()
        try:
            await wa.wait_for_state(S.QR, timeout=15)
            simulator.link()
            assert (await wa.wait_for_state(S.CONNECTED, timeout=15)).state is S.CONNECTED
            simulator.stop()
            assert (await wa.wait_for_state(S.OFFLINE, timeout=10)).state is S.OFFLINE
            simulator.start()
            assert (await wa.wait_for_state(S.CONNECTED, timeout=15)).state is S.CONNECTED
            assert simulator.pages()[0]["device_id"] == simulator.devices()["devices"][0]["device_id"]
        finally:
            await wa.close()
        simulator.restart()
        again = WhatsAppPage(tmp_path / "profile", simulator.url, **wa_options)
        await again.start()
        try:
            assert (await again.wait_until_settled(15)).state is S.CONNECTED
        finally:
            await again.close()

    run(scenario())


@pytest.mark.browser
def test_two_live_copies_of_a_session_conflict(simulator: Simulator, wa_options, tmp_path):
    """A restored copy of the profile running elsewhere: the older page gets the modal."""
    first_profile, copy_profile = tmp_path / "first", tmp_path / "copy"

    async def scenario() -> None:
        wa = WhatsAppPage(first_profile, simulator.url, **wa_options)
        await wa.start()
        await wa.wait_for_state(S.QR, timeout=15)
        simulator.link()
        await wa.wait_for_state(S.CONNECTED, timeout=15)
        await wa.close()
        shutil.copytree(first_profile, copy_profile)
        first = WhatsAppPage(first_profile, simulator.url, **wa_options)
        copy = WhatsAppPage(copy_profile, simulator.url, **wa_options)
        await first.start()
        try:
            assert (await first.wait_until_settled(15)).state is S.CONNECTED
            await copy.start()
            assert (await copy.wait_until_settled(15)).state is S.CONNECTED
            assert (await first.wait_for_state(S.CONFLICT, timeout=10)).state is S.CONFLICT
            assert await first.click_use_here()
            assert (await first.wait_for_state(S.CONNECTED, timeout=10)).state is S.CONNECTED
            assert (await copy.wait_for_state(S.CONFLICT, timeout=10)).state is S.CONFLICT
            assert simulator.devices()["takeovers"] == 1
        finally:
            await copy.close()
            await first.close()

    run(scenario())


@pytest.mark.browser
def test_lost_salt_logs_out_with_reason_but_the_device_stays_linked(simulator: Simulator,
                                                                   wa_options, tmp_path):
    profile = tmp_path / "profile"

    async def scenario() -> None:
        wa = WhatsAppPage(profile, simulator.url, **wa_options)
        await wa.start()
        await wa.wait_for_state(S.QR, timeout=15)
        device = simulator.link()
        await wa.wait_for_state(S.CONNECTED, timeout=15)
        await wa.close()
        shutil.rmtree(profile / "Default" / "Local Storage")
        again = WhatsAppPage(profile, simulator.url, **wa_options)
        await again.start()
        try:
            snap = await again.wait_until_settled(15)
            assert (snap.state, snap.post_logout, snap.reason) == (S.QR, True, "missing_enc_salt")
        finally:
            await again.close()
        devices = simulator.devices()
        assert [d["device_id"] for d in devices["devices"]] == [device]  # a restore can still help
        assert any(e["kind"] == "client_logout" and e["reason"] == "missing_enc_salt"
                   for e in devices["events"])

    run(scenario())
