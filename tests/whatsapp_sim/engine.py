"""The simulator's server side: linked devices, live pages, QR rotation, conflicts.

Thread-safe (one lock); the HTTP layer (server.py) only maps requests onto these methods.
Devices, their secrets and the config persist in ``<state_dir>/state.json`` so a restart of
the simulator keeps its linked devices, like the real server. Live pages, QR rotations and the
offline switch live in memory only (a restart forgets them; pages re-register by themselves).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_CONFIG: dict[str, Any] = {
    "loading_seconds": 1.0,     # length of the "Loading your chats" screen on every page load
    "first_qr_seconds": 60.0,   # life of the first QR payload
    "qr_interval": 20.0,        # life of every later payload
    "qr_count": 6,              # payloads per rotation; then the page goes idle (reload button)
    "passkey": False,           # a phone link must be finished in a visible window
    "expose_internal": False,   # the page exposes window.require('WAWebSocketModel') & co.
    "account": "15550001234",   # phone number of the "phone" (goes into last-wid-md)
    "poll_ms": 150,             # how often a page asks the server for news
    "wpp_api": True,            # the page serves the WPP (wa-js) API subset the bot bridge uses
}
CONFIG_TYPES: dict[str, type] = {"loading_seconds": float, "first_qr_seconds": float,
                                 "qr_interval": float, "qr_count": int, "passkey": bool,
                                 "expose_internal": bool, "account": str, "poll_ms": int,
                                 "wpp_api": bool}
LIVE_SECONDS = 2.0        # a page that has not polled for this long is gone
DEFAULT_REVOKE_REASON = "unknown_companion"
PLATFORM = "WEB"
MAX_MESSAGES = 2000       # messages kept (and saved) for the phone's view
MAX_TEXT = 65536          # WhatsApp's own limit on a text message
_WID_RE = re.compile(r"^\d{5,20}@(c\.us|g\.us|lid)$")


class SimError(Exception):
    """A control request that cannot be served (HTTP 409 / 400)."""

    def __init__(self, code: str, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def _b64(n: int) -> str:
    return base64.b64encode(secrets.token_bytes(n)).decode()


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def coerce_config(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if key not in CONFIG_TYPES:
            raise SimError("bad_config", f"unknown config key {key!r}", 400)
        kind = CONFIG_TYPES[key]
        if kind is bool and isinstance(value, str):
            value = value.lower() in ("1", "true", "yes", "on")
        out[key] = kind(value)
    return out


@dataclass
class Rotation:
    """One list of QR payloads: same keys, a new ref each time (like the real page)."""

    refs: list[str]
    keys: str
    started: float
    first: float
    interval: float

    @classmethod
    def new(cls, cfg: dict[str, Any]) -> "Rotation":
        count = max(1, int(cfg["qr_count"]))
        refs = ["2@" + base64.b64encode(secrets.token_bytes(45)).decode() for _ in range(count)]
        keys = ",".join(_b64(32) for _ in range(3))
        return cls(refs, keys, time.monotonic(), float(cfg["first_qr_seconds"]),
                   float(cfg["qr_interval"]))

    def index(self, now: float) -> int:
        elapsed = now - self.started
        if elapsed < self.first:
            return 0
        return 1 + int((elapsed - self.first) // max(self.interval, 0.01))

    def current(self, now: float) -> tuple[str | None, str | None]:
        """(full payload, ref) now, or (None, None) once the list ran out (idle)."""
        i = self.index(now)
        if i >= len(self.refs):
            return None, None
        return f"{self.refs[i]},{self.keys},{PLATFORM}", self.refs[i]

    def contains(self, payload: str, now: float) -> bool:
        current, _ = self.current(now)
        return current is not None and current == payload


@dataclass
class PageRec:
    page_id: str
    mode: str = "loading"          # as the page reports it: loading|qr|qr_idle|pairing|connected|conflict...
    device_id: str | None = None
    rotation: Rotation | None = None
    pending_link: dict[str, Any] | None = None
    conflict: bool = False
    seen: float = field(default_factory=time.monotonic)
    born: float = field(default_factory=time.monotonic)
    user_agent: str = ""

    def live(self, now: float) -> bool:
        return now - self.seen < LIVE_SECONDS


class Engine:
    def __init__(self, state_dir: Path, overrides: dict[str, Any] | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_file = self.state_dir / "state.json"
        self._lock = threading.RLock()
        self.pages: dict[str, PageRec] = {}
        self.offline = False
        self._dirty = False
        data = self._load()
        self.config: dict[str, Any] = {**DEFAULT_CONFIG, **coerce_config(data.get("config", {}))}
        self.config.update(coerce_config(overrides or {}))
        self.devices: dict[str, dict[str, Any]] = data.get("devices", {})
        self.counters: dict[str, int] = {"link_attempts": 0, "links": 0, "logins": 0,
                                         **data.get("counters", {})}
        self.events: list[dict[str, Any]] = data.get("events", [])
        self.messages: list[dict[str, Any]] = data.get("messages", [])
        self.save()

    # ---------------------------------------------------------------- persistence
    def _load(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}

    def save(self) -> None:
        with self._lock:
            data = {"config": self.config, "devices": self.devices, "counters": self.counters,
                    "events": self.events[-300:], "messages": self.messages[-MAX_MESSAGES:]}
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, self.state_file)
            self._dirty = False

    def save_if_dirty(self) -> None:
        if self._dirty:
            self.save()

    def _event(self, kind: str, **details: Any) -> None:
        self.events.append({"at": _now_iso(), "kind": kind, **details})

    # ---------------------------------------------------------------- helpers
    def _page(self, page_id: str, user_agent: str = "") -> PageRec:
        page = self.pages.get(page_id)
        if page is None:
            page = self.pages[page_id] = PageRec(page_id, user_agent=user_agent)
        page.seen = time.monotonic()
        return page

    def _touch_device(self, device_id: str | None) -> None:
        dev = self.devices.get(device_id or "")
        if dev is not None:
            dev["last_seen"] = _now_iso()
            self._dirty = True

    def _gc(self, now: float) -> None:
        for pid in [p.page_id for p in self.pages.values() if now - p.seen > 60]:
            del self.pages[pid]

    def _check(self, device_id: str, secret: str, salt: str | None) -> tuple[str, str | None]:
        dev = self.devices.get(device_id)
        if dev is None or dev["secret"] != secret:
            return "revoked", DEFAULT_REVOKE_REASON
        if dev.get("revoked"):
            return "revoked", dev["revoked"].get("reason") or ""
        if salt is not None and salt != dev["salt"]:
            return "broken", "missing_enc_salt"  # keys unreadable here; the device stays linked
        if dev["status"] == "pending":
            return "pending", None
        return "ok", None

    # ---------------------------------------------------------------- page API
    def page_qr(self, page_id: str, user_agent: str = "") -> dict[str, Any]:
        """The page shows the QR screen (first time, after a reload click, or after a restart)."""
        with self._lock:
            page = self._page(page_id, user_agent)
            page.mode, page.device_id, page.conflict = "qr", None, False
            page.rotation = Rotation.new(self.config)
            payload, ref = page.rotation.current(time.monotonic())
            return {"qr": payload, "ref": ref, "idle": payload is None}

    def page_login(self, page_id: str, device_id: str, secret: str, salt: str | None,
                   user_agent: str = "") -> dict[str, Any]:
        """Checks a page's stored credentials; a live older page of the device gets the conflict."""
        with self._lock:
            now = time.monotonic()
            page = self._page(page_id, user_agent)
            status, reason = self._check(device_id, secret, salt)
            if status in ("revoked", "broken"):
                return {"status": status, "reason": reason}
            page.device_id, page.rotation, page.pending_link = device_id, None, None
            if status == "pending":
                page.mode = "pairing"
                return {"status": "pending"}
            page.mode = "connected"
            self.counters["logins"] += 1
            self._touch_device(device_id)
            for other in self.pages.values():
                if (other is not page and other.device_id == device_id and other.live(now)
                        and other.mode in ("connected", "loading", "conflict")):
                    other.conflict = True
            return {"status": "ok", "account": self.devices[device_id]["account"]}

    def page_poll(self, page_id: str, mode: str, ack: int | None = None) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            self._gc(now)
            page = self.pages.get(page_id)
            if page is None:
                return {"known": False, "offline": self.offline}
            page.seen = now
            if mode:
                page.mode = mode
            out: dict[str, Any] = {"known": True, "offline": self.offline, "conflict": page.conflict}
            if page.pending_link is not None:
                out["link"] = page.pending_link
            elif page.rotation is not None and page.mode in ("qr", "qr_idle"):
                payload, ref = page.rotation.current(now)
                out.update(qr=payload, ref=ref, idle=payload is None)
            if page.device_id:
                dev = self.devices.get(page.device_id)
                if dev is None or dev.get("revoked"):
                    out["revoked"] = (dev or {}).get("revoked", {}).get("reason", DEFAULT_REVOKE_REASON)
                elif page.mode == "connected":
                    self._touch_device(page.device_id)
                    inbox = self._inbox(dev, ack)
                    if inbox:
                        out["messages"] = inbox
            return out

    def page_passkey(self, page_id: str, device_id: str, secret: str) -> dict[str, Any]:
        """A visible window passed the passkey step: the pending device becomes active."""
        with self._lock:
            self._page(page_id)
            dev = self.devices.get(device_id)
            if dev is None or dev["secret"] != secret or dev.get("revoked"):
                return {"status": "revoked", "reason": DEFAULT_REVOKE_REASON}
            if dev["status"] == "pending":
                dev["status"] = "active"
                dev["passkey_at"] = _now_iso()
                self._event("passkey", device_id=device_id)
                self.save()
            return {"status": "ok"}

    def page_use_here(self, page_id: str) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            page = self._page(page_id)
            page.conflict, page.mode = False, "connected"
            dev = self.devices.get(page.device_id or "")
            if dev is None or dev.get("revoked"):
                return {"status": "revoked"}
            dev["takeovers"] = dev.get("takeovers", 0) + 1
            self.counters["takeovers"] = self.counters.get("takeovers", 0) + 1
            self._event("takeover", device_id=page.device_id)
            for other in self.pages.values():
                if other is not page and other.device_id == page.device_id and other.live(now):
                    other.conflict = True
            self.save()
            return {"status": "ok"}

    def page_close_conflict(self, page_id: str) -> None:
        with self._lock:
            page = self._page(page_id)
            page.mode = "conflict_closed"
            self._event("conflict_closed", device_id=page.device_id)

    def page_bye(self, page_id: str) -> None:
        with self._lock:
            self.pages.pop(page_id, None)

    def page_client_logout(self, page_id: str, device_id: str | None, reason: str) -> None:
        """The page logged itself out (broken local storage). The server is NOT told: a page
        that cannot decrypt its keys cannot reach the server either, so the device stays linked."""
        with self._lock:
            self.pages.pop(page_id, None)
            self._event("client_logout", device_id=device_id, reason=reason)
            self.save()

    # ---------------------------------------------------------------- control API
    def _displayed(self, now: float) -> list[tuple[PageRec, str]]:
        shown = []
        for page in self.pages.values():
            # qr or qr_idle: the rotation decides (a poll sent just before a reload click
            # may still report qr_idle after the new codes started).
            if page.live(now) and page.rotation is not None and page.mode in ("qr", "qr_idle") \
                    and page.pending_link is None:
                payload, _ = page.rotation.current(now)
                if payload:
                    shown.append((page, payload))
        shown.sort(key=lambda item: item[0].seen, reverse=True)
        return shown

    def phone_link(self, qr: str | None = None, account: str | None = None) -> dict[str, Any]:
        """The phone scans a QR: ``qr`` if given, else the one a live page shows right now."""
        with self._lock:
            now = time.monotonic()
            self.counters["link_attempts"] += 1
            shown = self._displayed(now)
            if qr is not None:
                shown = [(p, q) for p, q in shown if q == qr]
                if not shown:
                    self.save()
                    raise SimError("qr_not_displayed", "that QR code is not (or no longer) displayed")
            if not shown:
                self.save()
                raise SimError("no_qr", "no page shows a QR code right now")
            page, _ = shown[0]
            number = account or self.config["account"]
            device_id = "dev-" + secrets.token_hex(6)
            seq = 1 + sum(1 for d in self.devices.values() if d["account"] == number)
            passkey = bool(self.config["passkey"])
            self.devices[device_id] = {
                "device_id": device_id, "secret": secrets.token_hex(16), "salt": _b64(32),
                "account": number, "wid": f"{number}:{seq}@c.us",
                "status": "pending" if passkey else "active", "linked_at": _now_iso(),
                "last_seen": None, "takeovers": 0, "revoked": None,
                "msg_acked": self._last_seq(),  # a new device gets no history as new messages
            }
            dev = self.devices[device_id]
            page.pending_link = {"device_id": device_id, "secret": dev["secret"], "salt": dev["salt"],
                                 "wid": dev["wid"], "passkey": passkey}
            page.rotation = None
            page.mode = "pairing"
            self.counters["links"] += 1
            self._event("link", device_id=device_id, passkey=passkey)
            self.save()
            return {"device_id": device_id, "passkey": passkey}

    def phone_revoke(self, device_id: str | None = None, reason: str | None = None) -> list[str]:
        with self._lock:
            reason = DEFAULT_REVOKE_REASON if reason is None else reason
            ids = [device_id] if device_id else [k for k, d in self.devices.items() if not d.get("revoked")]
            done = []
            for key in ids:
                dev = self.devices.get(key)
                if dev is None:
                    raise SimError("unknown_device", f"no device {key}", 404)
                if not dev.get("revoked"):
                    dev["revoked"] = {"at": _now_iso(), "reason": reason}
                    done.append(key)
                    self._event("revoke", device_id=key, reason=reason)
            self.save()
            return done

    def conflict(self, device_id: str | None = None) -> int:
        """Another client of the device takes over: its live connected pages show the modal."""
        with self._lock:
            now = time.monotonic()
            hit = 0
            for page in self.pages.values():
                if page.live(now) and page.device_id and page.mode == "connected" \
                        and (device_id is None or page.device_id == device_id):
                    page.conflict = True
                    hit += 1
            if hit:
                self._event("conflict", device_id=device_id, pages=hit)
            return hit

    def set_offline(self, offline: bool) -> None:
        with self._lock:
            self.offline = offline

    def configure(self, values: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.config.update(coerce_config(values))
            self.save()
            return dict(self.config)

    def devices_view(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            live: dict[str, int] = {}
            for page in self.pages.values():
                if page.device_id and page.live(now) and page.mode in ("connected", "conflict",
                                                                       "conflict_closed"):
                    live[page.device_id] = live.get(page.device_id, 0) + 1

            def public(dev: dict[str, Any]) -> dict[str, Any]:
                out = {k: v for k, v in dev.items() if k not in ("secret", "salt")}
                out["live_pages"] = live.get(dev["device_id"], 0)
                return out

            return {
                "devices": [public(d) for d in self.devices.values() if not d.get("revoked")],
                "revoked": [public(d) for d in self.devices.values() if d.get("revoked")],
                "link_attempts": self.counters["link_attempts"],
                "links": self.counters["links"],
                "logins": self.counters["logins"],
                "takeovers": self.counters.get("takeovers", 0),
                "events": self.events[-50:],
            }

    def pages_view(self) -> list[dict[str, Any]]:
        with self._lock:
            now = time.monotonic()
            out = []
            for page in sorted(self.pages.values(), key=lambda p: p.born):
                qr = (page.rotation.current(now)[0]
                      if page.rotation and page.mode in ("qr", "qr_idle") else None)
                out.append({"page_id": page.page_id, "mode": page.mode, "device_id": page.device_id,
                            "conflict": page.conflict, "live": page.live(now), "qr": qr,
                            "age": round(now - page.born, 2)})
            return out

    # ---------------------------------------------------------------- chats & messages
    # One account's messages, as its linked devices see them. The "phone" here is the other
    # party: ``phone_message`` is a customer writing to the account (delivered to every active
    # device of the account on its next poll, once: the device acks what it got, as WhatsApp's
    # server keeps a message until each device has it), ``page_send`` records what a linked
    # web client sent. Messages that arrive while no page runs wait for the device.

    def _last_seq(self) -> int:
        return self.messages[-1]["seq"] if self.messages else 0

    def _inbox(self, dev: dict[str, Any], ack: int | None) -> list[dict[str, Any]]:
        if ack is not None and ack > dev.get("msg_acked", 0):
            dev["msg_acked"] = min(ack, self._last_seq())
            self._dirty = True
        since = dev.get("msg_acked", 0)
        return [m for m in self.messages
                if m["seq"] > since and m["direction"] == "in" and m["account"] == dev["account"]][:50]

    def _record(self, **message: Any) -> dict[str, Any]:
        message["seq"] = self._last_seq() + 1
        message["t"] = int(time.time())
        self.messages.append(message)
        del self.messages[:-MAX_MESSAGES]
        self._dirty = True
        return message

    def phone_message(self, sender: str, text: str, name: str | None = None,
                      account: str | None = None, chat_id: str | None = None) -> dict[str, Any]:
        """Someone (``sender``, a phone number) writes ``text`` to the account."""
        with self._lock:
            sender = str(sender or "").lstrip("+")
            if not sender.isdigit() or not 5 <= len(sender) <= 20:
                raise SimError("bad_sender", "from must be a phone number (5-20 digits)", 400)
            if not isinstance(text, str) or not text or len(text) > MAX_TEXT:
                raise SimError("bad_text", f"text must be a non-empty string of at most {MAX_TEXT} characters", 400)
            chat = chat_id or f"{sender}@c.us"
            if not _WID_RE.match(chat):
                raise SimError("bad_chat", "chat_id must look like 123@c.us or 123@g.us", 400)
            message = self._record(direction="in", id="3EB0" + secrets.token_hex(8).upper(),
                                   account=account or self.config["account"], chat_id=chat,
                                   sender=f"{sender}@c.us", name=name or None, text=text)
            return {"id": message["id"], "seq": message["seq"], "chat_id": chat}

    def page_send(self, page_id: str, device_id: str, secret: str, to: str, text: str) -> dict[str, Any]:
        """A linked web client sends ``text`` to chat ``to``; the phone side records it."""
        with self._lock:
            page = self._page(page_id)
            dev = self.devices.get(device_id)
            if dev is None or dev["secret"] != secret or dev.get("revoked") or dev["status"] != "active":
                return {"status": "revoked", "message": "this device is not linked"}
            if self.offline:
                return {"status": "offline", "message": "the computer is not connected"}
            if page.mode != "connected":
                return {"status": "not_connected", "message": f"the page is {page.mode}"}
            if not isinstance(to, str) or not _WID_RE.match(to):
                return {"status": "invalid_wid", "message": "wid error: invalid wid"}
            if not isinstance(text, str) or not text or len(text) > MAX_TEXT:
                return {"status": "invalid_text", "message": "text must be a non-empty string"}
            message = self._record(direction="out", id="3EB0" + secrets.token_hex(10).upper(),
                                   account=dev["account"], chat_id=to, device_id=device_id, text=text)
            self._touch_device(device_id)
            return {"status": "ok", "id": message["id"], "t": message["t"], "ack": 1,
                    "from": dev["wid"]}

    def messages_view(self, direction: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in self.messages
                    if m["seq"] > since and (direction is None or m["direction"] == direction)]
