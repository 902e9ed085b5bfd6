"""The service's side of the bot API (issue 14): the in-page bridge, catch-up after downtime, acks,
a quiet phone and liveness. SessionService keeps thin delegations to this (its "bot API" section).

Events go to the API listeners (``SessionService.subscribe``) as ``BotEvent``s:
  message   a message WhatsApp added (ours too: ``from_me``); ``backfilled`` when it came from
            the catch-up after a start/reconnect instead of the live event
  ack       a sent message's ack changed (1 sent, 2 delivered, 3 read, 4 played, -1 failed)
  liveness  a "connected but dead" episode: what was seen and what was done
  bridge    the bridge became ready (version) or never did (rolled back)

Nothing here may hurt the session: every failure is logged and swallowed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HEALTH_EVERY_SECONDS = 15.0
HEALTH_TIMEOUT_SECONDS = 10.0
BRIDGE_READY_TIMEOUT_SECONDS = 90.0
# WhatsApp hands its offline queue over during the first seconds (or minutes) after a connect:
# the catch-up runs again after these delays; dedup by message id makes repeats free of effect.
REPLAY_AGAIN_SECONDS = (3.0, 10.0, 30.0, 90.0)
HEAL_BACKOFF_SECONDS = (30.0, 120.0, 600.0)   # after the 1st, 2nd, 3rd+ heal in a row


@dataclass(frozen=True)
class BotEvent:
    kind: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"event": self.kind, **self.data}


@dataclass
class LivenessEpisode:
    """A "connected but dead" finding. ``why``: health_timeout, health_failed, stream, silent."""

    why: str
    detail: str
    since: float
    action: str = "none"          # reload | restart_browser | reported


Marks = Callable[[float], dict[str, int]]  # wall-clock time → chat_id → newest timestamp seen before it
Healer = Callable[[LivenessEpisode], Awaitable[None]]


class BotLink:
    """One per SessionService. ``service`` is used for: settings, paths, state, the page, its
    lock, ``_fan_out``, ``meta.record``, ``_notice``, ``_close_page``."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.enabled = False
        self.bridge: Any = None            # browser.messaging.MessageBridge
        self.marks: Marks = lambda before: {}
        self.connected_wall: float | None = None
        self.healer: Healer | None = None  # set by whoever heals (default: reload, then restart)
        # Set by the API server: its URL, the webhook outbox (pending, dead letters), the event log.
        self.api_status: Callable[[], dict[str, Any]] | None = None
        self.last_frame = time.monotonic()
        self.ready = False
        self.connected_since: float | None = None
        self.episodes: list[dict[str, Any]] = []
        self.replays = 0
        self.replayed = 0
        self.quiet_ok: bool | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watched: Any = None
        self._heal_streak = 0
        self._last_heal = 0.0
        self._ready_deadline: float | None = None
        self._heal_not_before = 0.0
        self._monitor_task: asyncio.Task[Any] | None = None
        self._replaying = False
        self._replay_again = False
        self._stream_bad_since: float | None = None
        self._last_probe = 0.0

    # ------------------------------------------------------------------ settings
    def _setting(self, name: str, default: Any) -> Any:
        return getattr(self.service.settings, name, default)

    @property
    def bridge_dir(self) -> Path:
        return Path(self.service.paths.data) / "bridge"

    # ------------------------------------------------------------------ attach
    def _ensure_bridge(self) -> Any:
        if self.bridge is None:
            from linda_desktop.browser.messaging import MessageBridge, find_wajs

            self.bridge = MessageBridge(self._on_page, find_wajs(self.bridge_dir))
        return self.bridge

    async def attach_context(self, context: Any) -> None:
        """Before the first navigation (the page's scripts have not run yet)."""
        if not self.enabled:
            return
        try:
            await self._ensure_bridge().attach_context(context)
        except Exception as exc:  # noqa: BLE001 - the session must not suffer from the bot bridge
            log.warning("message bridge not attached: %s", exc)

    async def attach(self, page: Any) -> None:
        """``page``: the service's WhatsAppPage, already started."""
        if not self.enabled:
            return
        try:
            bridge = self._ensure_bridge()
            if page.page is not None:
                await bridge.attach(page.page)
                self._watch(page.page)
            self.ready = False
            self._ready_deadline = time.monotonic() + float(self._setting("bridge_ready_seconds",
                                                                          BRIDGE_READY_TIMEOUT_SECONDS))
        except Exception as exc:  # noqa: BLE001 - the session must not suffer from the bot bridge
            log.warning("message bridge not attached: %s", exc)

    def _watch(self, page: Any) -> None:
        """Frames: every WebSocket frame and finished request counts as a sign of life."""
        if self._watched is page:
            return
        self._watched = page
        self.last_frame = time.monotonic()

        def alive(*_args: Any) -> None:
            self.last_frame = time.monotonic()

        def on_socket(ws: Any) -> None:
            ws.on("framereceived", alive)
        try:
            page.on("websocket", on_socket)
            page.on("requestfinished", alive)
        except Exception:  # noqa: BLE001 - Playwright versions differ in their events
            log.debug("cannot watch page traffic")

    # ------------------------------------------------------------------ from the page
    def _on_page(self, kind: str, data: dict[str, Any]) -> None:
        self.last_frame = time.monotonic()
        if kind == "message":
            self._emit_message(data)
        elif kind == "ack":
            self.service._fan_out(BotEvent("ack", data))
        elif kind == "unread":
            if self.service.state.value == "connected" and self.ready:
                self._spawn(self._replay_coalesced())
        elif kind == "bridge_ready":
            self.ready = True
            self._ready_deadline = None
            self.service._fan_out(BotEvent("bridge", {"state": "ready", **data}))
            if self.service.state.value == "connected":
                self._spawn(self.after_connect())

    def _emit_message(self, data: dict[str, Any]) -> None:
        chat = data.get("chat_id") or ""
        if chat.endswith("@newsletter") and not self._setting("bot_channels", False):
            return
        self.service._fan_out(BotEvent("message", data))

    # ------------------------------------------------------------------ on state changes
    def on_state(self, state: str) -> None:
        """Called by the service after each state change (on its loop)."""
        if not self.enabled:
            return
        if state == "connected":
            if self.connected_since is None:
                self.connected_wall = time.time()
            self.connected_since = time.monotonic()
            self.last_frame = time.monotonic()
            self._spawn(self.after_connect())
            if self._monitor_task is None or self._monitor_task.done():
                self._start_monitor()
        else:
            self.connected_since = None

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` on the service's loop (from its thread, or handed over from another)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # not on a loop thread (e.g. an event fanned out from elsewhere)
            loop = self.service.loop
            if loop is None or loop.is_closed():
                coro.close()
                return
            loop.call_soon_threadsafe(self._spawn, coro)
            return
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_monitor(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            loop = self.service.loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._start_monitor)
            return
        if self._monitor_task is None or self._monitor_task.done():
            self._monitor_task = asyncio.ensure_future(self._monitor())

    async def after_connect(self) -> None:
        """After every connect: the quiet phone, then the catch-up."""
        page = self._page()
        if page is None or self.bridge is None:
            return
        for _ in range(40):  # the bridge becomes ready a moment after the page connects
            if self.ready:
                break
            await asyncio.sleep(0.25)
            page = self._page()
            if page is None:
                return
        online = bool(self._setting("show_online", False))
        self.quiet_ok = await self.bridge.quiet(page, online)
        if not online and not self.quiet_ok:
            log.info("could not mark the device unavailable (wa-js has no markUnavailable here)")
        await self._replay_coalesced()
        since = self.connected_since
        for delay in REPLAY_AGAIN_SECONDS:
            await asyncio.sleep(delay)
            if self.connected_since is None or self.connected_since != since or self.service.stopping:
                return  # disconnected (or reconnected: that run takes over)
            await self._replay_coalesced()

    async def _replay_coalesced(self) -> None:
        """One catch-up at a time; a request during one runs one more after it."""
        if self._replaying:
            self._replay_again = True
            return
        self._replaying = True
        try:
            while True:
                self._replay_again = False
                await self.replay()
                if not self._replay_again:
                    return
        finally:
            self._replaying = False

    async def replay(self) -> int:
        """Emit what arrived while we were away (deduplicated downstream by message id)."""
        page = self._page()
        if page is None or self.bridge is None:
            return 0
        window_h = float(self._setting("replay_window_hours", 24.0))
        cap = int(self._setting("replay_max_messages", 500))
        try:
            marks = self.marks(self.connected_wall or time.time())
        except Exception:
            log.exception("replay marks unavailable")
            marks = {}
        since = int(time.time() - window_h * 3600)
        messages = await self.bridge.replay(page, since=since, cap=cap, marks=marks,
                                            channels=bool(self._setting("bot_channels", False)))
        if messages is None:
            return 0
        self.replays += 1
        self.replayed += len(messages)
        if messages:
            log.info("catch-up: %d message(s) that arrived while away", len(messages))
        for payload in messages:
            self._emit_message(payload)
        return len(messages)

    # ------------------------------------------------------------------ liveness
    def _page(self) -> Any:
        page = self.service._page
        return page.page if page is not None and page.page is not None and not page.page.is_closed() else None

    async def _monitor(self) -> None:
        every = float(self._setting("liveness_check_seconds", HEALTH_EVERY_SECONDS))
        while self.service.state.value == "connected" and not self.service.stopping:
            await asyncio.sleep(every)
            if self.service.state.value != "connected":
                return
            if time.monotonic() < self._heal_not_before:
                continue  # back-off after a heal: give the reloaded page time
            episode = await self.check()
            if episode is not None:
                # Keep watching after the heal: a reload leaves the state "connected", so no fresh
                # monitor would start, and a reload that did not cure must escalate (after its back-off).
                await self._heal(episode)

    async def check(self) -> LivenessEpisode | None:
        """One liveness check while the UI says connected; None when all is well."""
        self._check_bridge_ready()
        page = self._page()
        if page is None or self.bridge is None:
            return None
        now = time.monotonic()
        silence = float(self._setting("liveness_silence_seconds", 120.0))
        health = await self.bridge.health(page, timeout=HEALTH_TIMEOUT_SECONDS)
        if health is not None and not health.get("ready"):
            return None  # no wa-js to ask: the session's own watcher judges the page (never depend on the bridge)
        if health is None:
            return LivenessEpisode("health_timeout", f"the page did not answer in {HEALTH_TIMEOUT_SECONDS:g} s", now)
        if not health.get("ok", True):
            return LivenessEpisode("health_failed", str(health.get("error") or "")[:200], now)
        stream = health.get("stream") or {}
        info = str(stream.get("info") or "").upper() if isinstance(stream, dict) else ""
        if info and info not in ("NORMAL", "SYNCING", "RESUMING", "PAIRING"):
            # A reconnect passes through OPENING/CONNECTING: only a stream that stays off counts.
            grace = max(10.0, 2 * float(self._setting("liveness_check_seconds", HEALTH_EVERY_SECONDS)))
            if self._stream_bad_since is None:
                self._stream_bad_since = now
            elif now - self._stream_bad_since >= grace:
                self._stream_bad_since = None
                return LivenessEpisode("stream", f"stream is {info[:40]} while the page shows the chats", now)
        else:
            self._stream_bad_since = None
        # The server round trip is a real query to WhatsApp: asked when traffic went quiet, and
        # otherwise only every 20 checks (5 min by default), not every turn.
        every = float(self._setting("liveness_check_seconds", HEALTH_EVERY_SECONDS))
        if now - self.last_frame < 60.0 and now - self._last_probe < 20 * every:
            return None
        self._last_probe = now
        probe = await self.bridge.probe(page, timeout=HEALTH_TIMEOUT_SECONDS)
        if probe is None or not probe.get("ok", False):
            why = (probe or {}).get("error") or "the page did not answer"
            return LivenessEpisode("health_failed", f"a round trip to WhatsApp failed: {str(why)[:160]}", now)
        if not probe.get("skipped"):
            self.last_frame = time.monotonic()
        quiet_for = now - self.last_frame
        if quiet_for > silence:
            return LivenessEpisode("silent", f"no frames or events for {quiet_for:.0f} s", now)
        return None

    def _check_bridge_ready(self) -> None:
        """A bridge that never becomes ready: when it is one `update-bridge` fetched, mark it bad
        so the next browser start uses the previous one."""
        if self.ready or self._ready_deadline is None or time.monotonic() < self._ready_deadline:
            return
        self._ready_deadline = None
        wajs = getattr(self.bridge, "wajs", None)
        rolled = False
        if wajs is not None and getattr(wajs, "source", "") == "update":
            from linda_desktop.browser.bridge_files import mark_bad

            rolled = mark_bad(self.bridge_dir, wajs.version)
        version = wajs.version if wajs is not None else None
        log.warning("message bridge (wa-js %s) did not become ready%s", version,
                    "; rolled back to the previous build for the next start" if rolled else "")
        self.service.meta.record("bridge_not_ready", version=version, rolled_back=rolled)
        self.service._fan_out(BotEvent("bridge", {"state": "not_ready", "version": version, "rolled_back": rolled}))

    async def _heal(self, episode: LivenessEpisode) -> None:
        now = time.monotonic()
        if now - self._last_heal > HEAL_BACKOFF_SECONDS[-1] * 2:
            self._heal_streak = 0
        self._heal_streak += 1
        self._last_heal = now
        if self.healer is not None:
            episode.action = "reported"
            self._record(episode)
            await self.healer(episode)
            return
        # Default heal: reload the page first, then restart the browser (the supervisor relaunches
        # a closed page with its own back-off).
        delay = HEAL_BACKOFF_SECONDS[min(self._heal_streak - 1, len(HEAL_BACKOFF_SECONDS) - 1)]
        episode.action = "reload" if self._heal_streak == 1 else "restart_browser"
        self._record(episode)
        lock = self.service._lock
        try:
            if lock is None:
                return
            async with lock:
                page = self.service._page
                if page is None:
                    return
                if episode.action == "reload":
                    await page.reload()
                else:
                    await self.service._close_page()
        except Exception:
            log.exception("liveness heal failed")
        self._heal_not_before = time.monotonic() + delay

    def _record(self, episode: LivenessEpisode) -> None:
        entry = {"why": episode.why, "detail": episode.detail, "action": episode.action, "at": time.time()}
        self.episodes = [*self.episodes[-19:], entry]
        log.warning("connected but dead (%s: %s); %s", episode.why, episode.detail, episode.action)
        try:
            self.service.meta.record("liveness", why=episode.why, detail=episode.detail, action=episode.action)
        except Exception:
            log.exception("could not record the liveness episode")
        self.service._fan_out(BotEvent("liveness", entry))
        try:
            self.service._notice("liveness", f"WhatsApp looked connected but nothing came through ({episode.why}); "
                                             f"{episode.action.replace('_', ' ')}")
        except Exception:  # noqa: BLE001 - a heal that fails is logged; the supervisor goes on
            log.debug("no notice for the liveness episode")

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        wajs = getattr(self.bridge, "wajs", None)
        api: dict[str, Any] | None = None
        if self.api_status is not None:
            try:
                api = self.api_status()
            except Exception as exc:  # noqa: BLE001 - a status line, never a failure of `status`
                api = {"error": f"{type(exc).__name__}: {exc}"}
        return {"enabled": self.enabled, "api": api, "bridge_ready": self.ready,
                "wajs": {"version": wajs.version, "source": wajs.source} if wajs is not None else None,
                "quiet": self.quiet_ok, "replays": self.replays, "replayed": self.replayed,
                "liveness_episodes": self.episodes[-5:],
                "seconds_since_traffic": round(time.monotonic() - self.last_frame, 1)}
