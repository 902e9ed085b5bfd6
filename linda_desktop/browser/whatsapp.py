"""WhatsAppPage: one headless (or, for the passkey step, visible) Chromium on the app's
profile, showing WhatsApp Web, read as a ``PageSnapshot``.

How the page is read: one small script (``PROBE_JS``) runs in the page and reports which
markers of resources/selectors.json are present; ``classify`` turns that into a state. The
page's internal state (``window.require('WAWebSocketModel').Socket.state``) wins when the page
exposes it; the DOM markers are the portable fallback; nothing matched -> ``UNKNOWN``.

Storage flush (measured with SIGKILL trials on Chromium 156): IndexedDB reaches the disk at
once; localStorage only ~5 s later, or as soon as no page of the origin is open any more
(Chromium then commits the origin's storage area immediately). ``flush_storage`` therefore
opens a blank tab, closes the WhatsApp tab, and opens WhatsApp again in the new tab; a clean
``close`` flushes everything too. Navigating the same tab to about:blank does NOT flush.

QR payloads are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import parse_qs, urlsplit

from playwright.async_api import BrowserContext, Error as PlaywrightError, Page, Playwright, async_playwright

from linda_desktop.browser.discovery import browser_version as read_browser_version
from linda_desktop.browser.discovery import platform_key
from linda_desktop.browser.selectors import Selectors, default_selectors
from linda_desktop.base.errors import BrowserLaunchFailed, ProfileInUse
from linda_desktop.base.events import PageSnapshot, PageState

log = logging.getLogger(__name__)

VIEWPORT = {"width": 1280, "height": 800}
LAUNCH_ARGS = (
    "--disable-blink-features=AutomationControlled",  # navigator.webdriver stays false
    "--hide-crash-restore-bubble",                    # no "Restore pages?" after a kill
    "--no-default-browser-check",
    "--disable-search-engine-choice-screen",
)
POLL_SECONDS = 0.15
NAV_TIMEOUT_MS = 60_000
_PLATFORM_TOKENS = {"windows": "Windows NT 10.0; Win64; x64",
                    "macos": "Macintosh; Intel Mac OS X 10_15_7",
                    "linux": "X11; Linux x86_64"}
_UA_CACHE: dict[str, str] = {}
_IN_USE = ("ProcessSingleton", "profile appears to be in use", "SingletonLock",
           "user data directory is already in use")


def desktop_user_agent(version: str, system: str | None = None) -> str:
    """The user agent desktop Chrome sends today (reduced UA: ``Chrome/<major>.0.0.0``)."""
    major = version.split(".")[0]
    token = _PLATFORM_TOKENS[platform_key(system)]
    return (f"Mozilla/5.0 ({token}) AppleWebKit/537.36 (KHTML, like Gecko) "
            f"Chrome/{major}.0.0.0 Safari/537.36")


def fix_user_agent(user_agent: str) -> str:
    """The browser's own UA with ``HeadlessChrome`` turned into ``Chrome`` (version kept)."""
    return user_agent.replace("HeadlessChrome", "Chrome")


# --------------------------------------------------------------------------- page probe
PROBE_JS = r"""
(cfg) => {
  const vis = (el) => !!el && (el.checkVisibility ? el.checkVisibility() : el.getClientRects().length > 0);
  const all = (sel) => { try { return Array.from(document.querySelectorAll(sel)); } catch (e) { return []; } };
  const anyVisible = (sels) => sels.some((s) => all(s).some(vis));
  const anyExists = (sels) => sels.some((s) => all(s).length > 0);
  let exclude = cfg.textExclude.join(',');
  try { if (exclude) document.querySelector(exclude); } catch (e) { exclude = ''; }
  const parts = [];
  if (document.body) {
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT, {
      acceptNode(node) {
        if (node.nodeType === 1) {
          const tag = node.tagName;
          if (tag === 'SCRIPT' || tag === 'STYLE' || tag === 'NOSCRIPT' || tag === 'TEMPLATE') return NodeFilter.FILTER_REJECT;
          if (exclude && node.matches(exclude)) return NodeFilter.FILTER_REJECT;
          return NodeFilter.FILTER_SKIP;
        }
        return NodeFilter.FILTER_ACCEPT;
      }});
    let count = 0;
    while (walker.nextNode() && count++ < 5000) {
      const node = walker.currentNode;
      const value = (node.nodeValue || '').trim();
      if (value && vis(node.parentElement)) parts.push(value);
    }
  }
  const text = parts.join('\n');
  const matches = {};
  for (const [name, spec] of Object.entries(cfg.states)) {
    const hit = anyVisible(spec.selectors) || spec.texts.some((t) => text.includes(t));
    matches[name] = hit && !anyExists(spec.unless);
  }
  let qr = null;
  for (const sel of cfg.qr.container) {
    const el = all(sel)[0];
    if (el) { qr = el.getAttribute(cfg.qr.attribute); break; }
  }
  let progress = null;
  for (const sel of cfg.progress) {
    const el = all(sel).find(vis);
    if (el && el.max > 0) { progress = Math.round((el.value / el.max) * 100); break; }
  }
  if (progress === null && cfg.progressPattern) {
    const m = text.match(new RegExp(cfg.progressPattern));
    if (m && matches.loading) progress = parseInt(m[1], 10);
  }
  let account = null;
  try {
    for (const key of cfg.accountKeys) { const v = localStorage.getItem(key); if (v) { account = v; break; } }
  } catch (e) { /* opaque origin */ }
  let internal = null;
  try {
    const req = window[cfg.internal.require];
    if (typeof req === 'function') {
      const s = cfg.internal.socket;
      const sock = req(s.module)[s.object];
      internal = {state: String(sock[s.state]), synced: !!sock[s.synced], ref: null, stream: null};
      try { const c = cfg.internal.conn; const v = req(c.module)[c.object][c.ref]; internal.ref = v == null ? null : String(v); } catch (e) {}
      try { const st = cfg.internal.stream; const v = req(st.module)[st.object][st.field]; internal.stream = v == null ? null : String(v); } catch (e) {}
    }
  } catch (e) { internal = null; }
  return {matches, qr, progress, account, internal};
}
"""


def _looks_like_payload(value: str | None, pattern: str) -> bool:
    return bool(value) and re.match(pattern, value or "") is not None


def parse_account(raw: str | None, pattern: str) -> str | None:
    if not raw:
        return None
    match = re.match(pattern, raw)
    return match.group(1) if match else None


def classify(raw: Mapping[str, Any] | None, url: str, selectors: Selectors) -> PageSnapshot:
    """Turns the probe's report (and the page URL) into a PageSnapshot. Pure: testable."""
    params = parse_qs(urlsplit(url).query)
    post_logout = params.get(selectors.logout_flag, [""])[-1].lower() in ("1", "true")
    reason = params.get(selectors.logout_reason, [""])[-1] or None
    if not raw:
        return PageSnapshot(PageState.UNKNOWN, reason=reason, post_logout=post_logout)
    matches: Mapping[str, bool] = raw.get("matches") or {}
    dom_qr = raw.get("qr") if _looks_like_payload(raw.get("qr"), selectors.qr_pattern) else None
    state: PageState | None = None
    internal = raw.get("internal")
    if isinstance(internal, Mapping) and internal.get("state") in selectors.internal_map:
        state = selectors.internal_map[internal["state"]]
        if state is PageState.CONNECTED:
            if matches.get(PageState.CONFLICT.value):
                state = PageState.CONFLICT
            elif not internal.get("synced"):
                state = PageState.LOADING
            elif internal.get("stream") in selectors.stream_offline or matches.get(PageState.OFFLINE.value):
                state = PageState.OFFLINE
        elif state is PageState.UNKNOWN:
            reason = reason or str(internal["state"]).lower()
        if state is PageState.QR and dom_qr is None:
            ref = internal.get("ref")
            dom_qr = ref if _looks_like_payload(ref, selectors.qr_pattern) and ref.count(",") >= 4 else None
    if state is None:
        state = next((s for s in selectors.order if matches.get(s.value)), PageState.UNKNOWN)
    progress = raw.get("progress") if state is PageState.LOADING else None
    return PageSnapshot(
        state=state,
        qr=dom_qr if state is PageState.QR else None,
        reason=reason,
        progress=int(progress) if isinstance(progress, (int, float)) else None,
        account=parse_account(raw.get("account"), selectors.account_pattern),
        post_logout=post_logout,
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    for line in text.splitlines():
        line = line.strip().lstrip("=").strip()
        if line and not line.startswith("Browser logs") and not line.startswith("Call log"):
            return line[:300]
    return type(err).__name__


def _differs(a: PageSnapshot | None, b: PageSnapshot) -> bool:
    if a is None:
        return True
    return (a.state, a.qr, a.reason, a.post_logout) != (b.state, b.qr, b.reason, b.post_logout)


class WhatsAppPage:
    """One browser on ``profile_dir`` showing ``url``. Use on a single asyncio loop."""

    def __init__(self, profile_dir: Path, url: str, executable: str, *, headless: bool = True,
                 selectors: Selectors | None = None, on_crash: Callable[[], None] | None = None,
                 user_agent: str | None = None, extra_args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None, viewport: Mapping[str, int] | None = None,
                 nav_retry_seconds: float = 5.0) -> None:
        self.profile_dir = Path(profile_dir)
        self.url = url
        self.executable = executable
        self.headless = headless
        self.selectors = selectors or default_selectors()
        self.on_crash = on_crash
        self.user_agent = user_agent
        self.extra_args = tuple(extra_args)
        self.env = dict(env) if env is not None else None
        self.viewport = dict(viewport or VIEWPORT)
        self._probe_cfg = {**self.selectors.probe_config(), "progressPattern": self.selectors.progress_pattern}
        self._pw: Playwright | None = None
        self._context: BrowserContext | None = None
        self._page: Page | None = None
        self._pid: int | None = None
        self._version: str | None = None
        self._crashed = False
        self._closing = False
        self._close_task: asyncio.Task[None] | None = None
        self._nav_error: str | None = None
        self._retry_at = 0.0
        self._retry_first = nav_retry_seconds
        self._retry_delay = nav_retry_seconds

    # ------------------------------------------------------------------ properties
    @property
    def crashed(self) -> bool:
        return self._crashed

    @property
    def browser_pid(self) -> int | None:
        return self._pid

    @property
    def browser_version(self) -> str | None:
        return self._version

    @property
    def page(self) -> Page | None:
        """The Playwright page (tests, advanced use). None before start / after close."""
        return self._page

    @property
    def running(self) -> bool:
        return self._context is not None and not self._crashed and not self._closing

    # ------------------------------------------------------------------ launch
    async def _resolve_user_agent(self) -> str:
        if self.user_agent:
            return self.user_agent
        cached = _UA_CACHE.get(self.executable)
        if cached:
            return cached
        version = await asyncio.to_thread(read_browser_version, self.executable)
        if version:
            ua = desktop_user_agent(version)
        else:  # e.g. Windows Chrome prints no --version: ask the browser itself
            assert self._pw is not None
            browser = await self._pw.chromium.launch(executable_path=self.executable, headless=True)
            try:
                page = await browser.new_page()
                ua = fix_user_agent(await page.evaluate("navigator.userAgent"))
            finally:
                await browser.close()
        _UA_CACHE[self.executable] = ua
        return ua

    async def start(self) -> None:
        """Launch the browser on the profile and open the WhatsApp URL.

        Raises ProfileInUse (another browser holds the profile) or BrowserLaunchFailed.
        A URL that cannot be reached does not raise: the snapshot says OFFLINE."""
        if self._context is not None:
            raise RuntimeError("WhatsAppPage already started")
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        self._pw = await async_playwright().start()
        try:
            ua = await self._resolve_user_agent()
            options: dict[str, Any] = dict(
                executable_path=self.executable, headless=self.headless, user_agent=ua,
                args=[*LAUNCH_ARGS, *self.extra_args], service_workers="block",
                viewport=self.viewport, timeout=NAV_TIMEOUT_MS,
                # The app handles its own signals: it flushes and closes the browser itself.
                handle_sigint=False, handle_sigterm=False, handle_sighup=False,
            )
            if not self.headless:
                options["ignore_default_args"] = ["--enable-automation"]  # no "controlled" infobar
            if self.env is not None:
                options["env"] = self.env
            self._context = await self._pw.chromium.launch_persistent_context(str(self.profile_dir), **options)
        except PlaywrightError as err:
            await self._stop_driver()
            line = _first_line(err)
            if any(marker in str(err) for marker in _IN_USE):
                raise ProfileInUse(f"the browser profile is in use by another browser: {self.profile_dir}",
                                   "quit the other Linda Desktop or browser using it, then retry") from None
            raise BrowserLaunchFailed(f"the browser did not start: {line}",
                                      "check the browser path (--browser) or reinstall the browser") from None
        except BaseException:
            await self._stop_driver()
            raise
        self._context.on("close", lambda _ctx: self._died("browser closed"))
        self._version = self._context.browser.version if self._context.browser else None
        self._pid = await self._find_pid()
        log.info("browser started: pid=%s version=%s headless=%s", self._pid, self._version, self.headless)
        page = self._context.pages[0] if self._context.pages else await self._context.new_page()
        self._adopt(page)
        await self._goto()

    def _adopt(self, page: Page) -> None:
        self._page = page
        page.on("crash", lambda _p: self._died("page crashed"))

    async def _goto(self) -> None:
        assert self._page is not None
        try:
            await self._page.goto(self.url, wait_until="domcontentloaded", timeout=NAV_TIMEOUT_MS)
            self._nav_error = None
            self._retry_delay = self._retry_first
        except PlaywrightError as err:
            self._nav_error = _first_line(err)
            self._retry_at = asyncio.get_running_loop().time() + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, 60.0)
            log.warning("could not open %s: %s", self.url, self._nav_error)

    async def _find_pid(self) -> int | None:
        assert self._context is not None
        try:
            if self._context.browser is not None:
                session = await self._context.browser.new_browser_cdp_session()
                try:
                    info = await session.send("SystemInfo.getProcessInfo")
                finally:
                    await session.detach()
                for proc in info.get("processInfo", []):
                    if proc.get("type") == "browser":
                        return int(proc["id"])
        except PlaywrightError as err:
            log.debug("no browser pid from CDP: %s", _first_line(err))
        return _pid_from_proc(self.profile_dir)

    def _died(self, why: str) -> None:
        if self._closing or self._crashed:
            return
        self._crashed = True
        log.warning("browser died unexpectedly (%s), pid=%s", why, self._pid)
        if self.on_crash is not None:
            try:
                self.on_crash()
            except Exception:  # a callback bug must not break the Playwright event loop
                log.exception("on_crash callback failed")

    # ------------------------------------------------------------------ reading the page
    async def snapshot(self) -> PageSnapshot:
        page = self._page
        if self._crashed:
            return PageSnapshot(PageState.UNKNOWN, reason="browser_crashed")
        if page is None or self._closing or page.is_closed():
            return PageSnapshot(PageState.UNKNOWN, reason="browser_closed")
        url = page.url
        if url.startswith("chrome-error://") or (self._nav_error and not url.startswith("http")):
            return PageSnapshot(PageState.OFFLINE, reason=f"unreachable: {self._nav_error or 'navigation failed'}")
        raw: Any = None
        for _ in range(5):
            try:
                raw = await asyncio.wait_for(page.evaluate(PROBE_JS, self._probe_cfg), 10)
                break
            except asyncio.TimeoutError:
                return PageSnapshot(PageState.UNKNOWN, reason="page_unresponsive")
            except PlaywrightError as err:
                if self._crashed or page.is_closed():
                    return PageSnapshot(PageState.UNKNOWN, reason="browser_closed")
                log.debug("probe retry: %s", _first_line(err))  # mid-navigation: context destroyed
                await asyncio.sleep(0.1)
        else:
            return PageSnapshot(PageState.LOADING, reason="navigating")
        return classify(raw, page.url, self.selectors)

    async def wait_for_change(self, previous: PageSnapshot | None, timeout: float,
                              poll: float = POLL_SECONDS) -> PageSnapshot:
        """Returns as soon as the state, QR payload, reason or post_logout flag differs from
        ``previous`` (at once when previous is None), else the last reading after ``timeout``.
        ``poll``: seconds between readings (short while starting up, longer while idle).
        A page stuck on a browser error page (no network) is reloaded with back-off."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        while True:
            snap = await self.snapshot()
            if _differs(previous, snap) or loop.time() >= deadline or self._crashed or self._page is None:
                return snap
            if self._nav_error and loop.time() >= self._retry_at and not self._closing:
                await self._goto()
                continue
            await asyncio.sleep(min(poll, max(0.0, deadline - loop.time())))

    async def wait_for_state(self, *states: PageState, timeout: float) -> PageSnapshot:
        """Waits until the page is in one of ``states``; returns the last reading either way."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        snap: PageSnapshot | None = None
        while True:
            snap = await self.wait_for_change(snap, max(0.0, deadline - loop.time()))
            if snap.state in states or loop.time() >= deadline or self._crashed:
                return snap

    async def wait_until_settled(self, timeout: float) -> PageSnapshot:
        """Waits while the page is loading or unrecognised; returns the first other reading
        (or the last one at ``timeout``)."""
        settled = [s for s in PageState if s not in (PageState.LOADING, PageState.UNKNOWN)]
        return await self.wait_for_state(*settled, timeout=timeout)

    # ------------------------------------------------------------------ actions
    async def _click_first(self, selectors: Sequence[str], what: str) -> bool:
        page = self._page
        if page is None or self._crashed or self._closing:
            return False
        for selector in selectors:
            try:
                target = page.locator(selector).first
                if await target.count() and await target.is_visible():
                    await target.click(timeout=5_000)
                    log.info("clicked %s", what)
                    return True
            except PlaywrightError as err:
                log.debug("click %s via %s failed: %s", what, selector, _first_line(err))
        return False

    async def click_use_here(self) -> bool:
        """Takes the session over in the conflict dialog. True when the button was clicked."""
        return await self._click_first(self.selectors.use_here, "'Use here'")

    async def reload_qr(self) -> bool:
        """Clicks the idle QR's reload button (only while the owner has the QR window open)."""
        return await self._click_first(self.selectors.reload_qr, "'reload QR'")

    async def reload(self) -> None:
        """Opens ``url`` afresh (drops ``post_logout`` parameters a logout left in the URL)."""
        if self._page is not None and not self._crashed:
            await self._goto()

    async def flush_storage(self, *, reopen: bool = True) -> None:
        """Best effort: make the page's localStorage reach the disk now.

        ``reopen`` (default): open a blank tab, close the WhatsApp tab (Chromium commits an
        origin's localStorage as soon as no page uses it), then load WhatsApp again in the new
        tab — the page reloads. ``reopen=False``: just wait 6 s (Chromium's commit delay)."""
        if self._context is None or self._crashed or self._closing:
            return
        if not reopen:
            await asyncio.sleep(6.0)
            return
        old = self._page
        fresh = await self._context.new_page()
        self._adopt(fresh)
        if old is not None and not old.is_closed():
            await old.close()
        await asyncio.sleep(0.2)
        await self._goto()
        log.info("storage flushed (page reopened)")

    # ------------------------------------------------------------------ closing
    async def close(self, timeout: float = 15.0) -> None:
        """Closes the browser cleanly (this flushes the profile). Safe to call twice; if the
        browser does not close within ``timeout`` it is killed."""
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._close(timeout))
        await asyncio.shield(self._close_task)

    async def _close(self, timeout: float) -> None:
        self._closing = True
        context, self._context = self._context, None
        if context is not None:
            # After a renderer crash the browser may still live: close it cleanly if it can.
            try:
                await asyncio.wait_for(context.close(), min(timeout, 5.0) if self._crashed else timeout)
                log.info("browser closed: pid=%s", self._pid)
            except (asyncio.TimeoutError, PlaywrightError) as err:
                log.warning("browser did not close cleanly (%s); killing pid %s",
                            _first_line(err) if str(err) else "timeout", self._pid)
                self._kill()
        self._page = None
        await self._stop_driver()

    def _kill(self) -> None:
        if self._pid is None:
            return
        try:
            os.kill(self._pid, getattr(signal, "SIGKILL", signal.SIGTERM))
        except (ProcessLookupError, PermissionError, OSError):
            pass

    async def _stop_driver(self) -> None:
        pw, self._pw = self._pw, None
        if pw is not None:
            try:
                await asyncio.wait_for(pw.stop(), 10)
            except (asyncio.TimeoutError, PlaywrightError, OSError) as err:
                log.debug("playwright driver stop: %r", err)


def _pid_from_proc(profile_dir: Path) -> int | None:
    """Linux fallback: the main browser process (no ``--type=``) running on this profile."""
    from linda_desktop.session.profile import find_browser_processes

    for pid in find_browser_processes(profile_dir):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"--type=" not in cmdline:
            return pid
    return None
