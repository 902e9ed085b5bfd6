"""SessionService: the recovery state machine (DESIGN.md §4). Qt-free, runs on one asyncio loop.

The service owns the browser and the profile while it runs. It reports everything it does as
Events (base/events.py) to ``on_event``; the CLI prints them as JSON lines, the tray turns them
into icons, windows and notifications.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Awaitable, Callable, TypeVar

from linda_desktop import __version__
from linda_desktop.service import recovery
from linda_desktop.base.errors import (
    BackupCorrupt,
    BrowserLaunchFailed,
    BrowserNotFound,
    KeyringUnavailable,
    LindaError,
    NoBackups,
    ProfileInUse,
    WrongKey,
)
from linda_desktop.base.events import (
    BackupMade,
    Event,
    Notice,
    PageSnapshot,
    PageState,
    QrCode,
    Restored,
    SessionState,
    StateChanged,
)
from linda_desktop.base.settings import Settings
from linda_desktop.base.paths import AppPaths

log = logging.getLogger(__name__)

EventSink = Callable[[Event], None]
T = TypeVar("T")

# Page states in which the page has finished loading and shows something to act on.
SETTLED = {PageState.QR, PageState.QR_IDLE, PageState.CONNECTED, PageState.CONFLICT,
           PageState.OFFLINE, PageState.PASSKEY, PageState.UNSUPPORTED}
CRASH_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
VISIBLE_LINK_TIMEOUT_SECONDS = 600.0
SETTLE_POLL_SECONDS = 0.05
BUSY_POLL_SECONDS = 0.15
IDLE_POLL_SECONDS = 0.5
TAKEOVER_WINDOW_SECONDS = 600.0
MAX_TAKEOVERS_PER_WINDOW = 3
LINK_STALLED_REASON = ("link_stalled: the phone scanned the code but WhatsApp asks to finish "
                       "linking on this computer (passkey step), which needs a visible browser window")


class SessionService:
    """Keeps one WhatsApp Web session alive.

    ``on_event`` is called on the service's loop thread for every Event (StateChanged, QrCode,
    BackupMade, Restored, Notice). UI code must hop to its own thread (Qt signal).
    All ``async`` commands must be awaited on the service's loop (use
    ``asyncio.run_coroutine_threadsafe(service.backup_now(), service.loop)`` from other threads).
    """

    def __init__(self, paths: AppPaths, settings: Settings, *, wa_url: str,
                 browser: str | None, on_event: EventSink, background: bool = False) -> None:
        from linda_desktop.session.state import SessionStateStore

        self.paths = paths
        self.settings = settings
        self.wa_url = wa_url
        self.browser = browser
        self.on_event = on_event
        self.background = background
        self.state: SessionState = SessionState.STARTING
        self.reason: str | None = None
        self.account: str | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.fatal_error: LindaError | None = None
        self.meta = SessionStateStore(paths.state_file)
        self._page: Any = None  # browser.whatsapp.WhatsAppPage
        self._browser_path: str | None = None
        self._browser_version: str | None = None
        self._store: Any = None  # session.backup.BackupStore, None without a key
        self._key_error: LindaError | None = None
        self._key_error_reported = False
        self._lock: asyncio.Lock | None = None
        self._stop: asyncio.Event | None = None
        self._last_qr: str | None = None
        self._qr_idle_sent = False
        self._pairing_since: float | None = None
        self._link_backup_at: float | None = None
        self._next_periodic: float | None = None
        self._unsettled_since: float | None = None
        self._was_connected = False
        self._stop_requested_early = False

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Recover, then supervise until ``request_stop``; on stop: flush, back up, close."""
        self.loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        if self._stop_requested_early:
            self._stop.set()
        self._set_state(SessionState.STARTING)
        try:
            self.paths.ensure_all()
            # The key (a D-Bus round trip) and the browser's version (a subprocess) are fetched
            # while the profile is checked and the browser starts: start-up is the bench's target.
            self._store_task = asyncio.create_task(asyncio.to_thread(self._open_backup_store))
            if not self._find_browser():
                return  # fatal_error is set: `run` exits 1, the tray shows the error
            await asyncio.to_thread(self._read_browser_version)
            async with self._lock:
                await self._start_session()
                await self._store_ready()
            await self._supervise()
        except LindaError as exc:
            self.fatal_error = exc
            log.error("stopped: %s", exc)
            self._set_state(SessionState.ERROR, str(exc))
        finally:
            await self._shutdown()

    def request_stop(self) -> None:
        """Thread-safe: ask ``run`` to finish cleanly (back up, close the browser)."""
        if self.loop is None or self._stop is None:
            self._stop_requested_early = True
            return
        self.loop.call_soon_threadsafe(self._stop.set)

    @property
    def stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    # ------------------------------------------------------------------ events

    def _emit(self, event: Event) -> None:
        try:
            self.on_event(event)
        except Exception:  # a broken listener must never take the session down
            log.exception("event listener failed")

    def _set_state(self, state: SessionState, reason: str | None = None) -> None:
        if state == self.state and reason == self.reason and state != SessionState.STARTING:
            return
        previous = self.state
        self.state, self.reason = state, reason
        change = state.value if previous == state else f"{previous.value} -> {state.value}"
        log.info("state %s%s", change, f" ({reason})" if reason else "")
        if state in (SessionState.NEEDS_LINK,):
            self._last_qr = None
            self._qr_idle_sent = False
        self._emit(StateChanged(state, reason, self.account if state == SessionState.CONNECTED else None))

    def _notice(self, kind: str, message: str, **details: Any) -> None:
        log.warning("%s: %s", kind, message)
        self._emit(Notice(kind, message, details))

    # ------------------------------------------------------------------ set-up

    def _open_backup_store(self) -> None:
        from linda_desktop.session.backup import BackupStore
        from linda_desktop.session.keystore import KeyStore

        keystore = KeyStore(self.paths.passphrase_file)
        try:
            key = keystore.load_key(create=True)
        except (KeyringUnavailable, WrongKey) as exc:  # reported by _store_ready, on the loop
            self._key_error = exc
            self._store = None
            return
        self._store = BackupStore(self.paths.backups, key, keep=self.settings.keep_backups,
                                  work_dir=self.paths.work)
        log.info("backups: %s (%s)", self.paths.backups, keystore.backend_name())

    def _find_browser(self) -> bool:
        from linda_desktop.browser.discovery import find_browser

        try:
            info = find_browser(self.browser, extra_playwright_dirs=[self.paths.browsers])
        except BrowserNotFound as exc:
            self.fatal_error = exc
            self._notice("browser_missing", str(exc))
            self._set_state(SessionState.ERROR, str(exc))
            return False
        self._browser_path = str(info.path)
        log.info("browser: %s (%s)", self._browser_path, info.kind)
        return True

    def _read_browser_version(self) -> None:
        from linda_desktop.browser.discovery import browser_version

        self._browser_version = browser_version(self._browser_path or "")
        log.info("browser version: %s", self._browser_version or "unknown")

    async def _store_ready(self) -> Any:
        """The backup store once the key is loaded (None without a usable key)."""
        task = getattr(self, "_store_task", None)
        if task is not None:
            await task
            if self._key_error is not None and not self._key_error_reported:
                self._key_error_reported = True
                self._notice("keyring_unavailable", f"Backups are off: {self._key_error}")
        return self._store

    # ------------------------------------------------------------------ recovery

    def _backups_for_recovery(self) -> list[Any]:
        if self._store is None:
            return []
        try:
            backups = self._store.list()
        except LindaError as exc:
            log.warning("cannot list backups: %s", exc)
            return []
        return recovery.usable_backups(backups, self.meta.revoked_before())

    async def _start_session(self) -> None:
        """Launch and reach a steady state, restoring from backups in the order of DESIGN §4."""
        from linda_desktop.session import profile

        await asyncio.to_thread(self._clear_profile_locks)
        report = await asyncio.to_thread(profile.validate_profile, self.paths.profile, self.wa_url)
        expected = self.meta.linked()
        had_session = report.has_session or expected
        attempt = recovery.RecoveryAttempt(
            profile_damaged=(report.has_session and not report.ok) or (expected and not report.has_session))
        if attempt.profile_damaged:
            log.warning("live profile damaged: %s", "; ".join(report.problems) or "no session data")
        restored_from: str | None = None
        if attempt.profile_damaged:
            restored_from = await self._restore_next(attempt, "the live profile is damaged: "
                                                     + ("; ".join(report.problems) or "session data missing"))
        while not self.stopping:
            snap = await self._launch_and_settle()
            if snap.state == PageState.CONNECTED:
                await self._on_connected(snap, restored_from=restored_from, resumed=had_session)
                return
            if snap.state in (PageState.QR, PageState.QR_IDLE) and (had_session or attempt.restores_done):
                kind = recovery.classify_logout(snap.reason)
                if kind != "remote":
                    await self._close_page()
                    restored_from = await self._restore_next(
                        attempt, f"the page asked for a QR code although a session existed"
                                 f"{' (' + snap.reason + ')' if snap.reason else ''}")
                    if restored_from is not None:
                        continue
                await self._phone_removed(snap.reason, tried=attempt.restores_done)
                return
            await self._apply(snap)
            return

    async def _restore_next(self, attempt: recovery.RecoveryAttempt, why: str) -> str | None:
        """Restore the next candidate backup; None when none is left (or none restores)."""
        await self._store_ready()
        candidates = attempt.next_candidates(self._backups_for_recovery())
        if not candidates:
            return None
        self._set_state(SessionState.RESTORING, why)
        for backup in candidates:
            try:
                await self._restore_files(backup.id, why)
            except (BackupCorrupt, WrongKey) as exc:
                log.warning("backup %s cannot be restored: %s", backup.id, exc)
                self._notice("backup_unusable", f"Backup {backup.id} cannot be used: {exc}", id=backup.id)
                attempt.tried = (*attempt.tried, backup.id)
                continue
            attempt.record(backup.id)
            return backup.id
        return None

    async def _restore_files(self, backup_id: str, why: str) -> None:
        started = time.monotonic()
        await asyncio.to_thread(self._store.restore, backup_id, self.paths.profile)
        seconds = time.monotonic() - started
        await asyncio.to_thread(self._prune_replaced)
        log.info("restored backup %s in %.2f s (%s)", backup_id, seconds, why)
        self.meta.record("backup_restore", id=backup_id, seconds=round(seconds, 3), why=why)
        self._emit(Restored(backup_id, seconds, why))

    def _prune_replaced(self) -> None:
        """Profiles replaced by a restore are kept aside; keep the two newest, not every one."""
        from linda_desktop.session import profile

        profile.prune_quarantine(self.paths.work / "replaced-profiles", keep=2)

    async def _phone_removed(self, reason: str | None, *, tried: int) -> None:
        """The phone removed this computer: say so, archive the dead session, show a QR, stop retrying."""
        from linda_desktop.session import profile

        words = "This computer was unlinked from your phone"
        if reason:
            words += f" (WhatsApp said: {reason})"
        elif tried:
            words += f" (no backup brought the session back after {tried} restore attempt{'s' if tried > 1 else ''})"
        self._set_state(SessionState.LOGGED_OUT, words)
        self.meta.record("logged_out", reason=reason or "", restores_tried=tried)
        self.meta.mark_revoked()
        await self._close_page()
        if self.paths.profile.exists():
            archived = await asyncio.to_thread(profile.quarantine, self.paths.profile,
                                               self.paths.quarantine, f"logged out: {reason or 'unknown'}")
            log.info("archived the dead session to %s", archived)
        snap = await self._launch_and_settle()
        await self._apply(snap)

    async def _on_connected(self, snap: PageSnapshot, *, restored_from: str | None, resumed: bool) -> None:
        self.account = snap.account or self.account
        self._was_connected = True
        await self._store_ready()
        if resumed or restored_from:
            self.meta.record("restore", source=restored_from or "profile", account=self.account or "")
            if restored_from and self._store is not None:
                await asyncio.to_thread(self._store.mark_known_good, restored_from)
            elif self._store is not None:
                await asyncio.to_thread(self._confirm_exit_backup)
        self.meta.record("connected", account=self.account or "")
        self._set_state(SessionState.CONNECTED)
        self._schedule_periodic()

    def _confirm_exit_backup(self) -> None:
        """The profile came back connected as it was left at the last clean exit: the backup
        taken at that exit is proven good."""
        newest = self._store.newest()
        if newest is not None and newest.reason == "exit" and not newest.known_good:
            self._store.mark_known_good(newest.id)

    def _clear_profile_locks(self) -> None:
        from linda_desktop.session import profile

        killed = profile.terminate_orphan_browsers(self.paths.profile)
        if killed:
            log.warning("ended %d orphaned browser process(es) still holding our profile", len(killed))
        removed = profile.clear_stale_locks(self.paths.profile)
        if removed:
            log.info("removed stale browser locks: %s", ", ".join(removed))

    # ------------------------------------------------------------------ browser

    async def _launch(self, *, headless: bool = True) -> None:
        from linda_desktop.browser.whatsapp import WhatsAppPage

        self.paths.ensure(self.paths.profile)
        page = WhatsAppPage(self.paths.profile, self.wa_url, self._browser_path or "", headless=headless)
        try:
            await page.start()
        except ProfileInUse:
            await asyncio.to_thread(self._clear_profile_locks)
            await page.close()
            page = WhatsAppPage(self.paths.profile, self.wa_url, self._browser_path or "", headless=headless)
            await page.start()
        self._page = page
        await self._attach_bridge(page)  # bot API (issue 6): no-op unless messaging is enabled
        log.info("browser started (pid %s, %s)", page.browser_pid, "headless" if headless else "visible")

    async def _launch_and_settle(self) -> PageSnapshot:
        if self._page is None:
            await self._launch()
        return await self._settle(self.settings.page_timeout_seconds)

    async def _settle(self, timeout: float) -> PageSnapshot:
        """Wait until the page shows something to act on (or the timeout passes)."""
        assert self._page is not None
        deadline = time.monotonic() + timeout
        snap = await self._page.snapshot()
        while snap.state not in SETTLED and not self._page.crashed and not self.stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            snap = await self._page.wait_for_change(snap, min(remaining, 1.0), poll=SETTLE_POLL_SECONDS)
        return snap

    async def _close_page(self) -> None:
        page, self._page = self._page, None
        if page is not None:
            try:
                await page.close()
            except Exception:
                log.exception("closing the browser failed")
            log.info("browser closed")

    # ------------------------------------------------------------------ supervision

    async def _supervise(self) -> None:
        assert self._stop is not None and self._lock is not None
        crash_streak = 0
        while not self._stop.is_set():
            try:
                async with self._lock:
                    if self._page is None or self._page.crashed:
                        crash_streak += 1
                        await self._handle_crash(crash_streak)
                        continue
                    snap = await self._page.wait_for_change(self._page_last, 0.5, poll=self._poll_seconds())
                    if self._page is None or self._page.crashed:
                        continue
                    await self._apply(snap)
                    await self._run_timers()
                    if self.state == SessionState.CONNECTED:
                        crash_streak = 0
            except Exception as exc:  # one bad step (a page gone mid-call, a full disk…) must not end the session
                log.exception("supervision step failed")
                self.meta.record("error", message=f"{type(exc).__name__}: {exc}")
                self._set_state(SessionState.ERROR, f"{exc}; retrying")
                await self._close_page()
                crash_streak += 1
                await asyncio.sleep(1.0)
            await asyncio.sleep(0)

    def _poll_seconds(self) -> float:
        """Read the page often while something is happening, rarely while all is well (an
        idle tray app should cost next to nothing)."""
        return IDLE_POLL_SECONDS if self.state == SessionState.CONNECTED else BUSY_POLL_SECONDS

    @property
    def _page_last(self) -> PageSnapshot | None:
        return getattr(self, "_last_snapshot", None)

    async def _handle_crash(self, streak: int) -> None:
        assert self._stop is not None
        delay = CRASH_BACKOFF_SECONDS[min(streak - 1, len(CRASH_BACKOFF_SECONDS) - 1)]
        self._set_state(SessionState.BROWSER_CRASHED, f"the browser stopped; restarting in {delay:g} s")
        self.meta.record("browser_crashed", restart_in=delay)
        await self._close_page()
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=delay)
            return
        except asyncio.TimeoutError:
            pass
        await self._relaunch()

    async def _relaunch(self) -> None:
        await asyncio.to_thread(self._clear_profile_locks)
        try:
            await self._start_session()
        except (BrowserLaunchFailed, ProfileInUse) as exc:
            log.warning("relaunch failed: %s", exc)
            self._set_state(SessionState.BROWSER_CRASHED, str(exc))

    async def _apply(self, snap: PageSnapshot) -> None:
        """React to one page reading while running."""
        self._last_snapshot = snap
        now = time.monotonic()
        if snap.state not in (PageState.LOADING, PageState.UNKNOWN):
            self._unsettled_since = None
        if snap.state != PageState.PASSKEY:
            self._pairing_since = None
        if snap.state == PageState.CONNECTED:
            if self.state != SessionState.CONNECTED:
                linked_now = self.state in (SessionState.NEEDS_LINK, SessionState.LOGGED_OUT, SessionState.STARTING) \
                    and not self.meta.linked()
                self.account = snap.account or self.account
                if linked_now:
                    self.meta.record("link", account=self.account or "")
                    self._link_backup_at = now + self.settings.flush_delay_seconds
                    log.info("linked; first backup in %.0f s once storage is on disk",
                             self.settings.flush_delay_seconds)
                self._was_connected = True
                self.meta.record("connected", account=self.account or "")
                self._set_state(SessionState.CONNECTED)
                self._schedule_periodic()
        elif snap.state in (PageState.QR, PageState.QR_IDLE):
            if self.state == SessionState.CONNECTED or (self.meta.linked() and self.state not in
                                                         (SessionState.NEEDS_LINK, SessionState.LOGGED_OUT)):
                await self._session_lost(snap)
                return
            if self.state != SessionState.NEEDS_LINK or self.reason:
                if not (self.state == SessionState.NEEDS_LINK and snap.state == PageState.QR_IDLE):
                    self._set_state(SessionState.NEEDS_LINK)
            if snap.qr and snap.state == PageState.QR and snap.qr != self._last_qr:
                self._last_qr, self._qr_idle_sent = snap.qr, False
                log.info("new QR code shown (payload not logged)")
                self._emit(QrCode(snap.qr))
            elif snap.state == PageState.QR_IDLE and not self._qr_idle_sent:
                self._qr_idle_sent = True
                log.info("QR codes ran out; waiting for the owner to ask for a new one")
                self._emit(QrCode(snap.qr or self._last_qr or "", idle=True))
        elif snap.state == PageState.PASSKEY:
            if self._pairing_since is None:
                self._pairing_since = now
                log.info("the phone scanned the code; linking in progress")
            elif now - self._pairing_since > self.settings.link_stall_seconds and self.reason != LINK_STALLED_REASON:
                self.meta.record("link_stalled")
                self._set_state(SessionState.NEEDS_LINK, LINK_STALLED_REASON)
        elif snap.state == PageState.CONFLICT:
            if self.state != SessionState.CONFLICT:
                self._set_state(SessionState.CONFLICT, "WhatsApp is open in another window")
                self.meta.record("conflict")
            await self._maybe_take_over(now)
        elif snap.state == PageState.OFFLINE:
            self._set_state(SessionState.OFFLINE, "the computer is not connected to the internet")
        elif snap.state == PageState.UNSUPPORTED:
            self._set_state(SessionState.ERROR, "WhatsApp Web says this browser is not supported; "
                                                "update Google Chrome or Chromium")
        else:  # LOADING or UNKNOWN
            if self._unsettled_since is None:
                self._unsettled_since = now
                if snap.state == PageState.UNKNOWN:
                    log.warning("the page shows nothing known (no marker matched); waiting")
            elif now - self._unsettled_since > self.settings.page_timeout_seconds:
                self._unsettled_since = now
                what = "still loading" if snap.state == PageState.LOADING else "unknown page (no marker matched)"
                self._set_state(SessionState.ERROR, f"WhatsApp Web did not finish loading ({what}); reloading")
                self.meta.record("error", reason=what)
                if self._page is not None:
                    await self._page.reload()

    async def _maybe_take_over(self, now: float) -> None:
        """Click "Use here" unless another copy of this session keeps taking it back (two
        clients fighting over one device would ping-pong forever)."""
        self._takeovers = [t for t in getattr(self, "_takeovers", []) if now - t < TAKEOVER_WINDOW_SECONDS]
        if not self.settings.take_over_on_conflict or self._page is None:
            return
        if len(self._takeovers) >= MAX_TAKEOVERS_PER_WINDOW:
            reason = ("another copy of this session keeps taking WhatsApp over; close it, "
                      "then choose Restore or Re-link")
            if self.reason != reason:
                self._set_state(SessionState.CONFLICT, reason)
            return
        if await self._page.click_use_here():
            self._takeovers.append(now)
            log.info("conflict: clicked 'Use here' to keep the session in this app")
            self.meta.record("conflict_taken_over")

    async def _session_lost(self, snap: PageSnapshot) -> None:
        """The page shows a QR code while we had a session: log-out by the phone or broken storage."""
        kind = recovery.classify_logout(snap.reason)
        log.warning("the page asks for a QR code although a session existed (reason: %s, %s)",
                    snap.reason or "none given", kind)
        if kind == "remote":
            await self._phone_removed(snap.reason, tried=0)
            return
        await self._close_page()
        await self._start_session()

    def _schedule_periodic(self) -> None:
        if self._next_periodic is None:
            self._next_periodic = time.monotonic() + self.settings.backup_interval_hours * 3600

    async def _run_timers(self) -> None:
        now = time.monotonic()
        if self.state != SessionState.CONNECTED:
            return
        if self._link_backup_at is not None and now >= self._link_backup_at:
            self._link_backup_at = None
            info = await self._backup("link", hot=True, flush=True)
            if info is not None:
                await asyncio.to_thread(self._store.mark_known_good, info["id"])
        elif self._next_periodic is not None and now >= self._next_periodic:
            self._next_periodic = None
            await self._backup("auto", hot=True)
            self._schedule_periodic()

    # ------------------------------------------------------------------ backups

    async def _backup(self, reason: str, *, hot: bool, flush: bool = False) -> dict[str, Any] | None:
        """Take one backup and rotate; report failure as a Notice, never raise."""
        try:
            return await self._backup_or_raise(reason, hot=hot, flush=flush)
        except LindaError as exc:
            self.meta.record("backup_failed", reason=reason, error=str(exc))
            self._notice("backup_failed", f"Backup failed: {exc}")
            return None

    async def _backup_or_raise(self, reason: str, *, hot: bool, flush: bool = False) -> dict[str, Any]:
        """``flush``: make sure localStorage is on disk first. Chromium writes it ~5 s after a
        change unless no page of the site is open, so flushing reopens the page: worth it only
        for the first backup after linking (WhatsApp's salt was just written), not periodically."""
        if await self._store_ready() is None:
            raise self._key_error or KeyringUnavailable("Backups are off", "set up a keyring")
        if hot and flush and self._page is not None:
            await self._page.flush_storage()
        started = time.monotonic()
        info = await asyncio.to_thread(self._store.create, self.paths.profile, origin_url=self.wa_url,
                                       reason=reason, browser_version=self._browser_version,
                                       app_version=__version__)
        seconds = time.monotonic() - started
        removed = await asyncio.to_thread(self._store.rotate)
        log.info("backup %s (%s): %d bytes in %.2f s%s", info.id, reason, info.size, seconds,
                 f"; rotated away {len(removed)}" if removed else "")
        self.meta.record("backup", id=info.id, size=info.size, seconds=round(seconds, 3), reason=reason)
        self._emit(BackupMade(info.id, info.size, seconds, reason))
        return info.to_json()

    async def _shutdown(self) -> None:
        """Clean exit: close the browser so storage is flushed, then take a consistent backup."""
        if self._lock is None:
            return
        try:
            await asyncio.wait_for(self._lock.acquire(), timeout=30)
            acquired = True
        except asyncio.TimeoutError:
            acquired = False
        try:
            await self._close_page()
            await self._store_ready()
            if self._was_connected and self.meta.linked() and self._store is not None:
                await self._backup("exit", hot=False)
            self.meta.record("stopped")
            log.info("stopped cleanly")
        finally:
            if acquired:
                self._lock.release()

    # ------------------------------------------------------------------ commands

    async def _command(self, func: Callable[[], Awaitable[T]]) -> T:
        assert self._lock is not None
        async with self._lock:
            return await func()

    async def backup_now(self) -> dict[str, Any]:
        """Take a backup now; returns the backup's info as a dict (id, size, created_at, …)."""
        async def work() -> dict[str, Any]:
            if not (await self._profile_has_session()):
                raise NoBackups("There is no WhatsApp session to back up yet", "link this computer first")
            return await self._backup_or_raise("manual", hot=self._page is not None)
        return await self._command(work)

    async def _profile_has_session(self) -> bool:
        from linda_desktop.session import profile

        report = await asyncio.to_thread(profile.validate_profile, self.paths.profile, self.wa_url)
        return report.has_session

    async def restore(self, backup_id: str | None = None) -> dict[str, Any]:
        """Close the browser, restore ``backup_id`` (newest when None), relaunch."""
        async def work() -> dict[str, Any]:
            if await self._store_ready() is None:
                raise self._key_error or KeyringUnavailable("Backups are off", "set up a keyring")
            skipped: list[dict[str, Any]] = []
            if backup_id:
                target = self._store.get(backup_id)
                await asyncio.to_thread(self._store.verify, target.id)  # refuse before touching the live session
            else:  # the newest backup that verifies; the newer ones that do not are named
                target, skipped = await asyncio.to_thread(self._store.newest_verified)
            if self._was_connected and self._page is not None:
                await self._backup("pre-restore", hot=True)
            await self._close_page()
            self._set_state(SessionState.RESTORING, f"restoring backup {target.id} on request")
            await self._restore_files(target.id, "requested by the owner")
            self.meta.clear_revoked()
            snap = await self._launch_and_settle()
            if snap.state == PageState.CONNECTED:
                await self._on_connected(snap, restored_from=target.id, resumed=True)
            else:
                await self._apply(snap)
            return {"restored": target.id, "state": self.state.value, "skipped": skipped}
        return await self._command(work)

    async def relink(self) -> None:
        """Archive the live session to quarantine (backups are kept) and show a fresh QR."""
        from linda_desktop.session import profile

        async def work() -> None:
            if self._was_connected and self._page is not None and self._store is not None:
                await self._backup("pre-relink", hot=True)
            await self._close_page()
            if self.paths.profile.exists():
                await asyncio.to_thread(profile.quarantine, self.paths.profile, self.paths.quarantine,
                                        "re-link requested by the owner")
            self.meta.record("relink")
            self._was_connected = False
            self._set_state(SessionState.STARTING, "re-linking")
            snap = await self._launch_and_settle()
            await self._apply(snap)
        await self._command(work)

    async def import_session(self, source: str) -> dict[str, Any]:
        """Install a whatsapp-web.js LocalAuth (or Chromium) session folder as the live profile."""
        from pathlib import Path

        from linda_desktop.session.importer import import_session

        async def work() -> dict[str, Any]:
            await self._store_ready()
            await self._close_page()
            backup_current = (lambda: self._store.create(self.paths.profile, origin_url=self.wa_url,
                                                         reason="pre-import")) if self._store else None
            result = await asyncio.to_thread(import_session, Path(source), self.paths,
                                             origin_url=self.wa_url, backup_current=backup_current)
            self.meta.record("import", source_kind=result.source_kind, files=result.files)
            self.meta.clear_revoked()
            self._set_state(SessionState.STARTING, "imported session")
            await self._start_session()
            return {"imported": str(source), "files": result.files, "state": self.state.value}
        return await self._command(work)

    async def show_new_qr(self) -> None:
        """The QR list ran out (page idle): click the page's reload button for new codes."""
        async def work() -> None:
            if self._page is not None and await self._page.reload_qr():
                self._qr_idle_sent = False
                log.info("asked the page for new QR codes")
        await self._command(work)

    async def finish_in_visible_browser(self) -> None:
        """Relaunch the same profile in a visible window so the owner can finish linking
        (WhatsApp's passkey step), then go back to headless once connected."""
        async def work() -> None:
            await self._close_page()
            self._set_state(SessionState.NEEDS_LINK, "finish linking in the browser window that opened")
            await self._launch(headless=False)
            assert self._page is not None and self._stop is not None
            deadline = time.monotonic() + VISIBLE_LINK_TIMEOUT_SECONDS
            snap = await self._page.snapshot()
            while snap.state != PageState.CONNECTED and time.monotonic() < deadline and not self._stop.is_set():
                if self._page.crashed:  # the owner closed the window
                    break
                snap = await self._page.wait_for_change(snap, 1.0)
            finished = snap.state == PageState.CONNECTED
            if finished:
                self.meta.record("link", account=snap.account or "", via="visible_browser")
                await self._page.flush_storage()
            await self._close_page()
            log.info("visible window closed (%s); back to headless", "linked" if finished else "not linked")
            snap = await self._launch_and_settle()
            await self._apply(snap)
            if finished and self.state == SessionState.CONNECTED:
                info = await self._backup("link", hot=True)
                if info is not None and self._store is not None:
                    await asyncio.to_thread(self._store.mark_known_good, info["id"])
        await self._command(work)

    # ------------------------------------------------------------------ bot API (issue 6)
    # Owner: helper G (linda_desktop/api, browser/messaging.py). Sending does not take
    # ``self._lock``: it only evaluates in the open page (a page that closes under it fails that
    # one send with a retryable error), so the supervisor's 0.5 s turns do not throttle bots.

    def subscribe(self, listener: Callable[[Any], None]) -> Callable[[], None]:
        """Thread-safe. ``listener`` gets every Event and every MessageReceived, on the loop
        thread. Returns a function that unsubscribes."""
        if not getattr(self, "_api_tee", False):
            self._api_tee = True
            inner = self.on_event

            def tee(event: Event) -> None:
                try:
                    inner(event)
                finally:
                    self._fan_out(event)
            self.on_event = tee
        self._api_listeners = (*getattr(self, "_api_listeners", ()), listener)

        def unsubscribe() -> None:
            self._api_listeners = tuple(l for l in self._api_listeners if l is not listener)
        return unsubscribe

    def _fan_out(self, event: Any) -> None:
        for listener in getattr(self, "_api_listeners", ()):
            try:
                listener(event)
            except Exception:
                log.exception("API listener failed")

    def enable_messaging(self) -> None:
        """Thread-safe: attach the message bridge to this and every later browser."""
        self._messaging = True
        if self.loop is not None and self._page is not None:
            page = self._page
            self.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._attach_bridge(page)))

    async def _attach_bridge(self, page: Any) -> None:
        if not getattr(self, "_messaging", False):
            return
        from linda_desktop.browser.messaging import MessageBridge, find_wajs

        try:
            if getattr(self, "_bridge", None) is None:  # no await before the assignment
                self._bridge = MessageBridge(self._on_page_message, find_wajs())
            if page.page is not None:
                await self._bridge.attach(page.page)
        except Exception as exc:  # the session must not suffer from the bot bridge
            log.warning("message bridge not attached: %s", exc)

    def _on_page_message(self, payload: dict[str, Any]) -> None:
        from linda_desktop.base.events import MessageReceived

        self._fan_out(MessageReceived(
            id=payload["id"], chat_id=payload["chat_id"], text=payload.get("text"),
            sender=payload.get("from"), sender_name=payload.get("sender_name"),
            author=payload.get("author"), type=payload.get("type") or "chat",
            timestamp=payload.get("timestamp"), group=bool(payload.get("group"))))

    async def send_message(self, to: str, text: str) -> dict[str, Any]:
        """Send ``text`` to a phone number or chat id. Returns {"id", "to", "ack"}; raises
        browser.messaging.MessagingError (``code``: not_connected, not_ready,
        invalid_recipient, invalid_text, send_failed, timeout)."""
        from linda_desktop.browser.messaging import MessagingError, check_text, normalize_recipient

        chat_id, text = normalize_recipient(to), check_text(text)
        page = self._page
        bridge = getattr(self, "_bridge", None)
        if self.state != SessionState.CONNECTED or page is None or page.page is None:
            raise MessagingError("not_connected", f"WhatsApp is not connected (state {self.state.value})",
                                 "wait for the 'connected' state")
        if bridge is None:
            raise MessagingError("not_ready", "the message bridge is not attached", "enable the bot API")
        result = await bridge.send(page.page, chat_id, text)
        return {"id": result["id"], "to": chat_id, "ack": result["ack"]}

    async def messaging_status(self) -> dict[str, Any]:
        """What the in-page bridge reports (api, version, ready, connected), or {} without one."""
        bridge, page = getattr(self, "_bridge", None), self._page
        if bridge is None or page is None or page.page is None:
            return {}
        return (await bridge.status(page.page)) or {}

    def notify(self, kind: str, message: str) -> None:
        """Thread-safe: tell the owner something (a Notice), e.g. why the bot API is off."""
        if self.loop is None or self.loop.is_closed():
            log.warning("%s: %s", kind, message)
            return
        self.loop.call_soon_threadsafe(self._notice, kind, message)

    def current_qr(self) -> str | None:
        """The QR payload shown while linking (None otherwise). Never log it."""
        return self._last_qr if self.state == SessionState.NEEDS_LINK else None

    # ------------------------------------------------------------------ queries

    def status(self) -> dict[str, Any]:
        """What `linda-desktop status --json` prints, from the running service's point of view."""
        from linda_desktop.service.diagnostics import collect_status

        data = collect_status(self.paths, wa_url=self.wa_url, browser=self.browser, running=True,
                              backup_store=self._store, key_error=self._key_error)
        data.update({"state": self.state.value, "reason": self.reason, "account": self.account,
                     "pid": os.getpid(), "browser_pid": self._page.browser_pid if self._page else None})
        return data

    def list_backups(self) -> list[dict[str, Any]]:
        if self._store is None:
            return []
        return [b.to_json() for b in self._store.list()]
