"""BotApi: turns the local bot API (linda_desktop.api) on and off while the app runs. No Qt.

The composition root makes one, the tray attaches the service once its loop runs and flips it
from Bot API ▸ Enabled, and ``close()`` ends it at exit:

    bot_api = BotApi(paths)
    bot_api.attach(service)        # starts the server if settings.json says api_enabled
    bot_api.set_enabled(True)      # saves settings.json and starts it now (no restart)
    bot_api.status()               # ApiStatus: off / starting / on (url) / problem (why)
    bot_api.close()

Thread-safe: every method may be called from any thread. Listeners (``subscribe``) are called,
from whichever thread noticed, whenever the status may have changed (e.g. the server finished
starting on its own thread); they must only hand the news over (the tray emits a Qt signal).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from linda_desktop.base.errors import LindaError
from linda_desktop.base.events import ApiState
from linda_desktop.base.paths import AppPaths
from linda_desktop.base.settings import Settings

log = logging.getLogger(__name__)


Starter = Callable[[Any, AppPaths, Settings], Any]  # linda_desktop.api.start_api's shape


@dataclass(frozen=True)
class ApiStatus:
    state: ApiState
    enabled: bool                    # what settings.json says (the menu's check mark)
    url: str | None = None           # where it listens, when ApiState.ON
    problem: LindaError | None = None  # why it is not running, when ApiState.PROBLEM

    @property
    def docs_url(self) -> str | None:
        return f"{self.url}/docs" if self.url else None


def _start_api(service: Any, paths: AppPaths, settings: Settings) -> Any:
    from linda_desktop.api import start_api

    return start_api(service, paths, settings)


class BotApi:
    def __init__(self, paths: AppPaths, *, starter: Starter | None = None) -> None:
        self.paths = paths
        self._starter = starter or _start_api
        self._lock = threading.RLock()
        self._service: Any = None
        self._handle: Any = None
        self._settled = False  # _await_start has seen the current handle listen or fail
        self._problem: LindaError | None = None
        self._enabled = self._settings().api_enabled
        self._owner_pending = False  # the owner switched it on before the service was there
        self._closed = False
        self._listeners: list[Callable[[], None]] = []

    # ---- queries ---------------------------------------------------------------------------

    def status(self) -> ApiStatus:
        with self._lock:
            handle, enabled = self._handle, self._enabled
            if handle is not None:
                if not self._settled:
                    return ApiStatus(ApiState.STARTING, enabled)
                if handle.running:
                    return ApiStatus(ApiState.ON, enabled, url=handle.url)
                if handle.error is not None:
                    return ApiStatus(ApiState.PROBLEM, enabled, problem=handle.error)
                return ApiStatus(ApiState.STARTING, enabled)
            if self._problem is not None:
                return ApiStatus(ApiState.PROBLEM, enabled, problem=self._problem)
            if enabled and not self._closed:
                return ApiStatus(ApiState.STARTING, enabled)  # waits for the session service
            return ApiStatus(ApiState.OFF, enabled)

    def token(self) -> str:
        """The installation's API token (made on first use, kept in the OS keyring; never log
        it). Raises KeyringUnavailable. Blocks on D-Bus: call it off the GUI thread."""
        from linda_desktop.api.token import load_token

        token = load_token(create=True)
        if not token:
            from linda_desktop.base.errors import KeyringUnavailable
            raise KeyringUnavailable("The system keyring gave no API token", "check the system keyring")
        return token

    # ---- control -------------------------------------------------------------------------------

    def subscribe(self, listener: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def attach(self, service: Any) -> None:
        """The session service runs (its loop exists): start the API if it is enabled."""
        with self._lock:
            if self._closed or self._service is not None:
                return
            self._service = service
            if self._enabled:
                self._start_locked(owner=self._owner_pending)
            self._owner_pending = False
        self._changed()

    def set_enabled(self, enabled: bool) -> None:
        """Save ``api_enabled`` in settings.json and start or stop the server now. If an owner's
        start fails (port taken, no keyring, …) the setting goes back to off and ``status()``
        says why. Stopping waits (briefly) for the server thread: the port is free on return.
        Raises OSError when settings.json cannot be written."""
        with self._lock:
            if self._closed:
                return
            self._save(enabled)
            self._stop_locked()
            self._problem = None
            if enabled and self._service is not None:
                self._start_locked(owner=True)
            self._owner_pending = enabled and self._service is None
        log.info("bot API switched %s by the owner", "on" if enabled else "off")
        self._changed()

    def close(self) -> None:
        """Stop the server (settings.json is left as it is). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop_locked()
        self._changed()

    # ---- internals ---------------------------------------------------------------------------

    def _settings(self) -> Settings:
        return Settings.load(self.paths.settings_file)

    def _save(self, enabled: bool) -> None:
        settings = self._settings()
        settings.api_enabled = enabled
        settings.save(self.paths.settings_file)
        self._enabled = enabled

    def _start_locked(self, *, owner: bool) -> None:
        self._problem = None
        handle = self._starter(self._service, self.paths, self._settings())
        self._handle, self._settled = handle, False
        threading.Thread(target=self._await_start, args=(handle, owner), name="linda-api-start",
                         daemon=True).start()

    def _stop_locked(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            # A server still in its first milliseconds has no loop to stop yet; wait (briefly)
            # until it listens or failed, so close() really ends it.
            handle.wait_ready(2.0)
            handle.close()

    def _await_start(self, handle: Any, owner: bool) -> None:
        """On a helper thread: wait until ``handle`` listens or failed, then tell the listeners."""
        handle.wait_ready(3600.0)
        with self._lock:
            if handle is not self._handle:
                return  # switched off (or again) meanwhile: that call told the listeners
            self._settled = True
            if handle.error is not None:
                self._problem, self._handle = handle.error, None
                if owner and not self._closed:
                    try:
                        self._save(False)  # it did not work: the menu shows it unchecked
                    except OSError:
                        log.exception("could not switch the bot API setting back off")
        self._changed()

    def _changed(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener()
            except Exception:
                log.exception("bot API listener failed")
