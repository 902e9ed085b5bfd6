"""WhatsAppPage: one Chromium on the app's profile showing WhatsApp Web, read as ``PageSnapshot``s.

How the page is read (issues 10 and 13): an init script (js/watch.js, see browser/watch.py)
runs in every page. It waits for WhatsApp to boot before touching its modules, then listens
to ``Socket`` / ``Stream`` / ``Conn``; a MutationObserver covers the DOM fallback (never the chat
list or an open chat). Each change is PUSHED through one binding; ``classify`` turns a reading
into a snapshot (internal state first, DOM markers of resources/selectors.json as the fallback).
Nothing walks the DOM on a timer: a safety-net read every ``safety_net_seconds`` (>= 30 s) only
checks that the page still answers. The in-page logout reason is captured before WhatsApp's
reload and reported with the URL code in ``PageSnapshot.logout``.

Three ways to run: headless (the default), a real window kept out of sight
(``hidden_window=True``, for linking on a desktop: ``show_window`` brings that same window on
screen for the passkey step), or a plain visible window (``headless=False``).

Storage flush (measured with SIGKILL trials on Chromium 156): IndexedDB reaches the disk at
once; localStorage only ~5 s later, or as soon as no page of the origin is open any more
(Chromium then commits the origin's storage area immediately). ``flush_storage`` therefore
opens a blank tab, closes the WhatsApp tab, and opens WhatsApp again in the new tab; a clean
``close`` flushes everything too. Navigating the same tab to about:blank does NOT flush.

QR payloads and pairing codes are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import BrowserContext, Page, Playwright
from playwright.async_api import Error as PlaywrightError

from linda_desktop.base.errors import BrowserLaunchFailed, ProfileInUse
from linda_desktop.base.events import PageSnapshot, PageState
from linda_desktop.base.phone import PhoneNumberError, normalize_phone
from linda_desktop.browser import driver, watch
from linda_desktop.browser.classify import classify, differs, format_code, logout_info
from linda_desktop.browser.discovery import browser_version as read_browser_version
from linda_desktop.browser.discovery import platform_key
from linda_desktop.browser.protocol import PairingCodeFailed
from linda_desktop.browser.selectors import Action, Selectors, default_selectors
from linda_desktop.browser.tabs import forget_open_tabs
from linda_desktop.browser.window import LAUNCH_ARGS as HIDDEN_WINDOW_ARGS
from linda_desktop.browser.window import Window
from linda_desktop.system.processes import main_browser_pid

log = logging.getLogger(__name__)

VIEWPORT = {"width": 1280, "height": 800}
LAUNCH_ARGS = (
    "--disable-blink-features=AutomationControlled",  # navigator.webdriver stays false
    "--hide-crash-restore-bubble",                    # no "Restore pages?" after a kill
    "--no-default-browser-check",
    "--disable-search-engine-choice-screen",
)
NAV_TIMEOUT_MS = 60_000
SAFETY_NET_SECONDS = 30.0
READ_TIMEOUT_SECONDS = 10.0
URL_SETTLE_SECONDS = 1.0
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


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    for line in text.splitlines():
        line = line.strip().lstrip("=").strip()
        if line and not line.startswith("Browser logs") and not line.startswith("Call log"):
            return line[:300]
    return type(err).__name__


def _same_origin(a: str, b: str) -> bool:
    x, y = urlsplit(a), urlsplit(b)
    return (x.scheme, x.netloc) == (y.scheme, y.netloc)


class WhatsAppPage:
    """One browser on ``profile_dir`` showing ``url``. Use on a single asyncio loop.

    ``headless`` (default) or, for linking on a desktop, ``hidden_window=True``: a real window
    kept out of sight that ``show_window`` brings on screen. ``headless=False`` alone: a plain
    visible window."""

    def __init__(self, profile_dir: Path, url: str, executable: str, *, headless: bool = True,
                 hidden_window: bool = False, selectors: Selectors | None = None,
                 on_crash: Callable[[], None] | None = None, user_agent: str | None = None,
                 extra_args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                 viewport: Mapping[str, int] | None = None, nav_retry_seconds: float = 5.0,
                 safety_net_seconds: float = SAFETY_NET_SECONDS) -> None:
        self.profile_dir = Path(profile_dir)
        self.url = url
        self.executable = executable
        self.hidden_window = hidden_window
        self.headless = headless and not hidden_window
        self.selectors = selectors or default_selectors()
        self.on_crash = on_crash
        self.user_agent = user_agent
        self.extra_args = tuple(extra_args)
        self.env = dict(env) if env is not None else None
        self.viewport = dict(viewport or VIEWPORT)
        self.safety_net_seconds = max(30.0, safety_net_seconds)
        # Awaited with the new context before the first navigation: the bot bridge's init scripts
        # (browser/messaging.py), so they run before WhatsApp's own scripts.
        self.on_context: Callable[[BrowserContext], Awaitable[None]] | None = None
        self._pw: Playwright | None = None
        self._driver_pid: int | None = None
        self._context: BrowserContext | None = None
        self._page: Page | None = None
        self._window: Window | None = None
        self._visible = False
        self._pid: int | None = None
        self._version: str | None = None
        self._crashed = False
        self._closing = False
        self._close_task: asyncio.Task[None] | None = None
        self._nav_error: str | None = None
        self._retry_at = 0.0
        self._retry_first = nav_retry_seconds
        self._retry_delay = nav_retry_seconds
        self._reading: Mapping[str, Any] | None = None
        self._logout_reason: str | None = None
        self._logout_doc: Any = None
        self._changed: asyncio.Event | None = None
        self._last_answer = 0.0
        self._pushes = 0
        self._reads = 0
        self._extra_tabs_closed = 0
        self._tasks: set[asyncio.Future[None]] = set()
        self._version_task: asyncio.Future[str | None] | None = None
        self._moved_at = 0.0

    # ------------------------------------------------------------------ properties
    @property
    def crashed(self) -> bool:
        return self._crashed

    @property
    def browser_pid(self) -> int | None:
        return self._pid

    @property
    def driver_pid(self) -> int | None:
        """The Playwright driver's pid (it runs in its own session: see browser/driver.py)."""
        return self._driver_pid

    @property
    def browser_version(self) -> str | None:
        return self._version

    @property
    def page(self) -> Page | None:
        """The Playwright page (bot bridge, tests). None before start / after close."""
        return self._page

    @property
    def running(self) -> bool:
        return self._context is not None and not self._crashed and not self._closing

    @property
    def visible(self) -> bool:
        """True while the window is on screen: a visible window, or a hidden one after ``show_window``."""
        return self._visible and self.running

    @property
    def pushes(self) -> int:
        """How many readings the page pushed (tests: no churn while nothing changes)."""
        return self._pushes

    @property
    def reads(self) -> int:
        """How many times the app read the page itself (``snapshot``, the safety net): tests
        prove that transitions arrive as pushes, not reads."""
        return self._reads

    @property
    def extra_tabs_closed(self) -> int:
        return self._extra_tabs_closed

    # ------------------------------------------------------------------ launch
    async def _resolve_user_agent(self) -> str:
        if self.user_agent:
            return self.user_agent
        cached = _UA_CACHE.get(self.executable)
        if cached:
            return cached
        version = await self._version_task if self._version_task is not None else \
            await asyncio.to_thread(read_browser_version, self.executable)
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

    def _launch_options(self, ua: str) -> dict[str, Any]:
        args = [*LAUNCH_ARGS, *self.extra_args]
        options: dict[str, Any] = dict(
            executable_path=self.executable, headless=self.headless, user_agent=ua,
            service_workers="block", timeout=NAV_TIMEOUT_MS,
            # The app handles its own signals: it flushes and closes the browser itself.
            handle_sigint=False, handle_sigterm=False, handle_sighup=False,
        )
        if self.headless:
            options["viewport"] = self.viewport
        else:
            # A real window: its own size (an emulated viewport larger than the window would
            # look like a frameless headless window to the page), no "controlled" infobar.
            options["no_viewport"] = True
            options["ignore_default_args"] = ["--enable-automation"]
            if self.hidden_window:
                args += HIDDEN_WINDOW_ARGS
        options["args"] = args
        if self.env is not None:
            options["env"] = self.env
        return options

    async def start(self) -> None:
        """Launch the browser on the profile and open the WhatsApp URL.

        Raises ProfileInUse (another browser holds the profile) or BrowserLaunchFailed.
        A URL that cannot be reached does not raise: the snapshot says OFFLINE."""
        if self._context is not None:
            raise RuntimeError("WhatsAppPage already started")
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        forgotten = await asyncio.to_thread(forget_open_tabs, self.profile_dir)
        if forgotten:
            log.info("forgot the tabs of the last run: %s", ", ".join(forgotten))
        self._changed = asyncio.Event()
        # Start-up path kept as short as the bare floor: the browser's version (for the user
        # agent) is read while the driver starts, the binding and the script go in together.
        if not self.user_agent and self.executable not in _UA_CACHE:
            self._version_task = asyncio.ensure_future(asyncio.to_thread(read_browser_version, self.executable))
        self._pw, self._driver_pid = await driver.start(lambda: self._died("driver gone"))
        try:
            ua = await self._resolve_user_agent()
            self._context = await self._pw.chromium.launch_persistent_context(
                str(self.profile_dir), **self._launch_options(ua))
            await asyncio.gather(self._context.expose_binding(watch.BINDING, self._on_push),
                                 self._context.add_init_script(script=watch.watcher_source(self.selectors)))
            if self.on_context is not None:
                await self.on_context(self._context)
        except PlaywrightError as err:
            await self._abandon_launch()
            line = _first_line(err)
            if any(marker in str(err) for marker in _IN_USE):
                raise ProfileInUse(f"the browser profile is in use by another browser: {self.profile_dir}",
                                   "quit the other Linda Desktop or browser using it, then retry",
                                   pid=main_browser_pid(self.profile_dir)) from None
            raise BrowserLaunchFailed(f"the browser did not start: {line}",
                                      "check the browser path (--browser) or reinstall the browser") from None
        except BaseException:
            await self._abandon_launch()
            raise
        self._context.on("close", lambda _ctx: self._died("browser closed"))
        self._version = self._context.browser.version if self._context.browser else None
        pid_task = asyncio.ensure_future(self._find_pid())   # answered while the page loads
        pages = list(self._context.pages)
        page = pages[0] if pages else await self._context.new_page()
        for extra in pages[1:]:
            await self._close_extra(extra)
        self._context.on("page", self._on_new_page)
        self._adopt(page)
        if not self.headless:
            self._window = Window(page)
            if self.hidden_window:
                await self._window.hide()
            self._visible = not self.hidden_window
        await self._goto()
        self._pid = await pid_task
        mode = "hidden window" if self.hidden_window else ("headless" if self.headless else "visible")
        log.info("browser started: pid=%s version=%s %s", self._pid, self._version, mode)

    async def _abandon_launch(self) -> None:
        context, self._context = self._context, None
        if context is not None:
            try:
                await context.close()
            except PlaywrightError:
                pass
        await self._stop_driver()

    def _adopt(self, page: Page) -> None:
        self._page = page
        self._reading = None
        page.on("crash", lambda _p: self._died("page crashed"))
        page.on("framenavigated", self._on_navigated)

    async def _close_extra(self, page: Page) -> None:
        """A tab Chromium restored (or the page opened) beside ours: one WhatsApp page per profile."""
        try:
            await page.close()
            self._extra_tabs_closed += 1
            log.info("closed an extra browser tab")
        except PlaywrightError as err:
            log.debug("could not close an extra tab: %s", _first_line(err))

    def _on_new_page(self, page: Page) -> None:
        if page is self._page or self._closing:
            return

        def check(_frame: Any = None) -> None:
            if page is not self._page and not page.is_closed() and _same_origin(page.url, self.url):
                task = asyncio.ensure_future(self._close_extra(page))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

        check()
        page.on("framenavigated", check)

    def _on_navigated(self, frame: Any) -> None:
        page = self._page
        if page is None or frame is not page.main_frame:
            return
        # A reading whose href is not the page's URL any more counts as "navigating" (see
        # _current) until the page pushes again: a new document at once, the same document
        # when its watcher sees the URL change (history API).
        self._moved_at = asyncio.get_running_loop().time()
        self._wake()

    async def _goto(self) -> None:
        assert self._page is not None
        self._reading = None   # the same URL again: the old document's reading is over
        try:
            await self._page.goto(self.url, wait_until="domcontentloaded", timeout=NAV_TIMEOUT_MS)
            self._nav_error = None
            self._retry_delay = self._retry_first
        except PlaywrightError as err:
            self._nav_error = _first_line(err)
            self._retry_at = asyncio.get_running_loop().time() + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, 60.0)
            log.warning("could not open %s: %s", self.url, self._nav_error)
        self._wake()

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
        return await asyncio.to_thread(main_browser_pid, self.profile_dir)

    def _died(self, why: str) -> None:
        if self._closing or self._crashed:
            return
        self._crashed = True
        self._wake()
        log.warning("browser died unexpectedly (%s), pid=%s", why, self._pid)
        if self.on_crash is not None:
            try:
                self.on_crash()
            except Exception:  # a callback bug must not break the Playwright event loop
                log.exception("on_crash callback failed")

    # ------------------------------------------------------------------ what the page pushes
    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _on_push(self, source: Mapping[str, Any], kind: Any, data: Any = None) -> None:
        """The binding: the page reports a new reading or a logout reason (js/watch.js)."""
        page = source.get("page") if isinstance(source, Mapping) else None
        frame = source.get("frame") if isinstance(source, Mapping) else None
        if page is None or self._page is None or page is not self._page or frame is not self._page.main_frame:
            return
        self._last_answer = asyncio.get_running_loop().time()
        if kind == "reading":
            reading = watch.reading(data)
            if reading is not None:
                self._pushes += 1
                self._take(reading)
        elif kind == "logout":
            reason = watch.logout_reason(data)
            if reason:
                self._logout_reason = reason
                self._logout_doc = data.get("doc")
                log.info("the page is logging out (WhatsApp's reason: %s)", reason)
                self._wake()

    def _take(self, reading: Mapping[str, Any]) -> None:
        self._reading = reading
        internal = reading.get("internal")
        if self._logout_reason is None:
            kept = reading.get("logout")
            self._logout_reason = watch.logout_reason(kept)
            self._logout_doc = kept.get("doc") if isinstance(kept, Mapping) else None
        elif isinstance(internal, Mapping) and internal.get("state") == "CONNECTED" and \
                reading.get("doc") != self._logout_doc:
            self._logout_reason = None   # a later page is connected: that logout is over
        self._wake()

    def _url_moved(self) -> bool:
        page = self._page
        return page is not None and self._reading is not None and self._reading.get("href") != page.url

    def _current(self) -> PageSnapshot:
        """The snapshot from what the page last pushed (no round trip)."""
        page = self._page
        if self._crashed or page is None or self._closing or page.is_closed():
            return PageSnapshot(PageState.UNKNOWN)
        url = page.url
        if url.startswith("chrome-error://") or (self._nav_error and not url.startswith("http")):
            return PageSnapshot(PageState.OFFLINE)
        if self._reading is None or self._reading.get("href") != url:
            return PageSnapshot(PageState.LOADING, logout=logout_info(url, self.selectors, self._logout_reason))
        return classify(self._reading, self.selectors, url=url, logout_reason=self._logout_reason)

    # ------------------------------------------------------------------ reading the page
    async def _evaluate(self, script: str, arg: Any = None) -> Any:
        assert self._page is not None
        return await asyncio.wait_for(self._page.evaluate(script, arg), READ_TIMEOUT_SECONDS)

    async def snapshot(self) -> PageSnapshot:
        """Read the page now (one round trip; installs the watcher in a page that lacks it)."""
        page = self._page
        current = self._current()
        if page is None or self._crashed or (current.state is PageState.OFFLINE and self._reading is None):
            return current
        for _ in range(5):
            try:
                self._reads += 1
                raw = await self._evaluate(watch.READ_JS)
                if raw is None and page.url.startswith("http"):
                    await self._evaluate(watch.watcher_source(self.selectors))
                    raw = await self._evaluate(watch.READ_JS)
                self._last_answer = asyncio.get_running_loop().time()
                reading = watch.reading(raw)
                if reading is not None:
                    self._take(reading)
                return self._current()
            except asyncio.TimeoutError:
                log.warning("the page did not answer within %.0f s", READ_TIMEOUT_SECONDS)
                return PageSnapshot(PageState.UNKNOWN)
            except PlaywrightError as err:
                if self._crashed or page.is_closed():
                    return PageSnapshot(PageState.UNKNOWN)
                log.debug("read retry: %s", _first_line(err))  # mid-navigation: context destroyed
                await asyncio.sleep(0.1)
        return self._current()

    async def wait_for_change(self, previous: PageSnapshot | None, timeout: float,
                              poll: float | None = None) -> PageSnapshot:
        """Returns as soon as the reading differs from ``previous`` (state, QR payload, synced,
        logout, link step, codes, account; not the loading percentage), else the last reading
        after ``timeout``. Event-driven: it sleeps until the page pushes a change. A page stuck
        on the browser's error page (no network) is reloaded with back-off. ``poll`` is
        accepted for old callers and ignored."""
        del poll
        if previous is None and self._reading is None:
            return await self.snapshot()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        while True:
            if self._changed is not None:
                self._changed.clear()
            snap = self._current()
            now = loop.time()
            # The URL moved on and the page has not pushed yet: wait for it a moment rather
            # than report a "loading" flicker (a new document pushes within milliseconds).
            settling = self._url_moved() and now < self._moved_at + URL_SETTLE_SECONDS
            if (differs(previous, snap) and not settling) or now >= deadline or self._crashed or self._page is None:
                return snap
            if self._nav_error and now >= self._retry_at and not self._closing:
                await self._goto()
                continue
            if now - self._last_answer >= self.safety_net_seconds and not self._nav_error:
                snap = await self.snapshot()   # the safety net: does the page still answer?
                if differs(previous, snap):
                    return snap
                continue
            wake_at = min(deadline, self._last_answer + self.safety_net_seconds)
            if settling:
                wake_at = min(wake_at, self._moved_at + URL_SETTLE_SECONDS)
            if self._nav_error:
                wake_at = min(wake_at, self._retry_at)
            assert self._changed is not None
            try:
                await asyncio.wait_for(self._changed.wait(), max(0.0, wake_at - now))
            except asyncio.TimeoutError:
                pass

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
        """Waits while the page is loading, resuming or unrecognised; returns the first other
        reading (or the last one at ``timeout``)."""
        busy = (PageState.LOADING, PageState.RESUMING, PageState.UNKNOWN)
        return await self.wait_for_state(*[s for s in PageState if s not in busy], timeout=timeout)

    # ------------------------------------------------------------------ actions
    async def _act(self, name: str, arg: Any = None, timeout: float = READ_TIMEOUT_SECONDS) -> Mapping[str, Any]:
        page = self._page
        if page is None or self._crashed or self._closing:
            return {"ok": False, "why": "no_page"}
        try:
            result = await asyncio.wait_for(page.evaluate(watch.ACT_JS, [name, arg]), timeout)
        except (asyncio.TimeoutError, PlaywrightError) as err:
            return {"ok": False, "why": "error", "message": _first_line(err) if str(err) else "timeout"}
        return result if isinstance(result, Mapping) else {"ok": False, "why": "bad_answer"}

    async def _click_first(self, selectors: Sequence[str], what: str) -> bool:
        page = self._page
        if page is None or self._crashed or self._closing:
            return False
        for selector in selectors:
            try:
                target = page.locator(selector).locator("visible=true").first
                if await target.count():
                    await target.click(timeout=5_000)
                    log.info("clicked %s", what)
                    return True
            except PlaywrightError as err:
                log.debug("click %s via %s failed: %s", what, selector, _first_line(err))
        return False

    async def _click(self, action: Action, what: str) -> bool:
        return await self._click_first(action.playwright_selectors(), what)

    async def take_over(self) -> bool:
        """Conflict: use the session here. ``Socket.takeover()`` (no language needed), the
        "Use here" button (any language of selectors.json) only as the fallback. False when
        the page is not in conflict or nothing worked."""
        if self._current().state is not PageState.CONFLICT:
            await self.snapshot()
            if self._current().state is not PageState.CONFLICT:
                return False
        result = await self._act("takeover")
        if result.get("ok"):
            log.info("took the session over (Socket.takeover)")
            return True
        log.info("Socket.takeover unavailable (%s): clicking instead", result.get("why"))
        return await self._click(self.selectors.use_here_action, "'Use here'")

    async def refresh_qr(self) -> bool:
        """The QR list ran out: ``Cmd.refreshQR()``, the reload button as the fallback."""
        if self._current().state not in (PageState.QR_IDLE, PageState.QR):
            await self.snapshot()
            if self._current().state not in (PageState.QR_IDLE, PageState.QR):
                return False
        result = await self._act("refreshQR")
        if result.get("ok"):
            log.info("asked for new QR codes (Cmd.refreshQR)")
            return True
        return await self._click(self.selectors.reload_qr_action, "'reload QR'")

    # The names the service used before the Page protocol (kept while it moves over).
    click_use_here = take_over
    reload_qr = refresh_qr

    async def request_pairing_code(self, phone: str, timeout: float = 30.0) -> str:
        """An 8-character code ("ABCD-EFGH") to type on the phone instead of scanning the QR.
        wa-js ``WPP.conn.genLinkDeviceCodeForPhoneNumber`` where the page has it, else the
        page's own "Link with phone number instead" form. Raises PairingCodeFailed."""
        try:
            digits = normalize_phone(phone)
        except PhoneNumberError as exc:
            raise PairingCodeFailed(f"not a phone number with its country code: {phone!r}", exc.message) from None
        result = await self._act("pairingCode", digits, timeout=timeout)
        code = format_code(result.get("code")) if result.get("ok") else None
        if code:
            log.info("pairing code received (WPP.conn)")
            return code
        if result.get("why") == "error":   # WhatsApp answered, and said no: the form would too
            why = str(result.get("message") or "refused")[:120]
            log.info("WPP.conn.genLinkDeviceCodeForPhoneNumber failed: %s", why)
            raise PairingCodeFailed(f"WhatsApp gave no pairing code for this number ({why})",
                                    "check the number (with its country code), or scan the QR code")
        return await self._pairing_code_by_form(digits, timeout)

    async def _pairing_code_by_form(self, digits: str, timeout: float) -> str:
        page = self._page
        if page is None or self._crashed:
            raise PairingCodeFailed("the browser is not running", "start the app again")
        snap = await self.snapshot()
        if snap.state is PageState.PAIRING_CODE and snap.pairing_code:
            return snap.pairing_code
        if snap.state not in (PageState.QR, PageState.QR_IDLE) and \
                not await page.locator(",".join(self.selectors.pairing["phone_input"])).count():
            raise PairingCodeFailed(f"the page offers no pairing code now (it shows {snap.state.value})",
                                    "ask for it while the QR code is shown")
        inputs = ",".join(self.selectors.pairing["phone_input"])
        if not await page.locator(inputs).locator("visible=true").count() and \
                not await self._click(self.selectors.pairing_link, "'Link with phone number instead'"):
            raise PairingCodeFailed("the page has no 'Link with phone number' option",
                                        "scan the QR code instead")
        field = page.locator(inputs).locator("visible=true").first
        try:
            await field.wait_for(timeout=10_000)
            await field.fill("")
            await field.press_sequentially("+" + digits if await field.get_attribute("type") == "tel" else digits)
        except PlaywrightError as err:
            raise PairingCodeFailed(f"could not enter the phone number: {_first_line(err)}",
                                    "scan the QR code instead") from None
        if not await self._click(self.selectors.pairing_next, "'Next'"):
            await field.press("Enter")
        done = await self.wait_for_state(PageState.PAIRING_CODE, timeout=timeout)
        if done.state is PageState.PAIRING_CODE and done.pairing_code:
            log.info("pairing code received (page form)")
            return done.pairing_code
        raise PairingCodeFailed("WhatsApp did not give a pairing code", "check the number, or scan the QR code")

    async def reload(self) -> None:
        """Opens ``url`` afresh (drops the logout parameters a logout left in the URL)."""
        if self._page is not None and not self._crashed:
            self._logout_reason = None
            key = self.selectors.logout.get("session_key", "__linda_logout")
            try:   # the kept reason belongs to the logout this reload leaves behind
                await self._evaluate("(key) => { try { sessionStorage.removeItem(key); } catch (e) {} }", key)
            except (asyncio.TimeoutError, PlaywrightError):
                pass
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
        if self._window is not None:
            await self._window.detach()
            self._window = Window(fresh)
            if not self._visible:
                await self._window.hide()
        await asyncio.sleep(0.2)
        await self._goto()
        log.info("storage flushed (page reopened)")

    # ------------------------------------------------------------------ the window
    async def show_window(self) -> bool:
        """Brings the window kept out of sight on screen (the passkey step). False when the
        browser is headless (no window to show)."""
        if self._window is None or not self.running:
            return False
        if await self._window.show():
            self._visible = True
            log.info("browser window brought on screen")
            return True
        return False

    async def hide_window(self) -> None:
        """Moves the window out of sight again (a no-op when headless)."""
        if self._window is None or not self.running:
            return
        if await self._window.hide():
            self._visible = False
            log.info("browser window moved out of sight")

    async def window_on_screen(self) -> bool:
        """What the window manager says (tests): the window's bounds are inside the screen."""
        return self._window is not None and self.running and await self._window.on_screen()

    # ------------------------------------------------------------------ closing
    async def close(self, timeout: float = 15.0) -> None:
        """Closes the browser cleanly (this flushes the profile). Safe to call twice; if the
        browser does not close within ``timeout`` it is killed."""
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._close(timeout))
        await asyncio.shield(self._close_task)

    async def _close(self, timeout: float) -> None:
        self._closing = True
        self._wake()
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
        self._window = None
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
