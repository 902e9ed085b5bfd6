"""The message bridge: read incoming WhatsApp messages and send text through WhatsApp Web.

How it works. Two scripts go into every document of the browser context:

* ``@wppconnect/wa-js`` (pinned in ``browser/wajs/package.json``, fetched with ``npm ci`` at
  set-up/build time, never committed). On the real site it reaches WhatsApp Web's internal
  modules and builds ``window.WPP`` (``WPP.chat.sendTextMessage``, the ``chat.new_message``
  event, ``WPP.conn.isMainReady()``). It is loaded as an init script (CSP does not apply),
  before WhatsApp's own code, as the library expects; a page that was already open when the
  bridge attached gets it through the DevTools protocol.
* ``BRIDGE_JS``: Linda's small adapter, ``window.__linda``. It waits for ``WPP.isReady``,
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
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from linda_desktop.base.errors import LindaError

log = logging.getLogger(__name__)

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


def pinned_version() -> str | None:
    """The wa-js version package.json pins (exact)."""
    try:
        deps = json.loads((WAJS_DIR / "package.json").read_text("utf-8"))["dependencies"]
        return str(deps["@wppconnect/wa-js"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _file_version(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(400)
    except OSError:
        return None
    match = _BANNER_RE.search(head)
    return match.group(1).decode() if match else None


def find_wajs() -> WaJs | None:
    """The wa-js build to inject: $LINDA_WAJS_FILE, else npm's copy next to package.json, else
    a copy a frozen bundle keeps in ``browser/wajs/``. Only the pinned version is accepted."""
    wanted = pinned_version()
    candidates = [Path(os.environ[WAJS_ENV])] if os.environ.get(WAJS_ENV) else []
    candidates += [WAJS_DIR / WAJS_REL, WAJS_DIR / "wppconnect-wa.js"]
    for path in candidates:
        version = _file_version(path)
        if version is None:
            continue
        if wanted and version != wanted:
            log.warning("wa-js at %s is %s, not the pinned %s: not used", path, version, wanted)
            continue
        return WaJs(path, version)
    return None


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

BRIDGE_JS = r"""
(() => {
  if (window.__linda) return;
  const BINDING = '__lindaEmit';
  let hooked = null;
  const str = (w) => (w == null ? null : String(w._serialized || w));
  const emit = (kind, data) => {
    try { const fn = window[BINDING]; if (typeof fn === 'function') fn(kind, data); } catch (e) { /* page going away */ }
  };
  const api = () => {
    const w = window.WPP;
    return w && typeof w === 'object' ? w : null;
  };
  const domConnected = () => !!document.querySelector('#pane-side');
  function toPayload(msg) {
    if (!msg || !msg.id || msg.id.fromMe || msg.isNewMsg === false || msg.isStatusV3) return null;
    const chat = str(msg.id.remote) || str(msg.from);
    if (!chat || chat === 'status@broadcast') return null;
    const group = /@g\.us$/.test(chat);
    const author = group ? str(msg.author) : chat;
    const number = author && /@c\.us$/.test(author) ? author.split('@')[0] : null;
    const text = msg.type === 'chat' && typeof msg.body === 'string' ? msg.body : null;
    const caption = typeof msg.caption === 'string' ? msg.caption : null;
    return {id: str(msg.id), chat_id: chat, from: number, author: group ? author : null,
            sender_name: typeof msg.notifyName === 'string' && msg.notifyName ? msg.notifyName : null,
            type: String(msg.type || 'unknown'), text: text !== null ? text : caption,
            timestamp: typeof msg.t === 'number' ? msg.t : null, group};
  }
  function hook() {
    const w = api();
    if (!w || !w.isReady || typeof w.on !== 'function' || hooked === w) return;
    hooked = w;
    w.on('chat.new_message', (msg) => {
      let payload = null;
      try { payload = toPayload(msg); } catch (e) { emit('bridge_error', String(e && e.message || e)); }
      if (payload) emit('message', payload);
    });
    emit('bridge_ready', {simulated: !!w.__simulated, version: String(w.version || '')});
  }
  const timer = setInterval(() => { hook(); if (hooked) clearInterval(timer); }, 200);
  function mainReady() {
    const w = api();
    try {
      if (w && w.isReady && w.conn && typeof w.conn.isMainReady === 'function') return !!w.conn.isMainReady();
    } catch (e) { /* fall back to the DOM */ }
    return domConnected();
  }
  window.__linda = {
    status() {
      hook();
      const w = api();
      return {api: w ? (w.__simulated ? 'wa-js (simulator)' : 'wa-js') : null,
              version: w ? String(w.version || '') : null, ready: !!(w && w.isReady),
              hooked: hooked !== null, connected: mainReady(), dom_connected: domConnected()};
    },
    async send(to, text) {
      hook();
      const w = api();
      if (!w) return {ok: false, code: 'not_ready', message: 'wa-js is not loaded in the page'};
      if (!w.isReady || !w.chat || typeof w.chat.sendTextMessage !== 'function')
        return {ok: false, code: 'not_ready', message: 'wa-js has not reached WhatsApp Web yet'};
      if (!mainReady()) return {ok: false, code: 'not_connected', message: 'WhatsApp Web is not ready'};
      try {
        const r = await w.chat.sendTextMessage(to, text, {createChat: true, waitForAck: true});
        return {ok: true, id: str(r && r.id), ack: r && typeof r.ack === 'number' ? r.ack : null};
      } catch (e) {
        return {ok: false, code: 'send_failed', message: String((e && e.message) || e).slice(0, 300)};
      }
    },
  };
  hook();
})();
"""

SEND_JS = "([to, text]) => window.__linda ? window.__linda.send(to, text) : {ok: false, code: 'not_ready', message: 'the bridge is not in the page'}"
STATUS_JS = "() => window.__linda ? window.__linda.status() : null"

MessageSink = Callable[[dict[str, Any]], None]


def _clean(payload: Any) -> dict[str, Any] | None:
    """Checks what the page pushed (the page is not trusted to be well-formed)."""
    if not isinstance(payload, dict):
        return None
    out: dict[str, Any] = {}
    for key in ("id", "chat_id", "from", "author", "sender_name", "type", "text"):
        value = payload.get(key)
        if value is not None and not isinstance(value, str):
            return None
        out[key] = value[:MAX_TEXT] if isinstance(value, str) else None
    if not out["id"] or not out["chat_id"]:
        return None
    stamp = payload.get("timestamp")
    out["timestamp"] = int(stamp) if isinstance(stamp, (int, float)) else None
    out["group"] = bool(payload.get("group"))
    return out


class MessageBridge:
    """Attaches the bridge to each browser the service launches; sends through the open page.

    ``on_message`` is called on the loop that drives Playwright (the service's loop) with a
    dict: id, chat_id, from, author, sender_name, type, text, timestamp, group."""

    def __init__(self, on_message: MessageSink, wajs: WaJs | None = None) -> None:
        self.on_message = on_message
        self.wajs = wajs
        self._contexts: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self._wajs_source: str | None = None
        self.received = 0
        self.sent = 0

    def _wajs_script(self) -> str | None:
        if self.wajs is None:
            return None
        if self._wajs_source is None:
            source = self.wajs.path.read_text("utf-8")
            self._wajs_source = (f"window.WPPConfig = Object.assign({json.dumps(WAJS_CONFIG)}, window.WPPConfig || {{}});\n"
                                 f"if (!window.WPP) {{\n{source}\n}}\n")
        return self._wajs_source

    async def attach(self, page: Any) -> None:
        """``page``: a Playwright Page (its whole context gets the bridge, so pages opened later
        — the storage flush reopens the tab — have it too). Safe to call twice."""
        context = page.context
        if context not in self._contexts:
            self._contexts.add(context)
            await context.expose_binding(BINDING, self._from_page)
            wajs = self._wajs_script()
            if wajs is not None:
                await context.add_init_script(script=wajs)
            await context.add_init_script(script=BRIDGE_JS)
        # The page already open missed the init scripts: give it wa-js, then the bridge.
        wajs = self._wajs_script()
        if wajs is not None and not page.is_closed():
            await self._evaluate_script(page, wajs)
        if not page.is_closed():
            await self._evaluate_script(page, BRIDGE_JS)
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
        except Exception as exc:  # mid-navigation: the init scripts cover the next document
            log.debug("script not evaluated in the open page: %s", type(exc).__name__)

    def _from_page(self, source: Any, kind: Any, data: Any = None) -> None:
        try:
            if kind == "message":
                payload = _clean(data)
                if payload is None:
                    log.warning("ignored a malformed message from the page")
                    return
                self.received += 1
                self.on_message(payload)
            elif kind == "bridge_ready":
                info = data if isinstance(data, dict) else {}
                log.info("message bridge ready (%s)", "simulator" if info.get("simulated") else
                         f"wa-js {str(info.get('version', ''))[:20]}")
            elif kind == "bridge_error":
                log.warning("message bridge: could not read a message (%s)", str(data)[:200])
        except Exception:  # never let a listener's bug reach Playwright's dispatcher
            log.exception("message listener failed")

    async def status(self, page: Any) -> dict[str, Any] | None:
        try:
            return await asyncio.wait_for(page.evaluate(STATUS_JS), 5)
        except Exception:
            return None

    async def send(self, page: Any, chat_id: str, text: str, timeout: float = SEND_TIMEOUT_SECONDS) -> dict[str, Any]:
        """Sends ``text`` to ``chat_id`` (already normalised). Returns {"id", "ack"}."""
        if page is None or page.is_closed():
            raise MessagingError("not_connected", "the browser is not running", "wait until WhatsApp is connected")
        try:
            result = await asyncio.wait_for(page.evaluate(SEND_JS, [chat_id, text]), timeout)
        except asyncio.TimeoutError:
            raise MessagingError("timeout", f"WhatsApp Web did not confirm the message within {timeout:g} s",
                                 "check the connection; the message may still be sent") from None
        except Exception as exc:  # page closed or navigating
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
