"""Drive the simulator from tests: ``Simulator(port, state_dir, **options)``.

Stable API (other test suites import it):

    sim = Simulator(port, state_dir, loading_seconds=0.3, qr_interval=2, first_qr_seconds=3)
    sim.start(); sim.url; sim.port
    device_id = sim.link()            # the phone scans the QR a page shows (waits for one)
    sim.revoke(); sim.conflict(); sim.offline(); sim.online()
    sim.devices()["devices"]          # active linked devices; also "revoked", "takeovers", ...
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
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
OPTION_FLAGS = {
    "loading_seconds": "--loading-seconds", "qr_interval": "--qr-interval",
    "first_qr_seconds": "--first-qr-seconds", "qr_count": "--qr-count", "account": "--account",
}
BOOL_FLAGS = {"passkey": "passkey", "expose_internal": "expose-internal", "wpp_api": "wpp-api"}


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
    def __init__(self, port: int | None = None, state_dir: str | Path | None = None,
                 **options: Any) -> None:
        unknown = set(options) - set(OPTION_FLAGS) - set(BOOL_FLAGS)
        if unknown:
            raise TypeError(f"unknown simulator options: {sorted(unknown)}")
        self.port = port or free_port()
        self.state_dir = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="wa-sim-"))
        self.options = dict(options)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "sim.log"

    def _argv(self) -> list[str]:
        argv = [sys.executable, "-m", "tests.whatsapp_sim", "--port", str(self.port),
                "--state-dir", str(self.state_dir)]
        for key, value in self.options.items():
            if key in BOOL_FLAGS:
                argv.append(f"--{'' if value else 'no-'}{BOOL_FLAGS[key]}")
            elif value is not None:
                argv += [OPTION_FLAGS[key], str(value)]
        return argv

    def start(self, timeout: float = 15.0) -> "Simulator":
        if self.running:
            return self
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        self._log = open(self.log_file, "ab")
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

    def restart(self) -> "Simulator":
        self.stop()
        return self.start()

    def __enter__(self) -> "Simulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ HTTP
    def _request(self, method: str, path: str, body: dict[str, Any] | None = None,
                 timeout: float = 5.0) -> Any:
        data = json.dumps(body or {}).encode() if method == "POST" else None
        req = urllib.request.Request(self.origin + path, data=data, method=method,
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
        """The phone removes one device (or all). ``reason`` goes into the page's
        ``logout_reason`` URL parameter (default ``unknown_companion``; "" for none)."""
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
        unknown = set(options) - set(OPTION_FLAGS) - set(BOOL_FLAGS)
        if unknown:
            raise TypeError(f"unknown simulator options: {sorted(unknown)}")
        self.options.update(options)
        if self.running:
            return self._request("POST", "/_sim/config", options)["config"]
        return dict(self.options)
