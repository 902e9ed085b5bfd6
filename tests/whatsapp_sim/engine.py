"""The simulator's server side: linked devices, live pages, QR rotation, linking, logouts.

Thread-safe (one lock); the HTTP layer (server.py) only maps requests onto these methods.
Devices, their secrets, counters, faults and the config persist in ``<state_dir>/state.json`` so
a restart of the simulator keeps its linked devices, like the real server. Live pages, QR
rotations, a passkey link in progress, pairing codes and the offline switch live in memory only
(a restart forgets them; pages re-register by themselves).

Device credentials rotate: every successful login issues the next *generation* (``gen``) of the
device key, which the page stores in IndexedDB. Older generations keep authenticating, so an
older copy of a profile still works; ``tear_rotation`` makes the server reject the newest one
(code 0), as when a kill cut into a key rotation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
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
    "boot_seconds": 0.3,          # splash until the module graph is ready (window.Debug, require)
    "loading_seconds": 1.0,       # a linked load: UNLAUNCHED -> OPENING -> PAIRING -> CONNECTED
    "sync_seconds": 1.0,          # first history sync after a link (CONNECTED, hasSynced false); < 0: never
    "resume_sync_seconds": 0.3,   # hasSynced after every later load; < 0: never
    "first_qr_seconds": 60.0,     # life of the first QR payload
    "qr_interval": 20.0,          # life of every later payload
    "qr_count": 6,                # payloads per rotation; then UNPAIRED_IDLE (reload button)
    "passkey": False,             # a phone link needs the Shortcake passkey step in the page
    "passkey_stage_seconds": 120.0,  # timeout of each Shortcake stage
    "passkey_phone_seconds": 0.5,    # "waiting for phone" card -> code-matching card
    "pairing_code_seconds": 180.0,   # life of a pairing code ("Link with phone number instead")
    "rejection_delay_seconds": 0.0,  # > 0: a torn generation first connects, then is logged out (code 0)
    "internals": True,            # window.require serves WAWeb* modules after boot
    "qr_data_ref": True,          # False: the QR lives only in the canvas (no div[data-ref])
    "language": "",               # "" follows navigator.language; "en", "pt" or "de"
    "post_logout_variant": "always",  # "always": post_logout=1 on every logout reload; "never"
    "fresh_redirect": True,       # a never-used profile boots through ?post_logout=1&logout_reason=0
    "chat_rows": 4,               # rows in the chat list
    "account": "15550001234",     # phone number of the "phone" (goes into last-wid-md)
    "poll_ms": 150,               # how often a page asks the server for news
    "wpp_api": True,              # the page serves the WPP (wa-js) API subset the bot bridge uses
}
CONFIG_TYPES: dict[str, type] = {key: type(value) for key, value in DEFAULT_CONFIG.items()}
CONFIG_CHOICES: dict[str, tuple[str, ...]] = {"language": ("", "en", "pt", "de"),
                                              "post_logout_variant": ("always", "never")}
CONFIG_ALIASES = {"expose_internal": "internals"}
PAGE_CONFIG_KEYS = ("boot_seconds", "loading_seconds", "internals", "qr_data_ref", "language",
                    "post_logout_variant", "fresh_redirect", "chat_rows", "poll_ms", "wpp_api")
LIVE_SECONDS = 2.0        # a page that has not polled for this long is gone
REVOKE_REASON = "user_initiated"        # the phone removed the device
UNKNOWN_REASON = "unknown_companion"    # the server does not know these credentials
TORN_REASON = "web_fail_offline_resume"  # code 0: the newest key generation is rejected
SYNC_REASON = "history_sync_timeout"    # code 2: reload during the first history sync
INACTIVE_DAYS = 14
BLOCKS = ("TOS_BLOCK", "SMB_TOS_BLOCK")
PLATFORM = "WEB"
CODE_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTVWXYZ"
MAX_MESSAGES = 2000       # messages kept (and saved) for the phone's view
MAX_TEXT = 65536          # WhatsApp's own limit on a text message
_WID_RE = re.compile(r"^\d{5,20}@(c\.us|g\.us|lid)$")
_INBOUND_CHAT_RE = re.compile(r"^\d{5,20}@(c\.us|g\.us|lid|newsletter)$")   # channels only write to us
COUNTER_NAMES = ("link_attempts", "links", "logins", "takeovers", "takeover_calls", "use_here_clicks",
                 "text_clicks", "testid_clicks", "require_calls_before_boot", "require_calls", "boots",
                 "refresh_qr_calls", "logouts", "rejected_generations", "passkey_links",
                 "pairing_codes", "pairing_code_links", "deprecated_loads", "conflicts", "online_shown", "qr_lists")


class SimError(Exception):
    """A control request that cannot be served (HTTP 409 / 400)."""

    def __init__(self, code: str, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def _b64(n: int) -> str:
    return base64.b64encode(secrets.token_bytes(n)).decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def device_key(secret: str, device_id: str, gen: int) -> str:
    """The key of one generation of a device's credentials (what the page stores)."""
    return hmac.new(secret.encode(), f"{device_id}:{gen}".encode(), hashlib.sha256).hexdigest()


def short_code() -> str:
    """An 8-character code as WhatsApp shows them (pairing code, passkey code matching)."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))


def coerce_config(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        key = CONFIG_ALIASES.get(key, key)
        if value is None:
            continue
        if key not in CONFIG_TYPES:
            raise SimError("bad_config", f"unknown config key {key!r}", 400)
        kind = CONFIG_TYPES[key]
        if kind is bool and isinstance(value, str):
            value = value.lower() in ("1", "true", "yes", "on")
        value = kind(value)
        if key in CONFIG_CHOICES and value not in CONFIG_CHOICES[key]:
            raise SimError("bad_config", f"{key} must be one of {CONFIG_CHOICES[key]}", 400)
        out[key] = value
    return out


@dataclass
class Rotation:
    """One list of QR payloads: same keys, a new ref each time (like the real page).

    ``keys`` are the noise public key, the identity public key and the ADV secret (base64); the
    payload is ``ref,noise,identity,adv,PLATFORM`` as whatsapp-web.js builds it from internals."""

    refs: list[str]
    keys: list[str]
    started: float
    first: float
    interval: float

    @classmethod
    def new(cls, cfg: dict[str, Any]) -> Rotation:
        count = max(1, int(cfg["qr_count"]))
        refs = ["2@" + base64.b64encode(secrets.token_bytes(45)).decode() for _ in range(count)]
        return cls(refs, [_b64(32) for _ in range(3)], time.monotonic(), float(cfg["first_qr_seconds"]),
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
        return f"{self.refs[i]},{','.join(self.keys)},{PLATFORM}", self.refs[i]

    def regenerate_adv(self) -> None:
        """The page regenerated its ADV secret (passkey prologue): shown codes stop linking."""
        self.keys[2] = _b64(32)

    def public(self, now: float) -> dict[str, Any]:
        payload, ref = self.current(now)
        return {"qr": payload, "ref": ref, "idle": payload is None,
                "keys": {"noise": self.keys[0], "identity": self.keys[1], "adv": self.keys[2]},
                "platform": PLATFORM}


@dataclass
class PageRec:
    page_id: str
    mode: str = "loading"          # as the page reports it (README: "page modes")
    state: str = "UNLAUNCHED"      # Socket.state as the page reports it
    device_id: str | None = None
    rotation: Rotation | None = None
    pending_link: dict[str, Any] | None = None
    shortcake: dict[str, Any] | None = None    # passkey link in progress (memory only)
    pairing: dict[str, Any] | None = None      # pairing code shown (memory only)
    conflict: bool = False
    kick: tuple[float, str] | None = None       # (when, reason): the server logs this page out
    session: str | None = None
    login_at: float | None = None
    synced: bool = False
    seen: float = field(default_factory=time.monotonic)
    born: float = field(default_factory=time.monotonic)
    user_agent: str = ""
    url: str = ""
    lang: str = ""
    visible: bool | None = None
    available: bool | None = None
    require_before: int = 0
    require_total: int = 0

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
        self.frozen = False
        self._dirty = False
        data = self._load()
        self.config: dict[str, Any] = {**DEFAULT_CONFIG, **coerce_config(data.get("config", {}))}
        self.config.update(coerce_config(overrides or {}))
        self.devices: dict[str, dict[str, Any]] = data.get("devices", {})
        self.counters: dict[str, int] = {name: 0 for name in COUNTER_NAMES}
        self.counters.update(data.get("counters", {}))
        self.clicks: dict[str, int] = data.get("clicks", {})
        self.faults: dict[str, Any] = {"deprecated_loads": 0, "block": None, "proxyblock": False,
                                       **data.get("faults", {})}
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
                    "clicks": self.clicks, "faults": self.faults, "events": self.events[-300:],
                    "messages": self.messages[-MAX_MESSAGES:]}
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, self.state_file)
            self._dirty = False

    def save_if_dirty(self) -> None:
        if self._dirty:
            self.save()

    def _event(self, kind: str, **details: Any) -> None:
        self.events.append({"at": _now_iso(), "kind": kind, **details})
        self._dirty = True

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n
        self._dirty = True

    # ---------------------------------------------------------------- helpers
    def _page(self, page_id: str, user_agent: str = "") -> PageRec:
        page = self.pages.get(page_id)
        if page is None:
            page = self.pages[page_id] = PageRec(page_id, user_agent=user_agent)
        page.seen = time.monotonic()
        return page

    def _retire(self, page: PageRec) -> None:
        """A page is gone: fold its require counts into the totals."""
        self._count("require_calls_before_boot", page.require_before)
        self._count("require_calls", page.require_total)
        page.require_before = page.require_total = 0
        self.pages.pop(page.page_id, None)

    def _new_rotation(self, page: PageRec) -> Rotation:
        page.rotation = Rotation.new(self.config)
        self._count("qr_lists")
        return page.rotation

    def _touch_device(self, device_id: str | None) -> None:
        dev = self.devices.get(device_id or "")
        if dev is not None:
            dev["last_seen"] = _now_iso()
            self._dirty = True

    def _gc(self, now: float) -> None:
        for page in [p for p in self.pages.values() if now - p.seen > 60]:
            self._retire(page)

    def _report(self, page: PageRec, report: dict[str, Any]) -> None:
        """What a page says about itself on every poll (counts are cumulative per page)."""
        for key, attr in (("rb", "require_before"), ("rc", "require_total")):
            value = report.get(key)
            if isinstance(value, int) and value > getattr(page, attr):
                setattr(page, attr, value)
        for key in ("mode", "state", "url", "lang"):
            if report.get(key):
                setattr(page, key, str(report[key]))
        if isinstance(report.get("visible"), bool):
            page.visible = report["visible"]
        if isinstance(report.get("available"), bool):
            self._presence(page, report["available"])

    def _presence(self, page: PageRec, available: bool) -> None:
        """The phone sees whether this linked device is "online" (it then silences its own
        notifications): every switch to online is recorded on the device and counted."""
        was, page.available = page.available, available
        dev = self.devices.get(page.device_id or "")
        if dev is None or was == available:
            return
        dev["online"] = available
        if available:
            dev["online_shown"] = dev.get("online_shown", 0) + 1
            dev["last_online_at"] = _now_iso()
            self._count("online_shown")
        self._event("presence", device_id=dev["device_id"], available=available)

    def _revoke(self, dev: dict[str, Any], reason: str) -> None:
        if not dev.get("revoked"):
            dev["revoked"] = {"at": _now_iso(), "reason": reason}
            self._event("revoke", device_id=dev["device_id"], reason=reason)
            self._dirty = True

    def _inactive(self, dev: dict[str, Any]) -> bool:
        return time.time() - float(dev.get("phone_active_at") or time.time()) >= INACTIVE_DAYS * 86400

    def _creds(self, dev: dict[str, Any]) -> dict[str, Any]:
        return {"device_id": dev["device_id"], "gen": dev["gen"],
                "key": device_key(dev["secret"], dev["device_id"], dev["gen"]), "wid": dev["wid"]}

    # ---------------------------------------------------------------- page API: boot
    def page_hello(self, page_id: str, user_agent: str = "", report: dict[str, Any] | None = None
                   ) -> dict[str, Any]:
        """A page starts (before boot): which build or network fault it meets."""
        with self._lock:
            page = self._page(page_id, user_agent)
            self._report(page, report or {})
            self._count("boots")
            block = None
            if self.faults.get("proxyblock"):
                block = "PROXYBLOCK"
            elif self.faults.get("deprecated_loads", 0) > 0:
                self.faults["deprecated_loads"] -= 1
                self._count("deprecated_loads")
                block = "DEPRECATED_VERSION"
            self._dirty = True
            return {"block": block}

    def page_qr(self, page_id: str, user_agent: str = "", via: str = "") -> dict[str, Any]:
        """The page shows the QR screen (first time, after refreshQR/reload click, after a restart)."""
        with self._lock:
            page = self._page(page_id, user_agent)
            page.mode, page.device_id, page.conflict, page.pairing = "qr", None, False, None
            page.shortcake = None
            self._new_rotation(page)
            if via == "refresh_qr":
                self._count("refresh_qr_calls")
            return page.rotation.public(time.monotonic())

    def _check(self, device_id: str, gen: Any, key: str, salt: str | None,
               page_id: str) -> tuple[str, str | None]:
        dev = self.devices.get(device_id)
        if dev is None or not isinstance(gen, int) or not 1 <= gen <= dev["gen"] \
                or not hmac.compare_digest(str(key), device_key(dev["secret"], device_id, gen)):
            return "revoked", UNKNOWN_REASON
        if dev.get("revoked"):
            return "revoked", dev["revoked"].get("reason") or ""
        if self._inactive(dev):
            self._revoke(dev, UNKNOWN_REASON)
            return "revoked", UNKNOWN_REASON
        if salt is not None and salt != dev["salt"]:
            return "local", "web_fail_enc_salt"   # keys unreadable here; the device stays linked
        if dev.get("torn") and gen == dev["gen"]:
            if float(self.config["rejection_delay_seconds"]) > 0:
                return "late_reject", dev["torn"]   # connects first, logged out a few seconds later
            self._count("rejected_generations")
            self._event("rejected_generation", device_id=device_id, gen=gen, reason=dev["torn"])
            return "rejected", dev["torn"]
        if not dev.get("history_synced") and dev.get("sync_page") not in (None, page_id):
            self._revoke(dev, SYNC_REASON)
            return "revoked", SYNC_REASON
        if self.faults.get("block"):
            return "blocked", self.faults["block"]
        return "ok", None

    def page_login(self, page_id: str, device_id: str, gen: Any, key: str, salt: str | None,
                   user_agent: str = "") -> dict[str, Any]:
        """Checks a page's stored credentials; a live older page of the device gets the conflict.
        On success the key rotates: the answer carries the next generation to store."""
        with self._lock:
            now = time.monotonic()
            page = self._page(page_id, user_agent)
            status, reason = self._check(device_id, gen, key, salt, page_id)
            if status not in ("ok", "late_reject"):
                self.save()
                return {"status": status, "reason": reason}
            dev = self.devices[device_id]
            if status == "late_reject":   # the field report: answered ~7 s after load
                page.kick = (now + float(self.config["rejection_delay_seconds"]), str(reason))
                page.device_id, page.rotation, page.pending_link = device_id, None, None
                page.session, page.login_at, page.synced, page.mode = secrets.token_hex(12), now, False, "connected"
                return {"status": "ok", "account": dev["account"], "creds": self._creds(dev),
                        "session": page.session, "first_sync": False}
            if dev.get("torn"):
                self._event("torn_healed", device_id=device_id, gen=gen)
                dev["torn"] = None
            dev["gen"] += 1
            page.device_id, page.rotation, page.pending_link = device_id, None, None
            page.shortcake = page.pairing = None
            page.session, page.login_at, page.synced = secrets.token_hex(12), now, False
            page.mode = "connected"
            first_sync = not dev.get("history_synced")
            if first_sync:
                dev["sync_page"] = page_id
            self._count("logins")
            self._touch_device(device_id)
            for other in self.pages.values():
                if other is not page and other.device_id == device_id and other.live(now) \
                        and other.mode in ("connected", "loading", "conflict"):
                    other.conflict = True
                    self._count("conflicts")
            self.save()
            return {"status": "ok", "account": dev["account"], "creds": self._creds(dev),
                    "session": page.session, "first_sync": first_sync}

    def _sync_state(self, page: PageRec, dev: dict[str, Any], now: float) -> bool:
        if page.synced or page.login_at is None:
            return page.synced
        if dev.get("sync_page") == page.page_id and not dev.get("history_synced"):
            seconds = float(self.config["sync_seconds"])
            if 0 <= seconds <= now - page.login_at:
                dev["history_synced"] = True
                dev["sync_page"] = None
                self._event("history_synced", device_id=dev["device_id"])
                self._dirty = True
                page.synced = True
        else:
            seconds = float(self.config["resume_sync_seconds"])
            page.synced = 0 <= seconds <= now - page.login_at
        return page.synced

    def page_poll(self, page_id: str, report: dict[str, Any], ack: int | None = None) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            self._gc(now)
            page = self.pages.get(page_id)
            if page is None:
                return {"known": False, "offline": self.offline}
            page.seen = now
            self._report(page, report)
            out: dict[str, Any] = {"known": True, "offline": self.offline, "conflict": page.conflict}
            if self.frozen and page.mode == "connected":
                return out   # liveness fault: the socket is silent, nothing arrives
            if self.faults.get("proxyblock"):
                out["block"] = "PROXYBLOCK"
            if page.shortcake is not None:
                out["shortcake"] = self._shortcake_tick(page, now)
            if page.pending_link is not None:
                out["link"] = page.pending_link
            elif page.rotation is not None and page.mode in ("qr", "qr_idle", "pairing_code") \
                    and page.shortcake is None:
                out.update(page.rotation.public(now))
            if page.pairing is not None:
                out["pairing_expired"] = now >= page.pairing["expires"]
            if page.kick is not None and now >= page.kick[0]:
                reason = page.kick[1]
                page.kick = None
                if reason == (self.devices.get(page.device_id or "") or {}).get("torn"):
                    self._count("rejected_generations")
                    self._event("rejected_generation", device_id=page.device_id, reason=reason, late=True)
                out["revoked"] = reason
                return out
            if page.device_id:
                dev = self.devices.get(page.device_id)
                if dev is None or dev.get("revoked"):
                    out["revoked"] = (dev or {}).get("revoked", {}).get("reason", UNKNOWN_REASON)
                elif self._inactive(dev):
                    self._revoke(dev, UNKNOWN_REASON)
                    out["revoked"] = UNKNOWN_REASON
                elif self.faults.get("block"):
                    out["block"] = self.faults["block"]
                elif page.mode in ("connected", "conflict"):
                    self._touch_device(page.device_id)
                    out["synced"] = self._sync_state(page, dev, now)
                    inbox = self._inbox(dev, ack) if page.mode == "connected" else []
                    if inbox:
                        out["messages"] = inbox
            return out

    def page_use_here(self, page_id: str, via: str = "click") -> dict[str, Any]:
        """The page takes the session over: ``via`` "takeover" (Socket.takeover()) or "click"."""
        with self._lock:
            now = time.monotonic()
            page = self._page(page_id)
            page.conflict, page.mode = False, "connected"
            dev = self.devices.get(page.device_id or "")
            if dev is None or dev.get("revoked"):
                return {"status": "revoked", "reason": (dev or {}).get("revoked", {}).get("reason", "")}
            dev["takeovers"] = dev.get("takeovers", 0) + 1
            self._count("takeovers")
            self._count("takeover_calls" if via == "takeover" else "use_here_clicks")
            self._event("takeover", device_id=page.device_id, via=via)
            for other in self.pages.values():
                if other is not page and other.device_id == page.device_id and other.live(now):
                    other.conflict = True
                    self._count("conflicts")
            self.save()
            return {"status": "ok"}

    def page_click(self, page_id: str, label: str, testid: bool = False) -> None:
        """A click on a button: text-labelled ones count in ``text_clicks``, test-id ones apart."""
        with self._lock:
            self._page(page_id)
            label = str(label)[:60]
            self.clicks[label] = self.clicks.get(label, 0) + 1
            self._count("testid_clicks" if testid else "text_clicks")

    def page_close_conflict(self, page_id: str) -> None:
        with self._lock:
            page = self._page(page_id)
            page.mode = "conflict_closed"
            self._event("conflict_closed", device_id=page.device_id)

    def page_bye(self, page_id: str, report: dict[str, Any] | None = None) -> None:
        with self._lock:
            page = self.pages.get(page_id) or PageRec(page_id)
            self._report(page, report or {})
            self._retire(page)

    def page_logout(self, page_id: str, device_id: str | None, reason: str, code: str | None,
                    report: dict[str, Any] | None = None) -> None:
        """The page logs itself out (wipes storage, reloads). A local failure does not tell the
        server: a page that cannot read its keys cannot reach it either, so the device stays.
        ``user_initiated`` from a still-linked device is the web client's own logout: it unlinks."""
        with self._lock:
            page = self.pages.get(page_id) or PageRec(page_id)
            self._report(page, report or {})
            self._count("logouts")
            self._event("page_logout", device_id=device_id, reason=reason, code=code)
            dev = self.devices.get(device_id or "")
            if reason == REVOKE_REASON and dev is not None and not dev.get("revoked"):
                self._revoke(dev, reason)   # Socket.logout() from the web client unlinks the device
            self._retire(page)
            self.save()

    # ---------------------------------------------------------------- linking
    def _displayed(self, now: float) -> list[tuple[PageRec, str]]:
        shown = []
        for page in self.pages.values():
            # qr or qr_idle: the rotation decides (a poll sent just before a reload click
            # may still report qr_idle after the new codes started).
            if page.live(now) and page.rotation is not None and page.mode in ("qr", "qr_idle") \
                    and page.pending_link is None and page.shortcake is None:
                payload, _ = page.rotation.current(now)
                if payload:
                    shown.append((page, payload))
        shown.sort(key=lambda item: item[0].seen, reverse=True)
        return shown

    def _start_link(self, page: PageRec, number: str, via: str) -> dict[str, Any]:
        """The phone accepted the page (QR scanned or code entered)."""
        if self.faults.get("block"):
            raise SimError("banned", "this account is banned")
        if self.config["passkey"]:
            now = time.monotonic()
            if page.rotation is not None:
                page.rotation.regenerate_adv()
            page.shortcake = {"stage": "prompt", "deadline": now + float(self.config["passkey_stage_seconds"]),
                              "challenge": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("="),
                              "account": number, "via": via, "code": None, "error": None, "phone_at": None}
            page.pairing = None
            page.mode = "passkey"
            self._event("passkey_prologue", page_id=page.page_id)
            self.save()
            return {"device_id": None, "passkey": True}
        dev = self._complete_link(page, number, via)
        return {"device_id": dev["device_id"], "passkey": False}

    def _complete_link(self, page: PageRec, number: str, via: str) -> dict[str, Any]:
        device_id = "dev-" + secrets.token_hex(6)
        seq = 1 + sum(1 for d in self.devices.values() if d["account"] == number)
        dev = self.devices[device_id] = {
            "device_id": device_id, "secret": secrets.token_hex(16), "salt": _b64(32),
            "account": number, "wid": f"{number}:{seq}@c.us", "gen": 1, "torn": None,
            "status": "active", "linked_at": _now_iso(), "last_seen": None, "takeovers": 0,
            "revoked": None, "history_synced": False, "sync_page": page.page_id, "via": via,
            "phone_active_at": time.time(), "lid": str(secrets.randbelow(9 * 10**14) + 10**14),
            "msg_acked": self._last_seq(),  # a new device gets no history as new messages
        }
        page.pending_link = {**self._creds(dev), "salt": dev["salt"], "lid": f"{dev['lid']}@lid"}
        page.rotation = page.shortcake = page.pairing = None
        page.mode = "linking"
        self._count("links")
        self._event("link", device_id=device_id, via=via)
        self.save()
        return dev

    def phone_link(self, qr: str | None = None, account: str | None = None) -> dict[str, Any]:
        """The phone scans a QR: ``qr`` if given, else the one a live page shows right now."""
        with self._lock:
            now = time.monotonic()
            self._count("link_attempts")
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
            result = self._start_link(page, account or self.config["account"], "qr")
            return {**result, "page_id": page.page_id}

    # ---------------------------------------------------------------- passkey (Shortcake)
    def _shortcake_tick(self, page: PageRec, now: float) -> dict[str, Any]:
        sc = page.shortcake
        assert sc is not None
        if now >= sc["deadline"]:
            self._event("passkey_timeout", page_id=page.page_id, stage=sc["stage"])
            page.shortcake = None
            self._new_rotation(page)
            page.mode = "qr"
            return {"stage": "expired"}
        if sc["stage"] == "waiting_for_phone" and sc["phone_at"] is not None and now >= sc["phone_at"]:
            sc["stage"], sc["code"] = "code_matching", short_code()
            sc["deadline"] = now + float(self.config["passkey_stage_seconds"])
        out = {"stage": sc["stage"], "challenge": sc["challenge"], "timeout": 600000,
               "userVerification": "required", "error": sc["error"],
               "seconds_left": round(sc["deadline"] - now, 2)}
        if sc["code"]:
            out["code"] = f"{sc['code'][:4]}-{sc['code'][4:]}"
        return out

    def page_shortcake(self, page_id: str, action: str, data: dict[str, Any], origin: str) -> dict[str, Any]:
        """The page's side of the passkey step: ``assertion``, ``error``, ``confirm`` or ``cancel``."""
        with self._lock:
            now = time.monotonic()
            page = self._page(page_id)
            sc = page.shortcake
            if sc is None:
                return {"status": "gone"}
            if action == "cancel":
                page.shortcake, page.rotation, page.mode = None, None, "qr"   # the page asks for a new QR
                self._event("passkey_cancel", page_id=page_id)
                return {"status": "cancelled"}
            if action == "error":
                sc["stage"], sc["error"] = "prompt", str(data.get("name") or "error")[:80]
                sc["deadline"] = now + float(self.config["passkey_stage_seconds"])
                return {"status": "prompt"}
            if action == "assertion" and sc["stage"] == "prompt":
                problem = self._verify_assertion(sc["challenge"], data, origin)
                if problem:
                    sc["error"] = problem
                    sc["deadline"] = now + float(self.config["passkey_stage_seconds"])
                    self._event("passkey_refused", page_id=page_id, problem=problem)
                    return {"status": "refused", "error": problem}
                sc["stage"], sc["error"] = "waiting_for_phone", None
                sc["phone_at"] = now + float(self.config["passkey_phone_seconds"])
                sc["deadline"] = now + float(self.config["passkey_stage_seconds"])
                return {"status": "waiting_for_phone"}
            if action == "confirm" and sc["stage"] == "code_matching":
                return self._passkey_done(page, "page")
            return {"status": "ignored", "stage": sc["stage"]}

    def _passkey_done(self, page: PageRec, by: str) -> dict[str, Any]:
        sc = page.shortcake
        assert sc is not None
        self._count("passkey_links")
        dev = self._complete_link(page, sc["account"], sc["via"] + "+passkey")
        self._event("passkey", device_id=dev["device_id"], confirmed_by=by)
        return {"status": "linked", "device_id": dev["device_id"]}

    @staticmethod
    def _verify_assertion(challenge: str, data: dict[str, Any], origin: str) -> str | None:
        """Checks a WebAuthn assertion's client data and authenticator data (not the signature:
        the stdlib has no P-256). Returns what is wrong, or None."""
        try:
            client = json.loads(_b64url_decode(str(data["clientDataJSON"])))
            auth = _b64url_decode(str(data["authenticatorData"]))
        except (KeyError, ValueError):
            return "malformed_assertion"
        if client.get("type") != "webauthn.get" or client.get("challenge") != challenge:
            return "wrong_challenge"
        if origin and client.get("origin") != origin:
            return "wrong_origin"
        host = (client.get("origin") or "").split("//")[-1].split(":")[0]
        if len(auth) < 37 or auth[:32] != hashlib.sha256(host.encode()).digest():
            return "wrong_rp_id"
        if not auth[32] & 0x01 or not auth[32] & 0x04:
            return "user_not_verified"
        return None

    def phone_confirm_code(self, code: str | None = None) -> dict[str, Any]:
        """The phone confirms the code the page shows in the code-matching card."""
        with self._lock:
            now = time.monotonic()
            want = (code or "").replace("-", "").upper()
            for page in self.pages.values():
                sc = page.shortcake
                if sc and page.live(now) and sc["stage"] == "code_matching" and (not want or sc["code"] == want):
                    return self._passkey_done(page, "phone")
            raise SimError("no_code", "no page shows that code for matching")

    # ---------------------------------------------------------------- pairing code
    def page_pairing_code(self, page_id: str, phone: str) -> dict[str, Any]:
        """"Link with phone number instead": the page asks for a code for ``phone``."""
        with self._lock:
            page = self._page(page_id)
            digits = re.sub(r"[\s\-().+]", "", str(phone or ""))
            if not digits.isdigit() or not 7 <= len(digits) <= 15:
                return {"status": "invalid_phone", "message": "invalid phone number"}
            if digits != self.config["account"]:
                self._event("pairing_refused", phone_tail=digits[-2:])
                return {"status": "wrong_number", "message": "this number cannot link this device"}
            if self.faults.get("block"):
                return {"status": "banned", "message": "this account is banned"}
            code = short_code()
            page.pairing = {"phone": digits, "code": code,
                            "expires": time.monotonic() + float(self.config["pairing_code_seconds"])}
            page.mode = "pairing_code"
            if page.rotation is None:
                page.rotation = Rotation.new(self.config)
            self._count("pairing_codes")
            return {"status": "ok", "code": code}

    def phone_enter_code(self, code: str) -> dict[str, Any]:
        """The phone types the pairing code a page shows."""
        with self._lock:
            now = time.monotonic()
            want = str(code or "").replace("-", "").upper()
            for page in self.pages.values():
                if page.pairing and page.live(now) and page.pairing["code"] == want:
                    if now >= page.pairing["expires"]:
                        raise SimError("code_expired", "that pairing code has expired")
                    self._count("pairing_code_links")
                    result = self._start_link(page, page.pairing["phone"], "pairing_code")
                    return {**result, "page_id": page.page_id}
            raise SimError("bad_code", "no page shows that pairing code")

    # ---------------------------------------------------------------- phone and server faults
    def phone_revoke(self, device_id: str | None = None, reason: str | None = None) -> list[str]:
        with self._lock:
            reason = REVOKE_REASON if reason is None else reason
            ids = [device_id] if device_id else [k for k, d in self.devices.items() if not d.get("revoked")]
            done = []
            for key in ids:
                dev = self.devices.get(key)
                if dev is None:
                    raise SimError("unknown_device", f"no device {key}", 404)
                if not dev.get("revoked"):
                    self._revoke(dev, reason)
                    done.append(key)
            self.save()
            return done

    def _pick(self, device_id: str | None) -> list[dict[str, Any]]:
        if device_id:
            if device_id not in self.devices:
                raise SimError("unknown_device", f"no device {device_id}", 404)
            return [self.devices[device_id]]
        return [d for d in self.devices.values() if not d.get("revoked")]

    def tear_rotation(self, device_id: str | None = None, reason: str | None = None) -> list[dict[str, Any]]:
        """The newest key generation of a device (or all) is rejected from now on with a code-0
        reason; any older generation still authenticates (and heals the device)."""
        with self._lock:
            out = []
            for dev in self._pick(device_id):
                dev["torn"] = reason or TORN_REASON
                out.append({"device_id": dev["device_id"], "rejected_gen": dev["gen"]})
                self._event("tear_rotation", device_id=dev["device_id"], gen=dev["gen"])
            self.save()
            return out

    def logout_pages(self, device_id: str | None = None, reason: str = "") -> int:
        """The server logs the live pages of a device (or all) out with ``reason`` (default none)
        while the device stays linked: the phone still lists it, so a restore reconnects."""
        with self._lock:
            now = time.monotonic()
            hit = 0
            for page in self.pages.values():
                if page.live(now) and page.device_id and (device_id is None or page.device_id == device_id):
                    page.kick = (now, reason)
                    hit += 1
            self._event("logout_pages", device_id=device_id, reason=reason, pages=hit)
            return hit

    def age_phone(self, days: float = INACTIVE_DAYS, device_id: str | None = None) -> list[str]:
        """The phone was not used for ``days``: at 14 the server removes the device on its next contact."""
        with self._lock:
            out = []
            for dev in self._pick(device_id):
                dev["phone_active_at"] = time.time() - float(days) * 86400
                out.append(dev["device_id"])
            self.save()
            return out

    def set_faults(self, values: dict[str, Any]) -> dict[str, Any]:
        """``deprecated_loads`` (int), ``block`` (None/TOS_BLOCK/SMB_TOS_BLOCK), ``proxyblock`` (bool)."""
        with self._lock:
            for key, value in values.items():
                if key == "deprecated_loads":
                    self.faults[key] = max(0, int(value))
                elif key == "block":
                    if value not in (None, "", *BLOCKS):
                        raise SimError("bad_fault", f"block must be one of {BLOCKS} or null", 400)
                    self.faults[key] = value or None
                elif key == "proxyblock":
                    self.faults[key] = bool(value)
                elif key == "frozen":
                    self.frozen = bool(value)
                else:
                    raise SimError("bad_fault", f"unknown fault {key!r}", 400)
            self.save()
            return {**self.faults, "frozen": self.frozen}

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
                self._count("conflicts", hit)
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

    def page_config(self) -> dict[str, Any]:
        with self._lock:
            return {k: self.config[k] for k in PAGE_CONFIG_KEYS}

    # ---------------------------------------------------------------- views
    def counters_view(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = dict(self.counters)
            out["require_calls_before_boot"] += sum(p.require_before for p in self.pages.values())
            out["require_calls"] += sum(p.require_total for p in self.pages.values())
            out["clicks"] = dict(self.clicks)
            return out

    def reset_counters(self) -> None:
        with self._lock:
            self.counters = {name: 0 for name in COUNTER_NAMES}
            self.clicks = {}
            for page in self.pages.values():
                page.require_before = page.require_total = 0
            self.save()

    def devices_view(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            live: dict[str, int] = {}
            for page in self.pages.values():
                if page.device_id and page.live(now) and page.mode in ("connected", "conflict",
                                                                       "conflict_closed"):
                    live[page.device_id] = live.get(page.device_id, 0) + 1

            def public(dev: dict[str, Any]) -> dict[str, Any]:
                out = {k: v for k, v in dev.items() if k not in ("secret", "salt", "sync_page")}
                out["live_pages"] = live.get(dev["device_id"], 0)
                return out

            return {
                "devices": [public(d) for d in self.devices.values() if not d.get("revoked")],
                "revoked": [public(d) for d in self.devices.values() if d.get("revoked")],
                **{name: self.counters.get(name, 0) for name in ("link_attempts", "links", "logins", "takeovers")},
                "events": self.events[-50:],
            }

    def pages_view(self) -> list[dict[str, Any]]:
        with self._lock:
            now = time.monotonic()
            out = []
            for page in sorted(self.pages.values(), key=lambda p: p.born):
                qr = (page.rotation.current(now)[0]
                      if page.rotation and page.mode in ("qr", "qr_idle") and page.shortcake is None else None)
                sc = page.shortcake
                out.append({"page_id": page.page_id, "mode": page.mode, "state": page.state,
                            "device_id": page.device_id, "conflict": page.conflict, "live": page.live(now),
                            "qr": qr, "age": round(now - page.born, 2), "synced": page.synced,
                            "passkey_stage": sc["stage"] if sc else None,
                            "passkey_code": (f"{sc['code'][:4]}-{sc['code'][4:]}" if sc and sc["code"] else None),
                            "pairing_code": page.pairing["code"] if page.pairing else None,
                            "url": page.url, "lang": page.lang, "visible": page.visible,
                            "available": page.available, "user_agent": page.user_agent})
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
            if not _INBOUND_CHAT_RE.match(chat):
                raise SimError("bad_chat", "chat_id must look like 123@c.us, 123@g.us, 123@lid or 123@newsletter", 400)
            message = self._record(direction="in", id="3EB0" + secrets.token_hex(8).upper(),
                                   account=account or self.config["account"], chat_id=chat,
                                   sender=f"{sender}@c.us", name=name or None, text=text)
            return {"id": message["id"], "seq": message["seq"], "chat_id": chat}

    def page_send(self, page_id: str, device_id: str, secret: str, to: str, text: str) -> dict[str, Any]:
        """A linked web client sends ``text`` to chat ``to``; the phone side records it.
        ``secret`` is the page's session token from its login."""
        with self._lock:
            page = self._page(page_id)
            dev = self.devices.get(device_id)
            if dev is None or dev.get("revoked") or page.device_id != device_id \
                    or not page.session or not hmac.compare_digest(str(secret), page.session):
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
