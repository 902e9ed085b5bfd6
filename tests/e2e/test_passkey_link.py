"""Linking that finishes on every account (issue 11), end to end against the simulator's in-memory
Shortcake flow (reference §4):

- the passkey step finishes in the browser that showed the QR: the same process and page, its
  window brought on screen, Continue, a WebAuthn virtual authenticator (CDP), the code confirmed,
  connected, then back to headless; no second QR;
- a stage that times out, or Cancel: the owner is asked to scan a new code; nothing hangs;
- the pairing code (`run --phone`): shown, typed on the simulated phone, connected; a bad number
  gets one clear line;
- and why the old "close headless, reopen visible" path had to go: reopening the profile loses the
  pairing.

The owner's hands in the browser window are a second CDP client on the app's own Chromium:
``--browser`` is a wrapper that adds ``--remote-debugging-port=0`` (Chromium then writes
``DevToolsActivePort`` into the profile). Clicks go through CDP ``Input`` events, which the page
sees as trusted, in the real (visible) window.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from linda_desktop.system.processes import main_browser_pid
from tests.e2e.harness import CHROMIUM, REPO, AppProcess, cli, write_settings
from tests.whatsapp_sim.control import Simulator, free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xvfb, pytest.mark.timeout(240)]

ACCOUNT = "15550001234"


# ---------------------------------------------------------------------- the owner's hands

def cdp_browser_wrapper(folder: Path) -> Path:
    """A ``--browser`` that is Chromium with a DevTools port the test can attach to."""
    folder.mkdir(parents=True, exist_ok=True)
    wrapper = folder / "chromium-with-devtools"
    wrapper.write_text(f'#!/bin/sh\nexec {CHROMIUM} --remote-debugging-port=0 "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def passkey_credential(rp_id: str) -> dict[str, Any]:
    """A discoverable credential for ``rp_id`` (the owner's passkey), for WebAuthn.addCredential."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return {"credentialId": base64.b64encode(os.urandom(16)).decode(), "isResidentCredential": True,
            "rpId": rp_id, "privateKey": base64.b64encode(der).decode(),
            "userHandle": base64.b64encode(b"owner").decode(), "signCount": 0}


class OwnerHands:
    """A second CDP client on the app's browser: what the owner sees and does in its window."""

    def __init__(self, profile: Path, site: str) -> None:
        self.profile = profile
        self.site = site
        self._pw: Any = None
        self.browser: Any = None
        self.page: Any = None
        self.cdp: Any = None
        self.authenticator: str | None = None

    def __enter__(self) -> OwnerHands:
        from playwright.sync_api import sync_playwright

        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.connect_over_cdp(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 20
        while self.page is None and time.monotonic() < deadline:
            pages = [p for c in self.browser.contexts for p in c.pages if p.url.startswith(self.site)]
            self.page = pages[0] if pages else None
            time.sleep(0.1)
        assert self.page is not None, "the app's browser shows no WhatsApp page"
        return self

    def add_passkey(self, rp_id: str = "localhost") -> None:
        """WebAuthn.addVirtualAuthenticator with the owner's passkey on it: Chrome's dialog is
        answered by it, user verified (as after the phone's screen lock)."""
        self.cdp = self.page.context.new_cdp_session(self.page)
        self.cdp.send("WebAuthn.enable", {"enableUI": False})
        self.authenticator = self.cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
            "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
            "isUserVerified": True, "automaticPresenceSimulation": True}})["authenticatorId"]
        self.cdp.send("WebAuthn.addCredential", {"authenticatorId": self.authenticator,
                                                 "credential": passkey_credential(rp_id)})

    def click(self, test_id: str, timeout: float = 15) -> None:
        self.page.click(f'[data-testid="{test_id}"]', timeout=timeout * 1000)

    def window_bounds(self) -> dict[str, Any]:
        session = self.cdp or self.page.context.new_cdp_session(self.page)
        window = session.send("Browser.getWindowForTarget")["windowId"]
        return dict(session.send("Browser.getWindowBounds", {"windowId": window})["bounds"])

    def __exit__(self, *exc: object) -> None:
        try:
            if self._pw is not None:
                self._pw.stop()  # drops this client only; the app's browser keeps running
        except Exception:  # noqa: BLE001 - the browser may be gone already (back to headless)
            pass


def visible_browser_windows(display: str) -> list[tuple[int, int, int, int]]:
    """Geometry of every Chromium window mapped on ``display`` (x, y, width, height)."""
    env = {**os.environ, "DISPLAY": display}
    found = subprocess.run(["xdotool", "search", "--onlyvisible", "--class", "chromium"],
                           capture_output=True, text=True, env=env).stdout.split()
    boxes = []
    for wid in found:
        out = subprocess.run(["xdotool", "getwindowgeometry", "--shell", wid], capture_output=True, text=True,
                             env=env).stdout
        values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        if values:
            boxes.append((int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])))
    return boxes


def on_screen(boxes: list[tuple[int, int, int, int]], size: tuple[int, int] = (1280, 1024)) -> bool:
    """A real window (not a 1×1 helper) whose top-left corner is inside the screen."""
    return any(w > 200 and h > 200 and 0 <= x < size[0] and 0 <= y < size[1] for x, y, w, h in boxes)


def is_headless(pid: int | None) -> bool:
    import psutil

    return pid is not None and any(a.startswith("--headless") for a in psutil.Process(pid).cmdline())


def state(e: dict[str, Any], name: str, **fields: Any) -> bool:
    return e.get("event") == "state" and e.get("state") == name and all(e.get(k) == v for k, v in fields.items())


# ---------------------------------------------------------------------- fixtures

@pytest.fixture
def passkey_sim(tmp_path: Path) -> Iterator[Simulator]:
    """The simulator on ``localhost`` (WebAuthn refuses IP origins), every scan needing a passkey."""
    simulator = Simulator(free_port(), tmp_path / "sim-state", url_host="localhost", loading_seconds=0.3,
                          first_qr_seconds=60, qr_interval=30, passkey=True, passkey_phone_seconds=0.5,
                          account=ACCOUNT)
    simulator.start()
    try:
        yield simulator
    finally:
        simulator.stop()


def start(apps: list[AppProcess], data: Path, sim: Simulator, browser: Path, *extra: str,
          env: dict[str, str] | None = None) -> AppProcess:
    app = AppProcess(data, sim.url, *extra, env=env)
    app.cmd[app.cmd.index("--browser") + 1] = str(browser)
    apps.append(app.start())
    return app


# ---------------------------------------------------------------------- the passkey step

@pytest.mark.skipif(shutil.which("xdotool") is None, reason="xdotool is not installed")
def test_the_passkey_step_finishes_in_the_browser_that_showed_the_qr(tmp_path, passkey_sim, xvfb, apps) -> None:
    sim = passkey_sim
    data = tmp_path / "data"
    write_settings(data, flush_delay_seconds=2)
    app = start(apps, data, sim, cdp_browser_wrapper(tmp_path / "bin"), env={"DISPLAY": xvfb})
    app.wait_for(lambda e: e.get("event") == "qr", 60)
    pid = main_browser_pid(data / "profile")
    assert pid is not None and not is_headless(pid)  # a real window, kept out of sight
    assert not on_screen(visible_browser_windows(xvfb))

    with OwnerHands(data / "profile", sim.url) as hands:
        hands.add_passkey()
        sim.link()  # the phone scans the code
        prompt = app.wait_for(lambda e: state(e, "needs_link", step="passkey", stage="prompt"), 30)
        mark = app.events.index(prompt)
        assert "Continue" in prompt["reason"]
        # The same window comes on screen: same browser process, same page.
        deadline = time.monotonic() + 10
        while not on_screen(visible_browser_windows(xvfb)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert on_screen(visible_browser_windows(xvfb)), visible_browser_windows(xvfb)
        assert hands.window_bounds()["windowState"] == "normal"
        assert main_browser_pid(data / "profile") == pid
        out = cli(data, "finish-link", wa_url=sim.url)  # asks for the window that is already up: no new one
        assert out.returncode == 0 and "on screen" in out.stdout, out
        assert main_browser_pid(data / "profile") == pid

        hands.click("shortcake_passkey_continue_button")  # Chrome asks; the virtual authenticator answers
        matching = app.wait_for(lambda e: state(e, "needs_link", step="passkey", stage="code_matching"), 30,
                                after=mark)
        shown = sim.passkey_code(timeout=5)
        assert matching.get("verification_code") == shown  # the app shows the very code the page shows
        hands.click("shortcake_code_confirm_button")
        connected = app.wait_for(lambda e: state(e, "connected"), 30, after=mark)
        assert main_browser_pid(data / "profile") == pid  # one browser process served the whole link

    after = app.events.index(connected)
    stages = [e.get("stage") for e in app.events[mark:after] if e.get("step") == "passkey"]
    assert stages[0] == "prompt" and stages[-1] == "code_matching"
    assert not [e for e in app.events[mark:] if e.get("event") == "qr"], "a second QR was shown"
    devices = sim.devices()
    assert len(devices["devices"]) == 1 and devices["devices"][0]["status"] == "active"
    assert devices["devices"][0]["account"] == ACCOUNT

    # Back to headless once synced: the link backup is taken at rest, then a headless browser.
    app.wait_for(lambda e: e.get("event") == "backup" and e.get("reason") == "link", 60, after=after)
    deadline = time.monotonic() + 30
    while not is_headless(main_browser_pid(data / "profile")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert is_headless(main_browser_pid(data / "profile"))
    assert visible_browser_windows(xvfb) == []
    app.wait_for(lambda e: state(e, "connected"), 60, after=after + 1)
    assert app.terminate() == 0


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_a_passkey_step_that_times_out_or_is_cancelled_asks_for_a_new_scan(tmp_path, passkey_sim, xvfb, apps,
                                                                           how) -> None:
    sim = passkey_sim
    if how == "timeout":
        sim.configure(passkey_stage_seconds=4)
    data = tmp_path / "data"
    write_settings(data, flush_delay_seconds=2)
    app = start(apps, data, sim, cdp_browser_wrapper(tmp_path / "bin"), env={"DISPLAY": xvfb})
    app.wait_for(lambda e: e.get("event") == "qr", 60)
    pid = main_browser_pid(data / "profile")
    with OwnerHands(data / "profile", sim.url) as hands:
        sim.link()
        prompt = app.wait_for(lambda e: state(e, "needs_link", step="passkey", stage="prompt"), 30)
        mark = app.events.index(prompt)
        started = time.monotonic()
        if how == "cancel":
            hands.click("shortcake_cancel_button")
        expired = app.wait_for(lambda e: state(e, "needs_link", code="link_expired"), 30, after=mark)
        took = time.monotonic() - started
        assert "scan the new QR code" in expired["reason"]
        fresh = app.wait_for(lambda e: e.get("event") == "qr", 30, after=app.events.index(expired))
        assert fresh["data"] == sim.current_qr()  # the code on offer is the page's new one
        assert main_browser_pid(data / "profile") == pid  # same browser: asked again, not restarted
        assert took < 30, f"the owner heard about it after {took:.1f} s"
        # Nothing hangs: the fresh code links again, up to the passkey prompt.
        sim.link()
        app.wait_for(lambda e: state(e, "needs_link", step="passkey", stage="prompt"), 30,
                     after=app.events.index(fresh))
    assert sim.devices()["devices"] == [] or all(d["status"] != "active" for d in sim.devices()["devices"])
    assert app.terminate() == 0


def test_headless_run_says_in_one_line_how_to_finish_the_passkey_step(tmp_path, passkey_sim, apps) -> None:
    sim = passkey_sim
    data = tmp_path / "data"
    write_settings(data, flush_delay_seconds=2)
    env = {k: "" for k in ("DISPLAY", "WAYLAND_DISPLAY")}
    app = start(apps, data, sim, Path(CHROMIUM), env=env)
    app.wait_for(lambda e: e.get("event") == "qr", 60)
    sim.link()
    said = app.wait_for(lambda e: state(e, "needs_link", step="passkey"), 30)
    assert said["code"] == "passkey_needs_display"
    words = said["reason"]
    assert "\n" not in words
    for way_out in ("import", "finish-link", "pairing code"):
        assert way_out in words, words
    assert app.proc is not None and app.proc.poll() is None  # still running: not a silent exit either
    # `finish-link` on a machine with no display has no window to bring up: one line with the ways out.
    out = cli(data, "finish-link", wa_url=sim.url)
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert "import" in out.stderr and "--phone" in out.stderr
    assert app.terminate() == 0


# ---------------------------------------------------------------------- pairing code

def test_run_with_phone_links_with_a_pairing_code(tmp_path, apps) -> None:
    data = tmp_path / "data"
    write_settings(data, flush_delay_seconds=2)
    with Simulator(free_port(), tmp_path / "sim-state", loading_seconds=0.3, first_qr_seconds=60,
                   account=ACCOUNT) as sim:
        app = start(apps, data, sim, Path(CHROMIUM), "--phone", f"+{ACCOUNT[:1]} {ACCOUNT[1:4]} {ACCOUNT[4:]}")
        event = app.wait_for(lambda e: e.get("event") == "pairing_code", 60)
        code = event["code"]
        assert len(code) == 9 and code[4] == "-" and code.replace("-", "").isalnum()
        assert code.replace("-", "") == sim.pairing_code(timeout=5).replace("-", "")
        mark = app.events.index(event)
        sim.enter_pairing_code(code)  # the phone: Linked devices → Link with phone number instead
        app.wait_for(lambda e: state(e, "connected"), 30, after=mark)
        assert sim.devices()["devices"][0]["account"] == ACCOUNT
        assert app.terminate() == 0


@pytest.mark.parametrize("number", ["06 1234", "+31 6 CALL ME", "+1234567890123456"])
def test_run_with_a_bad_phone_number_says_so_in_one_line(tmp_path, number) -> None:
    out = subprocess.run([sys.executable, "-m", "linda_desktop", "run", "--json", "--data-dir", str(tmp_path / "d"),
                          "--wa-url", "http://127.0.0.1:9/", "--browser", CHROMIUM, "--phone", number],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("linda-desktop: ")
    assert "country code" in lines[0]
    assert "Traceback" not in out.stderr


# ---------------------------------------------------------------------- why the old path went

def test_reopening_the_profile_in_a_second_window_loses_the_pairing(tmp_path, passkey_sim, xvfb) -> None:
    """What "close headless, reopen visible" did: the simulator, like the real page, keeps the
    passkey step in memory only, so a new window on the same profile starts over with a new QR."""
    from playwright.sync_api import sync_playwright

    sim = passkey_sim
    profile = tmp_path / "profile"
    env = {**os.environ, "DISPLAY": xvfb}
    with sync_playwright() as pw:
        first = pw.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=False,
                                                      env=env, no_viewport=True)
        page = first.pages[0] if first.pages else first.new_page()
        page.goto(sim.url)
        page.wait_for_selector("div[data-ref]", timeout=30_000)
        shown = sim.current_qr()
        sim.link()
        page.wait_for_selector('[data-testid="shortcake_passkey_prompt_card"]', timeout=15_000)
        assert sim.passkey_stage() == "prompt"
        first.close()  # the old fallback: close this browser …

        second = pw.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=False,
                                                       env=env, no_viewport=True)
        page = second.pages[0] if second.pages else second.new_page()
        page.goto(sim.url)  # … and open the same profile in a visible window
        page.wait_for_selector("div[data-ref]", timeout=30_000)
        assert page.locator('[data-testid="shortcake_passkey_screen"]').count() == 0
        # The pairing is gone: the first page's in-memory step went with it (the server stops
        # counting a page as live 2 s after its last poll).
        deadline = time.monotonic() + 10
        while sim.passkey_stage() is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sim.passkey_stage() is None
        assert sim.current_qr() != shown  # a new QR: the owner would have to scan again
        assert all(d["status"] != "active" for d in sim.devices()["devices"])
        second.close()
