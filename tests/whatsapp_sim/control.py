"""Drive the simulator from tests: ``Simulator(port, state_dir, **options)``.

Stable API (other test suites import it); README.md lists every option, method and counter:

    sim = Simulator(port, state_dir, loading_seconds=0.3, qr_interval=2, first_qr_seconds=3)
    sim.start(); sim.url; sim.port
    device_id = sim.link()            # the phone scans the QR a page shows (waits for one)
    sim.revoke(); sim.conflict(); sim.offline(); sim.online()
    sim.devices()["devices"]          # active linked devices; also "revoked", "takeovers", ...
    sim.counters()["require_calls_before_boot"]; sim.counters()["text_clicks"]
    sim.configure(passkey=True); sim.restart(); sim.stop()

The simulator runs as a subprocess (``python -m tests.whatsapp_sim``) so a test can stop,
restart or SIGKILL it like the real server going away; the port stays the same.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.whatsapp_sim.engine import CONFIG_ALIASES, DEFAULT_CONFIG

REPO_ROOT = Path(__file__).resolve().parents[2]
OPTIONS = frozenset(DEFAULT_CONFIG) | frozenset(CONFIG_ALIASES)


class SimulatorError(RuntimeError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Simulator:
    def __init__(self, port: int | None = None, state_dir: str | Path | None = None, *,
                 url_host: str = "127.0.0.1", **options: Any) -> None:
        """``options``: the server config keys (README "Options"). ``url_host``: the host in
        ``url``/``origin`` ("localhost" for WebAuthn, which refuses IP-address origins)."""
        unknown = set(options) - OPTIONS
        if unknown:
            raise TypeError(f"unknown simulator options: {sorted(unknown)}")
        self.url_host = url_host
        self.port = port or free_port()
        self.state_dir = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="wa-sim-"))
        self.options = dict(options)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        return f"http://{self.url_host}:{self.port}/"

    @property
    def origin(self) -> str:
        return f"http://{self.url_host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "sim.log"

    def _argv(self) -> list[str]:
        argv = [sys.executable, "-m", "tests.whatsapp_sim", "--port", str(self.port),
                "--state-dir", str(self.state_dir)]
        if self.options:
            argv += ["--config", json.dumps({k: v for k, v in self.options.items() if v is not None})]
        return argv

    def start(self, timeout: float = 15.0) -> Simulator:
        if self.running:
            return self
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        self._log = open(self.log_file, "ab")  # noqa: SIM115 - open for the process's lifetime
        self.proc = subprocess.Popen(self._argv(), cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"simulator exited with {self.proc.returncode}; "
                                   f"log: {self.log_file.read_text()[-2000:]}")
            try:
                if self._request("GET", "/_sim/health", timeout=1.0).get("pid") == self.proc.pid:
                    return self
            except (OSError, SimulatorError):
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"simulator did not answer on port {self.port} within {timeout} s")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (the simulator saves its state), then SIGKILL if it does not go."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL: the server vanishes without saving (devices are saved when they change)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.stop()

    def restart(self) -> Simulator:
        self.stop()
        return self.start()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ HTTP
    def _request(self, method: str, path: str, body: dict[str, Any] | None = None,
                 timeout: float = 5.0) -> Any:
        data = json.dumps(body or {}).encode() if method == "POST" else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}" + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as res:
                return json.loads(res.read() or b"null")
        except urllib.error.HTTPError as err:
            try:
                info = json.loads(err.read() or b"{}")
            except ValueError:
                info = {}
            raise SimulatorError(err.code, info.get("error", "http_error"),
                                 info.get("message", str(err))) from None

    # ------------------------------------------------------------------ the phone
    def link(self, qr: str | None = None, *, timeout: float = 15.0, account: str | None = None) -> str:
        """The phone scans the QR shown right now (or ``qr``); waits up to ``timeout`` for a
        page to show one. Returns the new device id."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                body: dict[str, Any] = {"qr": qr} if qr else {}
                if account:
                    body["account"] = account
                return self._request("POST", "/_sim/phone/link", body)["device_id"]
            except SimulatorError as err:
                if err.code not in ("no_qr",) or time.monotonic() > deadline:
                    raise
            time.sleep(0.1)

    def revoke(self, device_id: str | None = None, reason: str | None = None) -> list[str]:
        """The phone (or WhatsApp) removes one device (or all) with the internal ``reason``
        (default ``user_initiated``; "" for none). The page's URL carries only its code, if any
        (``account_locked`` -> 3, ``history_sync_timeout`` -> 2, ``syncd_failure`` -> 1 ...)."""
        body: dict[str, Any] = {}
        if device_id:
            body["device_id"] = device_id
        if reason is not None:
            body["reason"] = reason
        return self._request("POST", "/_sim/phone/revoke", body)["revoked"]

    def conflict(self, device_id: str | None = None) -> int:
        """Another client opens the session: live connected pages show the conflict modal.
        Returns how many pages got it."""
        return self._request("POST", "/_sim/conflict", {"device_id": device_id} if device_id else {})["pages"]

    def offline(self) -> None:
        self._request("POST", "/_sim/offline")

    # ------------------------------------------------------------------ chats & messages
    def deliver(self, sender: str, text: str, *, name: str | None = None,
                chat_id: str | None = None) -> dict[str, Any]:
        """``sender`` (a phone number) writes ``text`` to the linked account: every active
        device of the account gets it once, on its next poll (or when it comes back).
        Returns {"id", "seq", "chat_id"}."""
        body: dict[str, Any] = {"from": sender, "text": text}
        if name:
            body["name"] = name
        if chat_id:
            body["chat_id"] = chat_id
        return self._request("POST", "/_sim/phone/message", body)

    def sent_messages(self, since: int = 0) -> list[dict[str, Any]]:
        """Messages the linked web client sent (what the other phones received), oldest first:
        seq, id, chat_id, text, t, device_id, account."""
        return self._request("GET", f"/_sim/phone/messages?direction=out&since={since}")["messages"]

    def messages(self, since: int = 0) -> list[dict[str, Any]]:
        """Every message both ways (direction "in" = delivered to the account, "out" = sent by it)."""
        return self._request("GET", f"/_sim/phone/messages?since={since}")["messages"]

    def online(self) -> None:
        self._request("POST", "/_sim/online")

    # ------------------------------------------------------------------ views & config
    def devices(self) -> dict[str, Any]:
        """{"devices": [active], "revoked": [...], "link_attempts", "links", "logins",
        "takeovers", "events"}; each device: device_id, account, wid, status (active|pending),
        linked_at, last_seen, takeovers, live_pages."""
        return self._request("GET", "/_sim/devices")

    def pages(self) -> list[dict[str, Any]]:
        """Pages the server knows: page_id, mode, device_id, conflict, live, qr, age."""
        return self._request("GET", "/_sim/pages")["pages"]

    def current_qr(self) -> str | None:
        """The QR payload a live page shows right now (what ``link()`` would scan)."""
        shown = [p for p in self.pages() if p["live"] and p["qr"]]
        return shown[-1]["qr"] if shown else None

    def configure(self, **options: Any) -> dict[str, Any]:
        """Change options now (new page loads use them) and for later restarts."""
        unknown = set(options) - OPTIONS
        if unknown:
            raise TypeError(f"unknown simulator options: {sorted(unknown)}")
        self.options.update(options)
        if self.running:
            return self._request("POST", "/_sim/config", options)["config"]
        return dict(self.options)

    # ------------------------------------------------------------------ counters & faults
    def counters(self) -> dict[str, Any]:
        """Totals since the state dir was made (or ``reset_counters``), live pages included:
        README "Counters" lists them; ``clicks`` maps button labels to clicks."""
        return self._request("GET", "/_sim/counters")

    def reset_counters(self) -> None:
        self._request("POST", "/_sim/counters/reset")

    def faults(self, **values: Any) -> dict[str, Any]:
        """Set server faults: ``deprecated_loads`` (int), ``block`` (None, "TOS_BLOCK",
        "SMB_TOS_BLOCK"), ``proxyblock`` (bool), ``frozen`` (bool). Returns all of them."""
        return self._request("POST", "/_sim/faults", values)["faults"]

    def deprecate_build(self, loads: int = 1) -> None:
        """The next ``loads`` page loads get an outdated WhatsApp build (DEPRECATED_VERSION);
        a reload after them is fine."""
        self.faults(deprecated_loads=loads)

    def ban(self, state: str = "TOS_BLOCK") -> None:
        """The account is banned: linked pages show ``state`` (TOS_BLOCK / SMB_TOS_BLOCK), no QR."""
        self.faults(block=state)

    def unban(self) -> None:
        self.faults(block=None)

    def proxyblock(self, on: bool = True) -> None:
        """The network blocks WhatsApp: every page shows PROXYBLOCK."""
        self.faults(proxyblock=on)

    def freeze(self, on: bool = True) -> None:
        """Liveness fault: connected pages keep their chat list but get no events or messages."""
        self.faults(frozen=on)

    def tear_rotation(self, device_id: str | None = None, reason: str | None = None) -> list[dict[str, Any]]:
        """From now on the server rejects the newest key generation of the device (or all) with
        a code-0 reason (default ``web_fail_offline_resume``), as after a kill during a key
        rotation; an older copy of the profile still authenticates and heals it.
        Returns [{"device_id", "rejected_gen"}]."""
        body: dict[str, Any] = {"device_id": device_id} if device_id else {}
        if reason:
            body["reason"] = reason
        return self._request("POST", "/_sim/tear_rotation", body)["torn"]

    def logout_pages(self, device_id: str | None = None, reason: str = "") -> int:
        """The server logs the live pages of the device (or all) out with ``reason`` (default:
        none, so the URL is ``/?post_logout=1``) while the device stays linked (the phone still
        lists it): restoring the profile reconnects. Returns how many pages."""
        body: dict[str, Any] = {"reason": reason}
        if device_id:
            body["device_id"] = device_id
        return self._request("POST", "/_sim/logout_pages", body)["pages"]

    def age_phone(self, days: float = 14, device_id: str | None = None) -> list[str]:
        """The phone was unused for ``days``; at 14 or more the server removes the device
        (``unknown_companion``) on its next contact."""
        body: dict[str, Any] = {"days": days}
        if device_id:
            body["device_id"] = device_id
        return self._request("POST", "/_sim/phone/age", body)["aged"]

    # ------------------------------------------------------------------ passkey & pairing code
    def _wait(self, probe: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} within {timeout} s")
            time.sleep(0.05)

    def passkey_stage(self) -> str | None:
        """The server-side Shortcake stage of the newest live page: prompt, waiting_for_phone,
        code_matching, or None."""
        stages = [p["passkey_stage"] for p in self.pages() if p["live"] and p["passkey_stage"]]
        return stages[-1] if stages else None

    def passkey_code(self, timeout: float = 0) -> str | None:
        """The ``XXXX-XXXX`` code a page shows in its code-matching card (waits up to ``timeout``)."""
        def probe() -> str | None:
            codes = [p["passkey_code"] for p in self.pages() if p["live"] and p["passkey_code"]]
            return codes[-1] if codes else None
        return self._wait(probe, timeout, "no passkey code") if timeout else probe()

    def confirm_passkey_code(self, code: str | None = None) -> str:
        """The phone confirms the matching code (the page's confirm button does the same).
        Returns the new device id."""
        body = {"code": code} if code else {}
        return self._request("POST", "/_sim/phone/confirm_code", body)["device_id"]

    def pairing_code(self, timeout: float = 0) -> str | None:
        """The 8-character pairing code a live page shows (no dash), waiting up to ``timeout``."""
        def probe() -> str | None:
            codes = [p["pairing_code"] for p in self.pages() if p["live"] and p["pairing_code"]]
            return codes[-1] if codes else None
        return self._wait(probe, timeout, "no pairing code") if timeout else probe()

    def enter_pairing_code(self, code: str) -> str | None:
        """The phone types ``code`` (dash optional). Returns the new device id, or None when the
        account needs the passkey step first. Errors: ``bad_code``, ``code_expired``."""
        return self._request("POST", "/_sim/phone/enter_code", {"code": code})["device_id"]

    def wait_for_page(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        """The first live page (see ``pages``) for which ``predicate`` holds, waiting for it."""
        def probe() -> dict[str, Any] | None:
            return next((p for p in self.pages() if p["live"] and predicate(p)), None)
        return self._wait(probe, timeout, "no such page")
