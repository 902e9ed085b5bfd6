"""Composition root: builds the parts and wires them together. Nothing else lives here.

Three ways in: the tray app (no command), `run` (the same service, no tray) and the one-shot
commands (`status`, `backup`, …), which talk to a running app when there is one and otherwise
work on the files themselves, holding the single-instance lock while they do.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linda_desktop.base.errors import AlreadyRunning, LindaError, NoBackups, ProfileInUse
from linda_desktop.base.events import Event, Notice, NoticeKind, QrCode, StateChanged
from linda_desktop.base.paths import AppPaths
from linda_desktop.base.settings import Settings
from linda_desktop.service.control import ControlHandler
from linda_desktop.service.session_service import SessionService
from linda_desktop.system.single_instance import ControlClient, InstanceLock, connect_to_running, start_or_connect

log = logging.getLogger(__name__)


def build_service(paths: AppPaths, *, wa_url: str, browser: str | None,
                  on_event: Callable[[Event], None], background: bool = False,
                  pairing_phone: str | None = None) -> SessionService:
    settings = Settings.load(paths.settings_file)
    for problem in settings.problems:  # a bad value is never fatal: the default, and the owner is told
        on_event(Notice(NoticeKind.SETTINGS_INVALID, problem.message, {"key": problem.key, "fix": problem.fix}))
    return SessionService(paths, settings, wa_url=wa_url, browser=browser, on_event=on_event,
                          background=background, pairing_phone=pairing_phone)


# ---------------------------------------------------------------------- control channel

def ask_running_app(paths: AppPaths, request: dict[str, Any], timeout: float = 600) -> dict[str, Any] | None:
    """Send ``request`` to the running app; None when no app runs."""
    client = connect_to_running(paths.state)
    if client is None:
        return None
    return _ask(client, request, timeout)


def _ask(client: ControlClient, request: dict[str, Any], timeout: float) -> dict[str, Any]:
    answer = client.request(request, timeout=timeout)
    if not answer.get("ok"):
        raise LindaError(str(answer.get("error") or "the running app refused the command"))
    return {"result": answer.get("result")}


# ---------------------------------------------------------------------- `run`

class EventPrinter:
    """`run` output: JSON lines (`--json`) or words and a terminal QR code for people."""

    def __init__(self, json_lines: bool) -> None:
        self.json_lines = json_lines

    def __call__(self, event: Event) -> None:
        if self.json_lines:
            sys.stdout.write(json.dumps(event.to_json()) + "\n")
            sys.stdout.flush()
            return
        if isinstance(event, QrCode):
            if event.idle:
                print("The QR codes expired. Restart with `linda-desktop run` to get new ones.", flush=True)
                return
            import segno

            print("\nScan this code: WhatsApp on your phone → Linked devices → Link a device\n", flush=True)
            segno.make(event.data, error="l").terminal(compact=True)
            sys.stdout.flush()
        elif isinstance(event, StateChanged):
            from linda_desktop.base.events import SessionState

            words = {SessionState.CONNECTED: "Connected.", SessionState.NEEDS_LINK: "Needs linking.",
                     SessionState.RESTORING: "Restoring the session…", SessionState.STARTING: "Starting…"}
            text = words.get(event.state, event.state.value.replace("_", " ").capitalize())
            print(text + (f" ({event.reason})" if event.reason else ""), flush=True)
        else:
            payload = event.to_json()
            kind = payload.pop("event")
            print(f"{kind}: " + ", ".join(f"{k}={v}" for k, v in payload.items()), flush=True)


def run_headless(paths: AppPaths, *, wa_url: str, browser: str | None, json_lines: bool,
                 pairing_phone: str | None = None) -> int:
    """`linda-desktop run`: the service with no tray. SIGINT/SIGTERM: flush, back up, exit 0.

    A stop signal at any moment, start-up included, is the owner's wish: exit 0, quietly."""
    stop = _StopSignals()
    try:
        control = ControlHandler()
        instance = start_or_connect(paths.state, control)
        if isinstance(instance, ControlClient):
            raise AlreadyRunning("Linda Desktop is already running with this data folder",
                                 "use `linda-desktop status`, or quit the running app first")
        try:
            service = build_service(paths, wa_url=wa_url, browser=browser, on_event=EventPrinter(json_lines),
                                    pairing_phone=pairing_phone)  # `run --phone`: a pairing code, not a QR
            stop.service = service

            async def main() -> None:
                stop.attach_loop(asyncio.get_running_loop())
                task = asyncio.create_task(service.run())
                while service.loop is None and not task.done():
                    await asyncio.sleep(0.01)
                control.attach(service)
                from linda_desktop.api import start_api

                api = start_api(service, paths, service.settings)  # bot API (issue 6): off unless enabled
                try:
                    await task
                finally:
                    api.close()

            try:
                asyncio.run(main())
            except Exception as exc:
                if not stop.requested:
                    raise
                log.warning("while stopping: %s: %s", type(exc).__name__, exc)  # asked to stop: not a failure
            finally:
                stop.install()  # asyncio.run put back the default handlers: a second signal must not kill
        finally:
            instance.close()
    except KeyboardInterrupt:  # a stop before the service could take it
        return 0
    if service.fatal_error is not None:
        if stop.requested and service.fatal_error is not stop.fatal_before:  # the stop caused it
            log.info("stopped on request while starting (%s)", service.fatal_error)
            return 0
        print(f"linda-desktop: {service.fatal_error}", file=sys.stderr)
        return 1
    return 0


class _StopSignals:
    """SIGINT/SIGTERM handlers for `run`, in force from the first moment: each asks the service
    to stop (or, before there is one, remembers the wish so that start-up ends at once)."""

    def __init__(self) -> None:
        self.requested = False
        self.fatal_before: LindaError | None = None  # a failure the service had before the stop was asked
        self.service: SessionService | None = None
        self.install()

    def install(self) -> None:
        for sig in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
            if sig is not None:
                signal.signal(sig, self._on_signal)

    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Inside the loop, let asyncio wake on the signal (a Python handler waits for the main thread)."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.request)
            except (NotImplementedError, RuntimeError, AttributeError):  # Windows: the Python handler stays
                pass

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.service is None:
            self.requested = True
            raise KeyboardInterrupt  # nothing runs yet: unwind; `run` exits 0
        self.request()

    def request(self) -> None:
        if not self.requested:
            log.info("stop requested by a signal")
            self.fatal_before = self.service.fatal_error if self.service is not None else None
        self.requested = True
        if self.service is not None:
            try:
                self.service.request_stop()
            except RuntimeError:  # its loop is closed: the service has already stopped
                pass


# ---------------------------------------------------------------------- tray

def run_tray_app(paths: AppPaths, *, wa_url: str, browser: str | None, background: bool) -> int:
    """The tray application. A second launch asks the first one to show its window and exits."""
    control = ControlHandler()
    instance = start_or_connect(paths.state, control)
    if isinstance(instance, ControlClient):
        answer = _ask(instance, {"cmd": "show"}, timeout=10)
        log.info("another instance is running; asked it to show its window (%s)", answer)
        return 0
    try:
        from linda_desktop.ui.main import run_tray
    except ImportError as exc:
        instance.close()
        raise LindaError(f"The tray needs Qt (PySide6), which failed to load: {exc}",
                         "reinstall Linda Desktop, or use `linda-desktop run`") from exc
    if browser is None:
        browser = _browser_or_first_run_download(paths)
        if browser is None:  # the owner cancelled the download: nothing to run
            instance.close()
            return 1

    holder: dict[str, SessionService] = {}
    from linda_desktop.ui.bot_api import BotApi

    bot_api = BotApi(paths)  # bot API (issue 6): starts with the service; Bot API ▸ switches it

    def factory(on_event: Callable[[Event], None]) -> SessionService:
        service = build_service(paths, wa_url=wa_url, browser=browser, on_event=on_event, background=background)
        holder["service"] = service
        return service

    def on_service_ready(service: SessionService, show: Callable[[], None]) -> None:
        control.attach(service, on_show=show)

    try:
        return run_tray(factory, paths=paths, background=background, wa_url=wa_url, browser=browser,
                        on_service_ready=on_service_ready, bot_api=bot_api)
    finally:
        bot_api.close()
        instance.close()


def _browser_or_first_run_download(paths: AppPaths) -> str | None:
    """An installed Chrome/Edge/Chromium when there is one; otherwise download Playwright's
    Chromium into the app's folder, with a progress window (first run of an installed app)."""
    from linda_desktop.base.errors import BrowserNotFound
    from linda_desktop.browser.discovery import find_browser

    try:
        return find_browser(None, extra_playwright_dirs=[paths.browsers]).path
    except BrowserNotFound:
        from linda_desktop.ui.browser_setup import ensure_browser_interactively

        return ensure_browser_interactively(paths)


# ---------------------------------------------------------------------- one-shot commands

@dataclass
class Context:
    """Carries out one CLI command, through the running app when there is one."""

    paths: AppPaths
    wa_url: str
    browser: str | None

    def _remote(self, request: dict[str, Any], timeout: float = 600) -> tuple[bool, Any]:
        """(True, result) when a running app carried the request out; (False, None) when none runs."""
        answer = ask_running_app(self.paths, request, timeout)
        return (False, None) if answer is None else (True, answer["result"])

    def _locked(self) -> InstanceLock:
        self.paths.ensure(self.paths.state)
        instance = InstanceLock(self.paths.lock_file)
        if not instance.acquire():
            raise AlreadyRunning("Linda Desktop is starting up with this data folder", "try again in a few seconds")
        return instance

    def _store(self, *, create: bool = True) -> Any:
        from linda_desktop.session.backup import BackupStore
        from linda_desktop.session.keystore import KeyStore

        key = KeyStore(self.paths.passphrase_file).load_key(create=create)
        settings = Settings.load(self.paths.settings_file)
        return BackupStore(self.paths.backups, key, keep=settings.keep_backups, work_dir=self.paths.work)

    def status(self) -> dict[str, Any]:
        from linda_desktop.service.diagnostics import collect_status

        try:
            running, remote = self._remote({"cmd": "status"}, timeout=30)
        except LindaError:
            running = False
        if running:
            return remote
        return collect_status(self.paths, wa_url=self.wa_url, browser=self.browser, running=False)

    def backups(self) -> list[dict[str, Any]]:
        from linda_desktop.session.backup import list_backups

        running, remote = self._remote({"cmd": "backups"}, timeout=30)
        if running and remote:
            return remote
        # Stopped, or running without a key (it then lists none): list what is on disk. With the
        # key at hand key_matches is checked; without it, it is None ("cannot be opened").
        key = None
        if not running:
            from linda_desktop.session.keystore import KeyStore

            try:
                key = KeyStore(self.paths.passphrase_file).load_key(create=False)
            except LindaError:
                key = None
        return [b.to_json() for b in list_backups(self.paths.backups, key)]

    def verify(self, backup_id: str | None) -> list[dict[str, Any]]:
        """Check every backup (or one) without touching the profile: [{"id", "ok", "error"}]."""
        running, remote = self._remote({"cmd": "verify", "id": backup_id})
        if running:
            return remote
        return self._store(create=False).verify_all(backup_id)

    def backup(self) -> dict[str, Any]:
        from linda_desktop import __version__
        from linda_desktop.session import profile
        from linda_desktop.session.state import SessionStateStore

        running, remote = self._remote({"cmd": "backup"})
        if running:
            return remote
        instance = self._locked()
        try:
            profile.clear_stale_locks(self.paths.profile)
            if not profile.validate_profile(self.paths.profile, self.wa_url).has_session:
                raise NoBackups("There is no WhatsApp session to back up yet", "link this computer first")
            store = self._store()
            info = store.create(self.paths.profile, origin_url=self.wa_url, reason="manual", app_version=__version__)
            store.rotate()
            SessionStateStore(self.paths.state_file).record("backup", id=info.id, size=info.size, reason="manual")
            return info.to_json()
        finally:
            instance.release()

    def restore(self, backup_id: str | None) -> dict[str, Any]:
        from linda_desktop.session import profile
        from linda_desktop.session.state import SessionStateStore

        running, remote = self._remote({"cmd": "restore", "id": backup_id})
        if running:
            return remote
        instance = self._locked()
        try:
            holders = profile.find_browser_processes(self.paths.profile)
            if holders:
                raise ProfileInUse(f"A browser (process {holders[0]}) still has the session open",
                                   "quit it (or Linda Desktop) first", pid=holders[0])
            store = self._store()
            skipped: list[dict[str, Any]] = []
            if backup_id:
                target = store.get(backup_id)
            else:
                target, skipped = store.newest_verified()  # skips damaged / other-key ones, says which
            store.restore(target.id, self.paths.profile)
            meta = SessionStateStore(self.paths.state_file)
            meta.record("backup_restore", id=target.id, why="requested by the owner")
            meta.clear_revoked()
            return {"restored": target.id, "state": None, "skipped": skipped}
        finally:
            instance.release()

    def relink(self) -> None:
        from linda_desktop.session import profile
        from linda_desktop.session.state import SessionStateStore

        if self._remote({"cmd": "relink"})[0]:
            return
        instance = self._locked()
        try:
            if self.paths.profile.exists():
                profile.quarantine(self.paths.profile, self.paths.quarantine, "re-link requested by the owner")
            meta = SessionStateStore(self.paths.state_file)
            meta.record("relink")
            if meta.write_error is not None:  # else the next start would think it is still linked
                raise meta.write_error
        finally:
            instance.release()

    def import_session(self, source: str) -> dict[str, Any]:
        from linda_desktop.session.importer import import_session
        from linda_desktop.session.state import SessionStateStore

        source_path = str(Path(source).expanduser().resolve())
        running, remote = self._remote({"cmd": "import", "path": source_path})
        if running:
            return remote
        instance = self._locked()
        try:
            try:
                store = self._store()
                backup_current = lambda: store.create(self.paths.profile, origin_url=self.wa_url, reason="pre-import")  # noqa: E731
            except LindaError as exc:
                log.warning("importing without a backup of the current profile: %s", exc)
                backup_current = None
            result = import_session(Path(source_path), self.paths, origin_url=self.wa_url,
                                    backup_current=backup_current)
            meta = SessionStateStore(self.paths.state_file)
            meta.record("import", source_kind=result.source_kind, files=result.files)
            meta.clear_revoked()
            return {"imported": source_path, "files": result.files}
        finally:
            instance.release()

    def finish_link(self) -> dict[str, Any]:
        from linda_desktop.base.errors import NotRunning

        running, remote = self._remote({"cmd": "finish_link"})
        if not running:
            raise NotRunning("Linda Desktop is not running", "start it (or `linda-desktop run`) first")
        return remote

    def clear_logs(self) -> int:
        from linda_desktop.base.logs import clear_logs
        from linda_desktop.session.state import SessionStateStore

        meta = SessionStateStore(self.paths.state_file)
        meta.clear_logs()
        if meta.write_error is not None:
            raise meta.write_error
        return clear_logs(self.paths)

    def set_passphrase(self, passphrase: str) -> None:
        from linda_desktop.session.keystore import KeyStore

        self.paths.ensure(self.paths.data)
        KeyStore(self.paths.passphrase_file).enable_passphrase(passphrase)
