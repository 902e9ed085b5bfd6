"""The message bridge: read incoming WhatsApp messages and send text through WhatsApp Web.

How it works. Two scripts go into every document of the browser context:

* ``@wppconnect/wa-js`` (pinned in ``browser/wajs/package.json``, fetched with ``npm ci`` at
  set-up/build time, never committed). On the real site it reaches WhatsApp Web's internal
  modules and builds ``window.WPP`` (``WPP.chat.sendTextMessage``, the ``chat.new_message``
  event, ``WPP.conn.isMainReady()``). It is loaded as an init script (CSP does not apply),
  before WhatsApp's own code, as the library expects; a page that was already open when the
  bridge attached gets it through the DevTools protocol.
* ``browser/js/bridge.js``: Linda's small adapter, ``window.__linda``. It waits for ``WPP.isReady``,
  listens to ``chat.new_message`` and pushes each incoming message (never our own) to Python
  through the ``__lindaEmit`` binding; ``__linda.send(to, text)`` sends through
  ``WPP.chat.sendTextMessage``. ``__linda.status()`` says whether sending can work; when wa-js
  is missing or not ready, the connected-state check falls back to the DOM (``#pane-side``).

There is one driver (wa-js's ``WPP`` API). The test simulator serves the same ``WPP`` subset
(tests/whatsapp_sim/static/app.js) because it cannot provide WhatsApp's internals; the real
wa-js file is still injected there and must load without harm.

Message text is never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linda_desktop.base.errors import LindaError

log = logging.getLogger(__name__)

# WhatsApp's message times come from its servers; allow for a local clock a little off.
CLOCK_SKEW_SECONDS = 2.0
BINDING = "__lindaEmit"
WAJS_DIR = Path(__file__).resolve().parent / "wajs"
WAJS_ENV = "LINDA_WAJS_FILE"
WAJS_REL = Path("node_modules") / "@wppconnect" / "wa-js" / "dist" / "wppconnect-wa.js"
# wa-js options, set before it loads: no analytics, no renamed device, no link-preview servers.
WAJS_CONFIG = {"disableGoogleAnalytics": True, "googleAnalyticsId": None, "deviceName": False,
               "linkPreviewApiServers": None, "poweredBy": None, "sendStatusToDevice": False}
SEND_TIMEOUT_SECONDS = 30.0
MAX_TEXT = 65536
_BANNER_RE = re.compile(rb"wppconnect-team/wa-js v(\d+\.\d+\.\d+\S*)")
_NUMBER_RE = re.compile(r"^\+?[\d\s().-]{5,40}$")
_CHAT_ID_RE = re.compile(r"^\d{5,20}(?:-\d{5,20})?@(?:c\.us|g\.us|lid)$")


class MessagingError(LindaError):
    """A message could not be sent. ``code``: not_connected, not_ready, invalid_recipient,
    send_failed, timeout."""

    def __init__(self, code: str, message: str, fix: str | None = None) -> None:
        super().__init__(message, fix)
        self.code = code


# --------------------------------------------------------------------------- wa-js file

@dataclass(frozen=True)
class WaJs:
    path: Path
    version: str
    source: str = "npm"          # npm | update (a bridge fetched by `api update-bridge`) | override


def _version_tuple(text: str) -> tuple[int, int, int] | None:
    match = re.match(r"^(\d+)\.(\d+)\.(\d+)", text.strip())
    return (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else None


def supported_range() -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """[lowest, below) of wa-js versions the bridge works with, from package.json's
    ``lindaSupported`` (">=4.6.0 <5.0.0"); the npm dependency is a caret range over the same."""
    text = ">=4.6.0 <5.0.0"
    try:
        text = str(json.loads((WAJS_DIR / "package.json").read_text("utf-8")).get("lindaSupported") or text)
    except (OSError, ValueError):
        pass
    low = re.search(r">=\s*(\d+\.\d+\.\d+)", text)
    high = re.search(r"<\s*(\d+\.\d+\.\d+)", text)
    lo = _version_tuple(low.group(1)) if low else (4, 6, 0)
    hi = _version_tuple(high.group(1)) if high else (5, 0, 0)
    return lo or (4, 6, 0), hi or (5, 0, 0)


def version_supported(version: str | None) -> bool:
    if not version or "-" in version:           # pre-releases (4.8.4-rc.0) are not taken
        return False
    parsed = _version_tuple(version)
    lo, hi = supported_range()
    return parsed is not None and lo <= parsed < hi


def pinned_version() -> str | None:
    """The version of the wa-js npm installed next to package.json (its own package.json)."""
    return _package_version(WAJS_DIR / "node_modules" / "@wppconnect" / "wa-js" / "package.json")


def _package_version(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("name") != "@wppconnect/wa-js":
        return None
    return str(data.get("version") or "") or None


def _file_version(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(400)
    except OSError:
        return None
    match = _BANNER_RE.search(head)
    return match.group(1).decode() if match else None


def _checked(path: Path, meta: Path | None, source: str) -> WaJs | None:
    """The build at ``path`` when its own metadata (package.json beside it, else the file's
    banner) names a supported version."""
    version = _package_version(meta) if meta is not None else None
    banner = _file_version(path)
    if banner is None:
        return None
    version = version or banner
    if version != banner:
        log.warning("wa-js at %s says %s in its banner but %s in package.json: not used", path, banner, version)
        return None
    if not version_supported(version):
        lo, hi = supported_range()
        log.warning("wa-js %s at %s is outside the supported range %s ≤ v < %s: not used", version, path,
                    ".".join(map(str, lo)), ".".join(map(str, hi)))
        return None
    return WaJs(path, version, source)


def find_wajs(bridge_dir: Path | None = None, *, skip: tuple[str, ...] = ()) -> WaJs | None:
    """The wa-js build to inject, newest usable first:

    1. ``$LINDA_WAJS_FILE`` (the owner's own file: used when its version is in range);
    2. the bridge `linda-desktop api update-bridge` installed in ``bridge_dir`` (current, then
       the previous one it keeps to roll back to), unless its version is in ``skip``;
    3. npm's copy next to package.json, or the copy a frozen bundle keeps in ``browser/wajs/``.
    """
    if os.environ.get(WAJS_ENV):
        found = _checked(Path(os.environ[WAJS_ENV]), None, "override")
        if found is not None:
            return found
    candidates: list[WaJs] = []
    if bridge_dir is not None:
        from linda_desktop.browser.bridge_files import installed_bridges

        for version, path in installed_bridges(bridge_dir):
            if version in skip:
                continue
            found = _checked(path, path.parent / "package.json", "update")
            if found is not None:
                candidates.append(found)
    npm = _checked(WAJS_DIR / WAJS_REL, WAJS_DIR / "node_modules" / "@wppconnect" / "wa-js" / "package.json", "npm")
    if npm is None:
        npm = _checked(WAJS_DIR / "wppconnect-wa.js", None, "npm")
    if npm is not None and npm.version not in skip:
        candidates.append(npm)
    if not candidates:
        return npm
    return max(candidates, key=lambda w: _version_tuple(w.version) or (0, 0, 0))


# --------------------------------------------------------------------------- recipients

def normalize_recipient(to: Any) -> str:
    """A phone number ("+1 555 123-4567") or a chat id ("15551234567@c.us", "…@g.us", "…@lid")
    → the chat id WhatsApp uses. Raises MessagingError(invalid_recipient)."""
    if not isinstance(to, str) or not to.strip():
        raise MessagingError("invalid_recipient", "'to' must be a phone number or a chat id")
    value = to.strip()
    if "@" in value:
        if not _CHAT_ID_RE.match(value):
            raise MessagingError("invalid_recipient",
                                 "'to' is not a chat id (expected digits@c.us, digits@g.us or digits@lid)")
        return value
    if not _NUMBER_RE.match(value):
        raise MessagingError("invalid_recipient", "'to' is not a phone number (digits with country code)")
    digits = re.sub(r"\D", "", value)
    if not 5 <= len(digits) <= 20:
        raise MessagingError("invalid_recipient", "a phone number has 5 to 20 digits with its country code")
    return f"{digits}@c.us"


def check_text(text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise MessagingError("invalid_text", "'text' must be a non-empty string")
    if len(text) > MAX_TEXT:
        raise MessagingError("invalid_text", f"'text' is longer than {MAX_TEXT} characters")
    return text


# --------------------------------------------------------------------------- in-page bridge

JS_DIR = Path(__file__).resolve().parent / "js"


def bridge_source() -> str:
    """Linda's adapter (browser/js/bridge.js): ``window.__linda`` on top of ``window.WPP``."""
    return (JS_DIR / "bridge.js").read_text("utf-8")


SEND_JS = ("([to, text]) => window.__linda ? window.__linda.send(to, text) : "
           "{ok: false, code: 'not_ready', message: 'the bridge is not in the page'}")
STATUS_JS = "() => window.__linda ? window.__linda.status() : null"
REPLAY_JS = ("(opts) => window.__linda ? window.__linda.replay(opts) : "
             "{ok: false, code: 'not_ready', messages: []}")
QUIET_JS = "(online) => window.__linda ? window.__linda.quiet(online) : {ok: false, code: 'not_ready'}"
PROBE_JS = "(ms) => window.__linda ? window.__linda.probe(ms) : {ok: true, skipped: true}"
CHATS_JS = "(limit) => window.__linda ? window.__linda.chats(limit) : null"
HEALTH_JS = "() => window.__linda ? window.__linda.health() : null"

# kind ("message", "ack", "bridge_ready") and the checked payload.
PageSink = Callable[[str, dict[str, Any]], None]


def _clean(payload: Any) -> dict[str, Any] | None:
    """Checks a message the page pushed (the page is not trusted to be well-formed)."""
    if not isinstance(payload, dict):
        return None
    out: dict[str, Any] = {}
    for key in ("id", "chat_id", "chat_pn", "from", "from_id", "author", "sender_name", "type", "text"):
        value = payload.get(key)
        if value is not None and not isinstance(value, str):
            return None
        out[key] = value[:MAX_TEXT] if isinstance(value, str) else None
    if not out["id"] or not out["chat_id"]:
        return None
    for key in ("timestamp", "ack"):
        value = payload.get(key)
        out[key] = int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    stamp = payload.get("page_time")
    out["page_time"] = float(stamp) / 1000.0 if isinstance(stamp, (int, float)) else None
    out["group"] = bool(payload.get("group"))
    out["from_me"] = bool(payload.get("from_me"))
    out["backfilled"] = bool(payload.get("backfilled"))
    return out


def _clean_ack(payload: Any) -> dict[str, Any] | None:
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), str):
        return None
    ack = payload.get("ack")
    if not isinstance(ack, (int, float)) or isinstance(ack, bool):
        return None
    chat = payload.get("chat_id")
    stamp = payload.get("page_time")
    return {"id": payload["id"][:300], "chat_id": chat[:300] if isinstance(chat, str) else None, "ack": int(ack),
            "page_time": float(stamp) / 1000.0 if isinstance(stamp, (int, float)) else None}


class MessageBridge:
    """Attaches the bridge to each browser context; sends, replays and checks through the page.

    ``on_page`` is called on the loop that drives Playwright (the service's loop) with
    ("message", dict) for each message WhatsApp adds (ours too: ``from_me``), ("ack", {id,
    chat_id, ack}) when a sent message's ack changes, and ("bridge_ready", {version, simulated})."""

    def __init__(self, on_page: PageSink, wajs: WaJs | None = None) -> None:
        self.on_page = on_page
        self.wajs = wajs
        self._contexts: weakref.WeakSet[Any] = weakref.WeakSet()
        # When the bridge first listened in each browser context: a message WhatsApp dated before
        # that was sent while the app was away, however it reaches the page (WhatsApp replays its queue).
        self._attached_at: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        self._wajs_source: str | None = None
        self._bridge_source: str | None = None
        self.received = 0
        self.sent = 0
        self.ready_version: str | None = None

    def _wajs_script(self) -> str | None:
        if self.wajs is None:
            return None
        if self._wajs_source is None:
            source = self.wajs.path.read_text("utf-8")
            self._wajs_source = (f"window.WPPConfig = Object.assign({json.dumps(WAJS_CONFIG)}, "
                                 f"window.WPPConfig || {{}});\nif (!window.WPP) {{\n{source}\n}}\n")
        return self._wajs_source

    def _bridge_script(self) -> str:
        if self._bridge_source is None:
            self._bridge_source = bridge_source()
        return self._bridge_source

    async def attach_context(self, context: Any) -> None:
        """Before any page of ``context`` loads: the binding and both init scripts, so the bridge
        listens from the first script WhatsApp runs (no message lost right after a launch)."""
        if context in self._contexts:
            return
        self._contexts.add(context)
        self._attached_at[context] = time.time()
        await context.expose_binding(BINDING, self._from_page)
        wajs = self._wajs_script()
        if wajs is not None:
            await context.add_init_script(script=wajs)
        await context.add_init_script(script=self._bridge_script())

    async def attach(self, page: Any) -> None:
        """``page``: a Playwright Page. Its context gets the init scripts (pages opened later —
        the storage flush reopens the tab — have them too); a page that was already open
        gets them through the DevTools protocol. Safe to call twice."""
        fresh = page.context not in self._contexts
        await self.attach_context(page.context)
        if fresh:
            wajs = self._wajs_script()
            if wajs is not None and not page.is_closed():
                await self._evaluate_script(page, wajs)
            if not page.is_closed():
                await self._evaluate_script(page, self._bridge_script())
        log.info("message bridge attached (wa-js %s)", self.wajs.version if self.wajs else "not installed")

    async def _evaluate_script(self, page: Any, source: str) -> None:
        """Runs a script in the open document through the DevTools protocol (not subject to
        the page's Content-Security-Policy, unlike a <script> tag)."""
        try:
            session = await page.context.new_cdp_session(page)
            try:
                await session.send("Runtime.evaluate", {"expression": source, "silent": True})
            finally:
                await session.detach()
        except Exception as exc:  # noqa: BLE001 - mid-navigation: the init scripts cover the next document
            log.debug("script not evaluated in the open page: %s", type(exc).__name__)

    def _from_page(self, source: Any, kind: Any, data: Any = None) -> None:
        try:
            if kind == "message":
                payload = _clean(data)
                if payload is None:
                    log.warning("ignored a malformed message from the page")
                    return
                since = self._attached_at.get(source.get("context")) if isinstance(source, dict) else None
                if since is not None and payload["timestamp"] is not None \
                        and payload["timestamp"] < since - CLOCK_SKEW_SECONDS:
                    payload["backfilled"] = True  # sent while the app was away, replayed by WhatsApp
                self.received += 1
                self.on_page("message", payload)
            elif kind == "ack":
                ack = _clean_ack(data)
                if ack is not None:
                    self.on_page("ack", ack)
            elif kind == "unread":
                self.on_page("unread", {})
            elif kind == "bridge_ready":
                info = data if isinstance(data, dict) else {}
                self.ready_version = str(info.get("version", ""))[:40]
                log.info("message bridge ready (%s)", "simulator" if info.get("simulated") else
                         f"wa-js {self.ready_version}")
                self.on_page("bridge_ready", {"version": self.ready_version,
                                              "simulated": bool(info.get("simulated"))})
            elif kind == "bridge_error":
                log.warning("message bridge: could not read a message (%s)", str(data)[:200])
        except Exception:  # never let a listener's bug reach Playwright's dispatcher
            log.exception("message listener failed")

    async def _call(self, page: Any, script: str, arg: Any = None, timeout: float = 10.0) -> Any:
        if page is None or page.is_closed():
            return None
        try:
            if arg is None:
                return await asyncio.wait_for(page.evaluate(script), timeout)
            return await asyncio.wait_for(page.evaluate(script, arg), timeout)
        except Exception:  # noqa: BLE001 - a page closing or navigating is an answer of None
            return None

    async def status(self, page: Any) -> dict[str, Any] | None:
        result = await self._call(page, STATUS_JS, timeout=5)
        return result if isinstance(result, dict) else None

    async def health(self, page: Any, timeout: float = 5.0) -> dict[str, Any] | None:
        """The page's liveness view, or None when the page does not answer in ``timeout``."""
        result = await self._call(page, HEALTH_JS, timeout=timeout)
        return result if isinstance(result, dict) else None

    async def chats(self, page: Any, limit: int = 100) -> list[dict[str, Any]] | None:
        result = await self._call(page, CHATS_JS, limit, timeout=15)
        return [c for c in result if isinstance(c, dict)] if isinstance(result, list) else None

    async def probe(self, page: Any, timeout: float = 10.0) -> dict[str, Any] | None:
        """A round trip to WhatsApp's server through wa-js; None when the page did not answer."""
        result = await self._call(page, PROBE_JS, int(timeout * 1000), timeout=timeout + 5)
        return result if isinstance(result, dict) else None

    async def quiet(self, page: Any, online: bool = False) -> bool:
        """``WPP.conn.markUnavailable()`` (or markAvailable when the owner wants to show online)."""
        result = await self._call(page, QUIET_JS, online)
        return isinstance(result, dict) and bool(result.get("ok"))

    async def replay(self, page: Any, *, since: int, cap: int, marks: dict[str, int],
                     channels: bool = False) -> list[dict[str, Any]] | None:
        """Unread messages newer than ``since`` (and than each chat's mark), at most ``cap``;
        None when the page could not be asked."""
        result = await self._call(page, REPLAY_JS, {"since": since, "cap": cap, "marks": marks,
                                                    "channels": channels}, timeout=60)
        if not isinstance(result, dict) or not result.get("ok"):
            return None
        out = []
        for item in result.get("messages") or []:
            payload = _clean(item)
            if payload is not None:
                payload["backfilled"] = True
                out.append(payload)
        return out

    async def send(self, page: Any, chat_id: str, text: str, timeout: float = SEND_TIMEOUT_SECONDS) -> dict[str, Any]:
        """Sends ``text`` to ``chat_id`` (already normalised). Returns {"id", "ack"}."""
        if page is None or page.is_closed():
            raise MessagingError("not_connected", "the browser is not running", "wait until WhatsApp is connected")
        try:
            result = await asyncio.wait_for(page.evaluate(SEND_JS, [chat_id, text]), timeout)
        except asyncio.TimeoutError:
            raise MessagingError("timeout", f"WhatsApp Web did not confirm the message within {timeout:g} s",
                                 "check the connection; the message may still be sent") from None
        except Exception as exc:  # noqa: BLE001 - page closed or navigating
            raise MessagingError("not_ready", f"the page could not send right now ({type(exc).__name__})",
                                 "retry in a few seconds") from None
        if not isinstance(result, dict) or not result.get("ok"):
            info = result if isinstance(result, dict) else {}
            code = str(info.get("code") or "send_failed")
            fix = {"not_ready": "wait until WhatsApp Web has loaded (or install wa-js: npm ci in "
                                "linda_desktop/browser/wajs)",
                   "not_connected": "wait until WhatsApp is connected"}.get(code)
            raise MessagingError(code, str(info.get("message") or "the message was not sent"), fix)
        self.sent += 1
        return {"id": result.get("id"), "ack": result.get("ack")}
