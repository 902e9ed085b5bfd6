"""SessionService: carries out the session's decisions (DESIGN.md §4). Qt-free, one asyncio loop.

The decisions themselves are a pure reducer (``service/reducer.py``): this class reads the page,
feeds each reading to the reducer and executes the actions it returns (``service/actions.py``):
launch and close browsers (from an injected ``PageFactory``), restore and take backups, write the
state file, and report everything as Events (base/events.py) to ``on_event``. The CLI prints
them as JSON lines, the tray turns them into icons, windows and notifications.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from linda_desktop import __version__
from linda_desktop.base.errors import (
    BackupCorrupt,
    BrowserLaunchFailed,
    BrowserNotFound,
    KeyringUnavailable,
    LindaError,
    NoBackups,
    ProfileInUse,
    StorageError,
    WrongKey,
)
from linda_desktop.base.events import (
    BackupMade,
    Event,
    LogoutInfo,
    Notice,
    NoticeKind,
    PageSnapshot,
    PairingCode,
    QrCode,
    Restored,
    SessionState,
    StateChanged,
    StateCode,
)
from linda_desktop.base.paths import AppPaths
from linda_desktop.base.phone import PhoneNumberError, normalize_phone
from linda_desktop.base.settings import Settings
from linda_desktop.browser.protocol import Page, PageFactory
from linda_desktop.service import actions as A
from linda_desktop.service import recovery, reducer
from linda_desktop.session.state import SessionStateStore

log = logging.getLogger(__name__)

EventSink = Callable[[Event], None]
T = TypeVar("T")

CRASH_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
BUSY_WAIT_SECONDS = 0.5      # page readings while something is happening
IDLE_WAIT_SECONDS = 1.0      # while connected: the page pushes changes; this paces the timers
STOP_GRACE_SECONDS = 0.3     # a stop signal may land just after the failure it caused


def default_page_factory(profile_dir: Path, url: str, executable: str, *, headless: bool,
                         hidden_window: bool) -> Page:
    from linda_desktop.browser.whatsapp import WhatsAppPage

    return WhatsAppPage(profile_dir, url, executable, headless=headless, hidden_window=hidden_window)


def display_available() -> bool:
    """A desktop session where a real (hidden) browser window can exist."""
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def checked_phone(phone: str) -> str:
    """The digits WhatsApp wants for a pairing code; a LindaError naming the number and the fix
    (one line for `run --phone`, the tray and the API) for anything else."""
    try:
        return normalize_phone(phone)
    except PhoneNumberError as exc:
        raise LindaError(f"{phone!r} is not a phone number WhatsApp can link with ({exc.message})",
                         "give the full number with its country code, digits only (8 to 15), "
                         "e.g. 4915123456789") from None


class SessionService:
    """Keeps one WhatsApp Web session alive.

    ``on_event`` is called on the service's loop thread for every Event (StateChanged, QrCode,
    PairingCode, BackupMade, Restored, Notice). UI code must hop to its own thread (Qt signal).
    All ``async`` commands must be awaited on the service's loop (use
    ``asyncio.run_coroutine_threadsafe(service.backup_now(), service.loop)`` from other threads).
    ``display``: whether linking may use a real window kept out of sight (default: detected).
    ``pairing_phone``: link with a pairing code for this number instead of the QR (`run --phone`).
    ``backup_store``: a ready ``session.backup.BackupStore`` (tests); default: opened with the keyring's key.
    """

    def __init__(self, paths: AppPaths, settings: Settings, *, wa_url: str, browser: str | None,
                 on_event: EventSink, background: bool = False, page_factory: PageFactory | None = None,
                 display: bool | None = None, pairing_phone: str | None = None,
                 backup_store: Any = None) -> None:
        self.paths = paths
        self.settings = settings
        self.wa_url = wa_url
        self.browser = browser
        self.on_event = on_event
        self.background = background
        self.page_factory: PageFactory = page_factory or default_page_factory
        self.state: SessionState = SessionState.STARTING
        self.reason: str | None = None
        self.code: StateCode | None = None
        self.account: str | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.fatal_error: LindaError | None = None
        self.meta = SessionStateStore(paths.state_file, on_write_error=self._state_write_failed)
        config = reducer.Config(flush_delay_seconds=settings.flush_delay_seconds,
                                page_timeout_seconds=settings.page_timeout_seconds,
                                backup_interval_seconds=settings.backup_interval_hours * 3600,
                                take_over_on_conflict=settings.take_over_on_conflict)
        self.model = reducer.Model(config=config, display=display_available() if display is None else display,
                                   pairing_phone=checked_phone(pairing_phone) if pairing_phone else None)
        self._page: Page | None = None
        self._last_snapshot: PageSnapshot | None = None
        self._browser_path: str | None = None
        self._browser_version: str | None = None
        self._store: Any = backup_store  # session.backup.BackupStore, None without a key
        self._store_task: asyncio.Task[None] | None = None
        self._key_error: LindaError | None = None
        self._key_error_reported = False
        self._other_key_backups = 0  # backups made with another key (kept, not usable)
        self._other_key_reported = False
        self._background: set[asyncio.Task[Any]] = set()
        self._lock: asyncio.Lock | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested_early = False
        self._last_qr: str | None = None
        # bot API (issue 6): see that section below
        self._api_tee = False
        self._api_listeners: tuple[Callable[[Any], None], ...] = ()
        self._messaging = False
        self._bot_link: Any = None  # service.bot_link.BotLink, made on first use
        self._bridge: Any = None
        self._handlers: dict[type, Callable[[Any], Awaitable[None]]] = {
            A.EmitState: self._do_emit_state, A.EmitQr: self._do_emit_qr,
            A.EmitPairingCode: self._do_emit_pairing_code, A.Notify: self._do_notify,
            A.RecordMeta: self._do_record, A.Restore: self._do_restore, A.Archive: self._do_archive,
            A.MarkRevoked: self._do_mark_revoked, A.Launch: self._do_launch, A.Close: self._do_close,
            A.Park: self._do_close, A.ShowWindow: self._do_show_window, A.HideWindow: self._do_hide_window,
            A.Reload: self._do_reload, A.TakeOver: self._do_take_over, A.RefreshQr: self._do_refresh_qr,
            A.RequestPairingCode: self._do_request_pairing_code, A.Backup: self._do_backup,
            A.MarkKnownGood: self._do_mark_known_good, A.ConfirmExitBackup: self._do_confirm_exit_backup,
        }

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Recover, then supervise until ``request_stop``; on stop: flush, back up, close."""
        self.loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        if self._stop_requested_early:
            self._stop.set()
        self._emit_state(StateChanged(SessionState.STARTING))
        try:
            await self._start()
            if self.fatal_error is None:  # no browser: nothing to supervise, `run` exits 1
                await self._supervise()
        except Exception as exc:  # noqa: BLE001  (decided in _failed: quiet when stopping)
            await self._failed(exc)
        finally:
            await self._shutdown()

    async def _start(self) -> None:
        self.paths.ensure_all()
        # The key (a D-Bus round trip) and the browser's version (a subprocess) are fetched
        # while the profile is checked and the browser starts: start-up is the bench's target.
        if self._store is None:
            self._store_task = asyncio.create_task(asyncio.to_thread(self._open_backup_store))
        if not self._find_browser() or self.stopping:
            return  # fatal_error is set: `run` exits 1, the tray shows the error
        await asyncio.to_thread(self._read_browser_version)
        assert self._lock is not None
        async with self._lock:
            if not self.stopping:
                await self._boot()
        await self._store_ready()
        await self._note_missing_link_backup()

    async def _failed(self, exc: Exception) -> None:
        """A failure that ends ``run``; quiet when the owner asked to stop meanwhile (a stop
        signal to the process group also takes the browser down)."""
        if not self.stopping:
            await asyncio.sleep(STOP_GRACE_SECONDS)
        if self.stopping:
            log.info("stopped during start-up (%s: %s)", type(exc).__name__, exc)
            return
        if not isinstance(exc, LindaError):
            raise exc
        self.fatal_error = exc
        log.error("stopped: %s", exc)
        self._emit_state(StateChanged(SessionState.ERROR, str(exc)))

    def request_stop(self) -> None:
        """Thread-safe: ask ``run`` to finish cleanly (back up, close the browser)."""
        if self.loop is None or self._stop is None:
            self._stop_requested_early = True
            return
        self.loop.call_soon_threadsafe(self._stop.set)

    @property
    def stopping(self) -> bool:
        return self._stop_requested_early or (self._stop is not None and self._stop.is_set())

    # ------------------------------------------------------------------ events

    def _emit(self, event: Event) -> None:
        try:
            self.on_event(event)
        except Exception:  # a broken listener must never take the session down
            log.exception("event listener failed")

    def _emit_state(self, change: StateChanged) -> None:
        previous = self.state
        self.state, self.reason, self.code = change.state, change.reason, change.code
        arrow = change.state.value if previous == change.state else f"{previous.value} -> {change.state.value}"
        why = ", ".join(str(x) for x in (change.code, change.reason) if x)
        log.info("state %s%s", arrow, f" ({why})" if why else "")
        if change.state == SessionState.NEEDS_LINK and previous != SessionState.NEEDS_LINK:
            self._last_qr = None
        self._emit(change)

    def _notice(self, kind: NoticeKind | str, message: str, **details: Any) -> None:
        log.warning("%s: %s", kind, message)
        self._emit(Notice(kind, message, details))

    def _record(self, event: str, **details: Any) -> None:
        """One state-file entry. A failed write (full disk, read-only folder) never ends the
        service: the store keeps the change in memory and writes it later."""
        try:
            self.meta.record(event, **details)
        except (OSError, LindaError) as exc:
            log.warning("state file not written (%s): %s", event, exc)

    def _state_write_failed(self, error: StorageError | None) -> None:
        if error is not None:
            self._notice(NoticeKind.STATE_WRITE_FAILED, f"The session's state file cannot be written: {error}")

    # ------------------------------------------------------------------ the reducer's actions

    async def _run(self, result: tuple[reducer.Model, list[A.Action]]) -> None:
        """Adopt the reducer's new model, then carry out its actions in order."""
        self.model, todo = result
        for action in todo:
            await self._handlers[type(action)](action)

    async def _do_emit_state(self, act: A.EmitState) -> None:
        if act.account:
            self.account = act.account
        self._emit_state(StateChanged(act.state, act.reason, act.account, act.code, act.step, dict(act.details)))

    async def _do_emit_qr(self, act: A.EmitQr) -> None:
        if act.idle:
            log.info("QR codes ran out; waiting for the owner to ask for a new one")
        else:
            self._last_qr = act.data
            log.info("new QR code shown (payload not logged)")
        self._emit(QrCode(act.data, idle=act.idle))

    async def _do_emit_pairing_code(self, act: A.EmitPairingCode) -> None:
        log.info("pairing code shown (not logged)")
        self._emit(PairingCode(act.code))

    async def _do_notify(self, act: A.Notify) -> None:
        self._notice(act.kind, act.message)

    async def _do_record(self, act: A.RecordMeta) -> None:
        self._record(act.event, **dict(act.details))

    async def _do_restore(self, act: A.Restore) -> None:
        await self._close_page()
        restored = await self._restore_next(act.tried, act.why)
        await self._run(reducer.restore_done(self.model, restored))

    async def _do_archive(self, act: A.Archive) -> None:
        from linda_desktop.session import profile

        await self._close_page()
        if self.paths.profile.exists():
            archived = await asyncio.to_thread(profile.quarantine, self.paths.profile, self.paths.quarantine, act.why)
            log.info("archived the dead session to %s", archived)

    async def _do_mark_revoked(self, act: A.MarkRevoked) -> None:
        try:
            self.meta.mark_revoked()
        except (OSError, LindaError) as exc:
            log.warning("could not record the removal: %s", exc)

    async def _do_launch(self, act: A.Launch) -> None:
        await self._close_page()
        await self._launch(hidden_window=act.hidden_window)

    async def _do_close(self, act: A.Action) -> None:
        await self._close_page()

    async def _do_show_window(self, act: A.ShowWindow) -> None:
        shown = self._page is not None and await self._page.show_window()
        log.info("linking window %s", "on screen" if shown else "cannot be shown (no display)")
        await self._run(reducer.show_done(self.model, shown))

    async def _do_hide_window(self, act: A.HideWindow) -> None:
        if self._page is not None:
            await self._page.hide_window()

    async def _do_reload(self, act: A.Reload) -> None:
        if self._page is not None:
            await self._page.reload()
            self._last_snapshot = None

    async def _do_take_over(self, act: A.TakeOver) -> None:
        if self._page is not None and await self._page.take_over():
            log.info("conflict: took the session over in this app")

    async def _do_refresh_qr(self, act: A.RefreshQr) -> None:
        if self._page is not None and await self._page.refresh_qr():
            log.info("asked the page for new QR codes")

    async def _do_request_pairing_code(self, act: A.RequestPairingCode) -> None:
        code, error = None, None
        try:
            if self._page is None:
                raise LindaError("the browser is not running")
            code = await self._page.request_pairing_code(act.phone)
        except Exception as exc:  # noqa: BLE001  (the page refused or timed out: the QR stays usable)
            error = str(exc) or type(exc).__name__
        await self._run(reducer.pairing_done(self.model, code, error))

    async def _do_backup(self, act: A.Backup) -> None:
        info = await self._backup(act.reason, hot=not act.cold, flush=act.flush)
        if info is not None and act.known_good:
            await self._mark_known_good(info["id"])
        await self._run(reducer.backup_done(self.model, act.reason, info is not None, time.monotonic()))

    async def _do_mark_known_good(self, act: A.MarkKnownGood) -> None:
        await self._mark_known_good(act.backup_id)

    async def _do_confirm_exit_backup(self, act: A.ConfirmExitBackup) -> None:
        """The profile came back connected as it was left at the last clean exit: the backup
        taken at that exit is proven good (an exit backup after a browser crash never is)."""
        if await self._store_ready() is None:
            return
        newest = await asyncio.to_thread(self._store.newest)
        if newest is not None and newest.reason == "exit" and not newest.known_good:
            await self._mark_known_good(newest.id)

    async def _mark_known_good(self, backup_id: str) -> None:
        """Known-good needs both: the session reached connected, and the backup verifies."""
        if await self._store_ready() is None:
            return
        try:
            await asyncio.to_thread(self._store.verify, backup_id)
            await asyncio.to_thread(self._store.mark_known_good, backup_id)
            log.info("backup %s verified and known-good", backup_id)
        except (LindaError, OSError) as exc:
            log.warning("backup %s not marked known-good: %s", backup_id, exc)
            self._notice(NoticeKind.BACKUP_UNUSABLE, f"Backup {backup_id} does not verify: {exc}", id=backup_id)

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
        try:
            self._other_key_backups = self._store.other_key_count()
        except LindaError as exc:
            log.warning("cannot check the backups' keys: %s", exc)
        log.info("backups: %s (%s)", self.paths.backups, keystore.backend_name())

    def _find_browser(self) -> bool:
        from linda_desktop.browser.discovery import find_browser

        try:
            info = find_browser(self.browser, extra_playwright_dirs=[self.paths.browsers])
        except BrowserNotFound as exc:
            self.fatal_error = exc
            self._notice(NoticeKind.BROWSER_MISSING, str(exc))
            self._emit_state(StateChanged(SessionState.ERROR, str(exc), code=StateCode.BROWSER))
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
        if self._store_task is not None:
            await self._store_task
            if self._key_error is not None and not self._key_error_reported:
                self._key_error_reported = True
                self._notice(NoticeKind.KEYRING_UNAVAILABLE, f"Backups are off: {self._key_error}")
            if self._other_key_backups and not self._other_key_reported:
                self._other_key_reported = True
                count = self._other_key_backups
                self._notice(NoticeKind.OTHER_KEY_BACKUPS,
                             f"{count} backup{'s were' if count != 1 else ' was'} made with another key; "
                             "they are kept, but only that key can restore them", count=count)
        return self._store

    # ------------------------------------------------------------------ recovery

    async def _boot(self) -> None:
        """Start-up order (DESIGN §4): clear stale locks, check the profile, let the reducer
        decide (restore first, or launch)."""
        from linda_desktop.session import profile

        await asyncio.to_thread(self._clear_profile_locks)
        report = await asyncio.to_thread(profile.validate_profile, self.paths.profile, self.wa_url)
        if report.has_session and not report.ok:
            log.warning("live profile damaged: %s", "; ".join(report.problems))
        facts = reducer.Boot(linked=self.meta.linked(), has_session=report.has_session, profile_ok=report.ok,
                             problems=tuple(report.problems), last_logout=self._recorded_logout())
        await self._run(reducer.boot(self.model, facts))

    def _recorded_logout(self) -> LogoutInfo | None:
        """A logout the page reported before the app stopped, not yet acted on (the page's own
        reload drops the in-page reason, so it was written to the state file at once)."""
        for entry in reversed(self.meta.snapshot().get("history", [])):
            event, details = entry.get("event"), entry.get("details") or {}
            if event == "logout_seen":
                return LogoutInfo(reason=details.get("reason") or None, code=details.get("code") or None,
                                  post_logout=True)
            if event in ("connected", "logged_out", "link", "relink", "import", "backup_restore"):
                return None
        return None

    async def _note_missing_link_backup(self) -> None:
        """Issue 12 item 2: linked, but no backup younger than the last link (a crash soon after
        linking): take one once connected and synced."""
        if self._store is None or not self.meta.linked():
            return
        last_link = self.meta.snapshot().get("last_link")
        try:
            newest = await asyncio.to_thread(self._store.newest)
        except LindaError as exc:
            log.warning("cannot list backups: %s", exc)
            return
        try:
            linked_at = datetime.fromisoformat(last_link) if last_link else None
        except ValueError:
            linked_at = None
        if linked_at is not None and (newest is None or newest.created_at < linked_at):
            log.info("no backup since the last link; one follows once the session is synced")
            self.model = replace(self.model, link_backup_due=True)

    async def _restore_next(self, tried: tuple[str, ...], why: str) -> str | None:
        """Restore the best candidate (an unreadable one is skipped for the next); None when
        no usable backup is left."""
        if await self._store_ready() is None:
            return None
        try:
            backups = await asyncio.to_thread(self._store.list)
        except LindaError as exc:
            log.warning("cannot list backups: %s", exc)
            return None
        for backup in recovery.next_candidates(backups, self.meta.revoked_before(), tried):
            try:
                await self._restore_files(backup.id, why)
            except (BackupCorrupt, WrongKey) as exc:
                log.warning("backup %s cannot be restored: %s", backup.id, exc)
                self._notice(NoticeKind.BACKUP_UNUSABLE, f"Backup {backup.id} cannot be used: {exc}", id=backup.id)
                continue
            except StorageError as exc:
                self._notice(NoticeKind.STORAGE_FULL if exc.disk_full else NoticeKind.BACKUP_FAILED,
                             f"Restore failed: {exc}")
                return None
            return str(backup.id)
        return None

    async def _restore_files(self, backup_id: str, why: str) -> None:
        started = time.monotonic()
        await asyncio.to_thread(self._store.restore, backup_id, self.paths.profile)
        seconds = time.monotonic() - started
        await asyncio.to_thread(self._prune_replaced)
        log.info("restored backup %s in %.2f s (%s)", backup_id, seconds, why)
        self._record("backup_restore", id=backup_id, seconds=round(seconds, 3), why=why)
        self._emit(Restored(backup_id, seconds, why))

    def _prune_replaced(self) -> None:
        """Profiles replaced by a restore are kept aside; keep the two newest, not every one."""
        from linda_desktop.session import profile

        profile.prune_quarantine(self.paths.work / "replaced-profiles", keep=2)

    def _clear_profile_locks(self) -> None:
        from linda_desktop.session import profile

        killed = profile.terminate_orphan_browsers(self.paths.profile)
        if killed:
            log.warning("ended %d orphaned browser process(es) still holding our profile", len(killed))
        removed = profile.clear_stale_locks(self.paths.profile)
        if removed:
            log.info("removed stale browser locks: %s", ", ".join(removed))

    # ------------------------------------------------------------------ browser

    def _new_page(self, hidden_window: bool) -> Page:
        page = self.page_factory(self.paths.profile, self.wa_url, self._browser_path or "",
                                 headless=not hidden_window, hidden_window=hidden_window)
        if hasattr(page, "on_context"):  # bot API: the bridge before the page's first script
            page.on_context = self._attach_context
        return page

    async def _launch(self, *, hidden_window: bool = False) -> None:
        self.paths.ensure(self.paths.profile)
        page = self._new_page(hidden_window)
        try:
            await page.start()
        except ProfileInUse:
            await asyncio.to_thread(self._clear_profile_locks)
            await page.close()
            page = self._new_page(hidden_window)
            await page.start()
        self._page = page
        self._last_snapshot = None
        await self._attach_bridge(page)  # bot API (issue 6): no-op unless messaging is enabled
        log.info("browser started (pid %s, %s)", page.browser_pid, "hidden window" if hidden_window else "headless")

    async def _close_page(self) -> None:
        page, self._page = self._page, None
        self._last_snapshot = None
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
                    crash_streak = await self._supervise_once(crash_streak)
            except Exception as exc:  # one bad step (a page gone mid-call…) must not end the session
                log.exception("supervision step failed")
                self._record("error", message=f"{type(exc).__name__}: {exc}")
                await self._run(reducer.report(self.model, SessionState.ERROR, None, f"{exc}; retrying"))
                await self._close_page()
                crash_streak += 1
                await asyncio.sleep(1.0)
            if self.model.parked:
                await self._wait_stop(1.0)
            await asyncio.sleep(0)

    async def _supervise_once(self, crash_streak: int) -> int:
        """One turn: read the page (or handle its crash), let the reducer decide, act."""
        if self.model.parked:
            return 0
        page = self._page
        if page is None or page.crashed:
            await self._handle_crash(crash_streak + 1)
            return crash_streak + 1
        wait = IDLE_WAIT_SECONDS if self.state == SessionState.CONNECTED else BUSY_WAIT_SECONDS
        snap = await page.wait_for_change(self._last_snapshot, wait)
        if page is not self._page or page.crashed:
            return crash_streak
        self._last_snapshot = snap
        await self._run(reducer.step(self.model, snap, time.monotonic()))
        return 0 if self.state == SessionState.CONNECTED else crash_streak

    async def _wait_stop(self, timeout: float) -> bool:
        assert self._stop is not None
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def _handle_crash(self, streak: int) -> None:
        delay = CRASH_BACKOFF_SECONDS[min(streak - 1, len(CRASH_BACKOFF_SECONDS) - 1)]
        await self._run(reducer.browser_gone(self.model, delay))
        await self._close_page()
        if await self._wait_stop(delay):
            return
        await asyncio.to_thread(self._clear_profile_locks)
        try:
            await self._boot()
        except (BrowserLaunchFailed, ProfileInUse) as exc:
            log.warning("relaunch failed: %s", exc)
            await self._run(reducer.report(self.model, SessionState.BROWSER_CRASHED, StateCode.BROWSER, str(exc)))

    # ------------------------------------------------------------------ backups

    async def _backup(self, reason: str, *, hot: bool, flush: bool = False) -> dict[str, Any] | None:
        """Take one backup and rotate; report failure as a Notice, never raise. A full disk
        gives a ``storage_full`` notice; the reducer retries later."""
        try:
            return await self._backup_or_raise(reason, hot=hot, flush=flush)
        except LindaError as exc:
            self._record("backup_failed", reason=reason, error=str(exc))
            full = isinstance(exc, StorageError) and exc.disk_full
            self._notice(NoticeKind.STORAGE_FULL if full else NoticeKind.BACKUP_FAILED, f"Backup failed: {exc}")
            return None
        except OSError as exc:
            error = StorageError.from_os_error(exc, "making a backup")
            self._record("backup_failed", reason=reason, error=str(error))
            self._notice(NoticeKind.STORAGE_FULL if error.disk_full else NoticeKind.BACKUP_FAILED,
                         f"Backup failed: {error}")
            return None

    async def _backup_or_raise(self, reason: str, *, hot: bool, flush: bool = False) -> dict[str, Any]:
        """``flush``: make sure localStorage is on disk first. Chromium writes it ~5 s after a
        change unless no page of the site is open, so flushing reopens the page: worth it only
        for the first backup after linking (WhatsApp's salt was just written), not periodically."""
        if await self._store_ready() is None:
            raise self._key_error or KeyringUnavailable("Backups are off", "set up a keyring")
        if hot and flush and self._page is not None:
            await self._page.flush_storage()
            self._last_snapshot = None
        started = time.monotonic()
        info = await asyncio.to_thread(self._store.create, self.paths.profile, origin_url=self.wa_url,
                                       reason=reason, browser_version=self._browser_version,
                                       app_version=__version__)
        seconds = time.monotonic() - started
        removed = await asyncio.to_thread(self._store.rotate)
        log.info("backup %s (%s): %d bytes in %.2f s%s", info.id, reason, info.size, seconds,
                 f"; rotated away {len(removed)}" if removed else "")
        self._record("backup", id=info.id, size=info.size, seconds=round(seconds, 3), reason=reason)
        self._emit(BackupMade(info.id, info.size, seconds, reason))
        return dict(info.to_json())

    async def _shutdown(self) -> None:
        """Exit: close the browser so storage is flushed, then back up the profile at rest.

        When the browser was already gone (a stop signal to the whole process group, a crash)
        the backup is still taken from the profile at rest, but as ``exit_unclean``: it is never
        confirmed as known-good."""
        if self._lock is None:
            return
        try:
            await asyncio.wait_for(self._lock.acquire(), timeout=30)
            acquired = True
        except asyncio.TimeoutError:
            acquired = False
        try:
            clean = self._page is not None and not self._page.crashed
            if clean:  # connected to the end: the backup this session came from is proven good
                await self._run(reducer.settle_recovery(self.model))
            await self._close_page()
            await self._store_ready()
            if self.model.was_connected and self.meta.linked() and self._store is not None:
                await self._backup("exit" if clean else "exit_unclean", hot=False)
            self._record("stopped")
            log.info("stopped cleanly")
        except Exception:  # exiting must never end in a traceback
            log.exception("shutdown step failed")
        finally:
            if acquired:
                self._lock.release()

    # ------------------------------------------------------------------ commands

    async def _command(self, func: Callable[[], Awaitable[T]]) -> T:
        assert self._lock is not None
        async with self._lock:
            return await func()

    async def _wait_settled(self, timeout: float | None = None) -> None:
        """After a command relaunched the browser: wait until the page shows something to act on."""
        deadline = time.monotonic() + (timeout or self.settings.page_timeout_seconds)
        while (self.state in (SessionState.STARTING, SessionState.RESTORING) and time.monotonic() < deadline
               and not self.stopping):
            await asyncio.sleep(0.1)

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
        skipped: list[dict[str, Any]] = []

        async def work() -> str:
            if await self._store_ready() is None:
                raise self._key_error or KeyringUnavailable("Backups are off", "set up a keyring")
            if backup_id:
                target = self._store.get(backup_id)
                await asyncio.to_thread(self._store.verify, target.id)  # refuse before touching the live session
            else:  # the newest backup that verifies; the newer ones that do not are named
                target, passed_over = await asyncio.to_thread(self._store.newest_verified)
                skipped.extend(passed_over)
            if self.model.was_connected and self._page is not None:
                await self._backup("pre-restore", hot=True)
            await self._run(reducer.owner_restoring(self.model, target.id))
            await self._close_page()
            await self._restore_files(target.id, "requested by the owner")
            self.meta.clear_revoked()
            await self._run(reducer.owner_restored(self.model, target.id))
            return str(target.id)
        restored = await self._command(work)
        await self._wait_settled()
        return {"restored": restored, "state": self.state.value, "skipped": skipped}

    async def relink(self) -> None:
        """Archive the live session to quarantine (backups are kept) and show a fresh QR."""
        from linda_desktop.session import profile

        async def work() -> None:
            if self.model.was_connected and self._page is not None and self._store is not None:
                await self._backup("pre-relink", hot=True)
            await self._close_page()
            if self.paths.profile.exists():
                await asyncio.to_thread(profile.quarantine, self.paths.profile, self.paths.quarantine,
                                        "re-link requested by the owner")
            self._record("relink")
            await self._run(reducer.relinking(self.model))
        await self._command(work)
        await self._wait_settled()

    async def import_session(self, source: str) -> dict[str, Any]:
        """Install a whatsapp-web.js LocalAuth (or Chromium) session folder as the live profile."""
        from linda_desktop.session.importer import import_session

        async def work() -> dict[str, Any]:
            await self._store_ready()
            await self._close_page()
            backup_current = (lambda: self._store.create(self.paths.profile, origin_url=self.wa_url,
                                                         reason="pre-import")) if self._store else None
            result = await asyncio.to_thread(import_session, Path(source), self.paths,
                                             origin_url=self.wa_url, backup_current=backup_current)
            self._record("import", source_kind=result.source_kind, files=result.files)
            self.meta.clear_revoked()
            await self._run(reducer.imported(self.model))
            return {"imported": str(source), "files": result.files}
        result = await self._command(work)
        await self._wait_settled()
        return {**result, "state": self.state.value}

    async def show_new_qr(self) -> None:
        """The QR list ran out (page idle): ask the page for new codes (``Cmd.refreshQR()``)."""
        async def work() -> None:
            await self._run((replace(self.model, qr_idle_sent=False), [A.RefreshQr()]))
        await self._command(work)

    async def finish_link(self) -> None:
        """`finish-link`: bring the browser window that shows the linking step on screen (the
        passkey step must finish in the page that showed the QR: reopening would lose it)."""
        async def work() -> None:
            if self._page is None:
                return
            await self._run((replace(self.model, window_shown=True), [A.ShowWindow()]))
        await self._command(work)

    @property
    def window_on_screen(self) -> bool:
        """True while the browser window of the linking step is on screen."""
        return self._page is not None and self._page.visible

    async def request_pairing_code(self, phone: str) -> str:
        """Link with a pairing code instead of the QR: returns the 8-character code (also emitted
        as a PairingCode event). Raises LindaError for a number that is not one."""
        digits = checked_phone(phone)

        async def work() -> str:
            if self._page is None or self.state != SessionState.NEEDS_LINK:
                raise LindaError("A pairing code can only be asked for while linking",
                                 "wait until the app shows the QR code")
            try:
                code = await self._page.request_pairing_code(digits)
            except LindaError:
                raise
            except Exception as exc:  # noqa: BLE001  (any page failure: one clear line)
                raise LindaError(f"WhatsApp gave no pairing code: {exc}", "scan the QR code instead") from None
            await self._run(reducer.pairing_done(self.model, code))
            return code
        return await self._command(work)

    # ------------------------------------------------------------------ bot API (issue 6)
    # Owner: the bot API engineer. The bodies live in service/bot_link.py (BotLink); these are thin
    # delegations. Sending does not take ``self._lock``: it only evaluates in the open page (a page
    # that closes under it fails that one send with a retryable error).

    @property
    def bot(self) -> Any:
        """The BotLink (service/bot_link.py): bridge, catch-up, acks, quiet phone, liveness."""
        if self._bot_link is None:
            from linda_desktop.service.bot_link import BotLink

            self._bot_link = BotLink(self)
        return self._bot_link

    def subscribe(self, listener: Callable[[Any], None]) -> Callable[[], None]:
        """Thread-safe. ``listener`` gets every Event and every bot event (service.bot_link.BotEvent:
        message, ack, liveness, bridge), on the loop thread. Returns a function that unsubscribes."""
        if not self._api_tee:
            self._api_tee = True
            inner = self.on_event

            def tee(event: Event) -> None:
                try:
                    inner(event)
                finally:
                    self._fan_out(event)
            self.on_event = tee
        self._api_listeners = (*self._api_listeners, listener)

        def unsubscribe() -> None:
            self._api_listeners = tuple(item for item in self._api_listeners if item is not listener)
        return unsubscribe

    def _fan_out(self, event: Any) -> None:
        if isinstance(event, StateChanged):
            self.bot.on_state(event.state.value)
        for listener in self._api_listeners:
            try:
                listener(event)
            except Exception:
                log.exception("API listener failed")

    def enable_messaging(self) -> None:
        """Thread-safe: attach the message bridge to this and every later browser."""
        self._messaging = True
        self.bot.enabled = True
        if self.loop is not None and self._page is not None:
            page = self._page

            def attach_now() -> None:
                task = asyncio.ensure_future(self._attach_bridge(page))
                self._background.add(task)  # keep a reference until it is done
                task.add_done_callback(self._background.discard)
                if self.state == SessionState.CONNECTED:
                    self.bot.on_state("connected")
            self.loop.call_soon_threadsafe(attach_now)

    async def _attach_context(self, context: Any) -> None:
        """For the page's ``on_context`` hook: the bridge before the page's first script runs."""
        await self.bot.attach_context(context)

    async def _attach_bridge(self, page: Any) -> None:
        await self.bot.attach(page)

    async def send_message(self, to: str, text: str) -> dict[str, Any]:
        """Send ``text`` to a phone number or chat id. Returns {"id", "to", "ack"} once WhatsApp
        accepted it; raises browser.messaging.MessagingError (``code``: not_connected,
        not_ready, invalid_recipient, invalid_text, send_failed, timeout)."""
        from linda_desktop.browser.messaging import MessagingError, check_text, normalize_recipient

        chat_id, text = normalize_recipient(to), check_text(text)
        page = self._page
        bridge = self.bot.bridge
        if self.state != SessionState.CONNECTED or page is None or page.page is None:
            raise MessagingError("not_connected", f"WhatsApp is not connected (state {self.state.value})",
                                 "wait for the 'connected' state, or send with queue: true")
        if bridge is None:
            raise MessagingError("not_ready", "the message bridge is not attached", "enable the bot API")
        result = await bridge.send(page.page, chat_id, text)
        return {"id": result["id"], "to": chat_id, "ack": result["ack"]}

    async def messaging_status(self) -> dict[str, Any]:
        """What the in-page bridge reports (api, version, ready, connected) plus the bot link's
        view (catch-up, quiet phone, liveness), or {} without a bridge."""
        bridge, page = self.bot.bridge, self._page
        if bridge is None or page is None or page.page is None:
            return {}
        return {**((await bridge.status(page.page)) or {}), "link": self.bot.status()}

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
                     "code": self.code.value if self.code else None,
                     "pid": os.getpid(), "browser_pid": self._page.browser_pid if self._page else None})
        if self._bot_link is not None and self._bot_link.enabled:  # bot API: outbox, dead letters, bridge
            data["bot_api"] = self._bot_link.status()
        return data

    def list_backups(self) -> list[dict[str, Any]]:
        """Every backup on disk; without a key they are still listed (``key_matches`` None)."""
        if self._store is None:
            from linda_desktop.session.backup import list_backups

            return [b.to_json() for b in list_backups(self.paths.backups)]
        return [b.to_json() for b in self._store.list()]
