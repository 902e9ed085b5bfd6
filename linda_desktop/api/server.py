"""The bot API server: its own thread and asyncio loop, so nothing a client does can slow the
session's loop. It talks to the service only through thread-safe calls (``subscribe``,
``send_message`` via ``run_coroutine_threadsafe``, ``state``/``account`` reads).

Two dialects on one port: today's ``/v1`` routes (Bearer token) and WAHA's subset (``/api/…``,
``/ping``, ``/health``; ``X-Api-Key`` or Bearer, the same token). Every inbound message, ack and
state change is first written to the event store (api/store.py: SQLite, deduplicated by message
id), then offered to SSE streams (``id:`` = the store's sequence number, so ``Last-Event-ID``
works across app restarts) and the webhook outbox (api/outbox.py: durable, retried, dead letters).

Security: binds loopback only (anything else is refused before a socket opens); every /v1 path
but the OpenAPI document needs ``Authorization: Bearer <token>`` (constant-time compare); the
Host header must name the loopback (a web page that rebinds a DNS name to 127.0.0.1 gets 421);
no CORS headers, so browsers cannot read answers. Limits: 64 connections, 16 event streams,
512 KiB bodies, 10 s to send a request head. Message text is never logged.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from linda_desktop import __version__
from linda_desktop.api import openapi, waha
from linda_desktop.api.errors import ApiUnavailable
from linda_desktop.api.http import (
    HEADER_TIMEOUT,
    IDLE_TIMEOUT,
    MAX_HEADER_BYTES,
    HttpError,
    Request,
    error_body,
    json_bytes,
    read_request,
    response_bytes,
)
from linda_desktop.api.outbox import TARGET, Outbox, linda_body, targets_for
from linda_desktop.api.store import FILE_NAME, EventStore, StoredEvent
from linda_desktop.api.token import load_token, token_matches
from linda_desktop.api.webhooks import RETRY_DELAYS, is_loopback_host
from linda_desktop.base.errors import KeyringUnavailable, LindaError

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 64
MAX_STREAMS = 16
STREAM_QUEUE = 1000
REPLAY_EVENTS = 500
HEARTBEAT_SECONDS = 15.0
SEND_TIMEOUT_SECONDS = 40.0
FIELDS = {"to", "text", "queue"}
SSE_KINDS = ("message", "ack", "state", "liveness", "bridge")
SEND_TARGET = "whatsapp"


def check_host(host: str) -> str:
    """The address to bind: loopback only. ApiUnavailable names the setting to fix."""
    if not is_loopback_host(host):
        raise ApiUnavailable(f"The bot API only listens on this computer; api_host {host!r} is not a "
                             "loopback address", "set api_host to 127.0.0.1 in settings.json")
    return "127.0.0.1" if host.lower() == "localhost" else host.strip("[]")


class ApiServer:
    """Start with ``start()``; ``close()`` stops it. ``error`` says why it is not running."""

    def __init__(self, service: Any, *, host: str = "127.0.0.1", port: int = 8723,
                 webhook_url: str | None = None, token_loader: Callable[[], str | None] = load_token,
                 webhook_retry_delays: tuple[float, ...] = RETRY_DELAYS, settings: Any = None,
                 store_path: Path | None = None) -> None:
        self.service = service
        self.host = host
        self.port = port
        self.webhook_url = webhook_url
        self.settings = settings if settings is not None else getattr(service, "settings", None)
        self.error: LindaError | None = None
        self.webhook_error: LindaError | None = None
        self.webhooks: Outbox | None = None
        self.store: EventStore | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._store_path = store_path
        self._token_loader = token_loader
        self._retry_delays = webhook_retry_delays
        self._token = ""
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._streams: set[asyncio.Queue[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._ingest: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._ingest_thread: threading.Thread | None = None
        self._waha_status: str | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._sender_wake: asyncio.Event | None = None
        self.requests = 0

    def _setting(self, name: str, default: Any) -> Any:
        return getattr(self.settings, name, default) if self.settings is not None else default

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._ready.is_set() and self.error is None and self._thread is not None and self._thread.is_alive()

    def start(self) -> ApiServer:
        self._thread = threading.Thread(target=self._run, name="linda-api", daemon=True)
        self._thread.start()
        return self

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """True once listening; False when it failed (see ``error``) or timed out."""
        return self._ready.wait(timeout) and self.error is None

    def close(self, timeout: float = 5.0) -> None:
        loop, stop = self.loop, self._stop
        if loop is not None and stop is not None:
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # loop already closed
                pass
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # never let the thread die silently
            log.exception("bot API stopped")
            self.error = self.error or ApiUnavailable(f"The bot API stopped: {type(exc).__name__}",
                                                      "see the log; restart Linda Desktop")
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._sender_wake = asyncio.Event()
        try:
            server = await self._open()
            self.store = await asyncio.to_thread(EventStore, self._store_file())
        except LindaError as exc:
            self.error = exc
            log.warning("bot API is off: %s", exc)
            self._report("api_unavailable", f"The bot API is off: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - sqlite3.Error, OSError: the event store cannot open
            self.error = ApiUnavailable(f"The bot API cannot open its event store: {type(exc).__name__}: {exc}",
                                        "check the data folder (free space, permissions)")
            log.warning("bot API is off: %s", self.error)
            self._report("api_unavailable", f"The bot API is off: {self.error}")
            return
        self._start_webhooks()
        self._ingest_thread = threading.Thread(target=self._ingest_loop, name="linda-api-ingest", daemon=True)
        self._ingest_thread.start()
        bot = getattr(self.service, "bot", None)
        if bot is not None:
            bot.marks = self.store.chat_marks
            bot.api_status = self._status_for_service
        self._unsubscribe = self.service.subscribe(self._on_service_event)
        self.service.enable_messaging()
        sender = asyncio.ensure_future(self._queued_sender())
        log.info("bot API listening on %s", self.url)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            sender.cancel()
            if bot is not None:
                bot.api_status = None
            if self._unsubscribe is not None:
                self._unsubscribe()
            if self.webhooks is not None:
                await asyncio.to_thread(self.webhooks.close)
            self._ingest.put(None)
            if self._ingest_thread is not None:
                await asyncio.to_thread(self._ingest_thread.join, 5)
            server.close()
            for q in list(self._streams):
                self._end_stream(q)
            for writer in list(self._writers):
                writer.close()
            await asyncio.sleep(0)
            await asyncio.to_thread(self.store.close)
            log.info("bot API stopped")

    def _store_file(self) -> Path:
        if self._store_path is not None:
            return Path(self._store_path)
        return Path(self.service.paths.data) / FILE_NAME

    async def _open(self) -> asyncio.AbstractServer:
        bind = check_host(self.host)
        try:
            token = await asyncio.to_thread(self._token_loader)
        except KeyringUnavailable as exc:
            raise ApiUnavailable("The bot API needs the system keyring for its token", exc.fix) from None
        if not token:
            raise ApiUnavailable("The bot API has no token", "check the system keyring")
        self._token = token
        if not 0 <= int(self.port) <= 65535:
            raise ApiUnavailable(f"api_port {self.port} is not a port number", "set api_port to e.g. 8723")
        try:
            server = await asyncio.start_server(self._client, bind, int(self.port),
                                                limit=MAX_HEADER_BYTES, reuse_address=True)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ApiUnavailable(f"Port {self.port} on {bind} is in use by another program",
                                     "set another api_port in settings.json") from None
            raise ApiUnavailable(f"The bot API cannot listen on {bind}:{self.port}: {exc.strerror}",
                                 "set another api_port in settings.json") from None
        self.host = bind
        self.port = server.sockets[0].getsockname()[1]
        return server

    def _start_webhooks(self) -> None:
        if not self.webhook_url or self.store is None:
            return
        base = self._retry_delays[0] if self._retry_delays else 1.0
        try:
            self.webhooks = Outbox(
                self.store, self.webhook_url, dialect=str(self._setting("webhook_format", "linda")),
                token=self._token, hmac_key=self._setting("webhook_hmac_key", None),
                account=lambda: getattr(self.service, "account", None),
                base_delay=float(self._setting("webhook_retry_base_seconds", base)),
                max_delay=float(self._setting("webhook_retry_max_seconds", 600.0)),
                max_attempts=int(self._setting("webhook_max_attempts", 40))).start()
            log.info("webhooks (%s) go to a local URL on port %s", self.webhooks.dialect,
                     self.webhooks.url.split(":")[-1].split("/")[0])
        except LindaError as exc:
            self.webhook_error = exc
            log.warning("webhooks are off: %s", exc)
            self._report("webhook_unavailable", f"Webhooks are off: {exc}")

    def _report(self, kind: str, message: str) -> None:
        notify = getattr(self.service, "notify", None)
        if callable(notify):
            try:
                notify(kind, message)
            except Exception:
                log.exception("could not report %s", kind)

    # ------------------------------------------------------------------ events
    def _on_service_event(self, event: Any) -> None:
        """On the service's loop thread: queue what the store keeps; QR codes go live only."""
        try:
            payload = event.to_json()
        except Exception:  # noqa: BLE001 - one bad event must not stop the writer thread
            return
        kind = payload.get("event")
        if kind == "qr":
            loop = self.loop
            if loop is not None:
                try:
                    loop.call_soon_threadsafe(self._publish_live, "qr", payload)
                except RuntimeError:
                    pass
        elif kind in SSE_KINDS:
            self._ingest.put(payload)

    def _webhook_targets(self, kind: str) -> tuple[str, ...]:
        if self.webhooks is None:
            return ()
        raw = self._setting("webhook_events", "message,message.ack,session.status") or ""
        events = tuple(e.strip() for e in str(raw).split(",") if e.strip())
        return (TARGET,) if targets_for(kind, self.webhooks.dialect, events) else ()

    def _ingest_loop(self) -> None:
        """One thread writes what the service reports into the store, in order (and keeps the
        log bounded: delivered events past store.KEEP_EVENTS go; message ids stay for dedup)."""
        count = 0
        while True:
            item = self._ingest.get()
            if item is None:
                return
            try:
                for stored in self._ingest_one(item):
                    self._offer(stored)
                count += 1
                if count % 1000 == 1 and self.store is not None:
                    self.store.prune()
            except Exception:
                log.exception("could not store a bot event")

    def _ingest_one(self, payload: dict[str, Any]) -> list[StoredEvent]:
        assert self.store is not None
        payload = dict(payload)
        kind = payload.pop("event")
        out: list[StoredEvent | None] = []
        if kind == "message":
            msg_id = str(payload.get("id") or "")
            if not msg_id or payload.get("type") == "ciphertext":
                return []
            payload.setdefault("from_me", False)
            payload.setdefault("backfilled", False)
            payload["account"] = getattr(self.service, "account", None)
            if not payload["from_me"]:
                out.append(self.store.append("message", payload, dedup="msg:" + msg_id,
                                             targets=self._webhook_targets("message")))
            if self._webhook_targets("message.any") or payload["from_me"]:
                out.append(self.store.append("message.any", payload, dedup="any:" + msg_id,
                                             targets=self._webhook_targets("message.any")))
        elif kind == "ack":
            out.append(self.store.append("ack", payload, dedup=f"ack:{payload.get('id')}:{payload.get('ack')}",
                                         targets=self._webhook_targets("ack")))
        elif kind == "state":
            out.append(self.store.append("state", payload, targets=self._webhook_targets("state")))
            status = waha.session_status(str(payload.get("state")))
            if status != self._waha_status:
                self._waha_status = status
                body = {"name": waha.SESSION, "status": status,
                        "statuses": [{"status": status, "timestamp": int(time.time() * 1000)}]}
                out.append(self.store.append("session.status", body,
                                             targets=self._webhook_targets("session.status")))
        else:
            out.append(self.store.append(kind, payload, targets=self._webhook_targets(kind)))
        stored = [e for e in out if e is not None]
        if self.webhooks is not None and any(self._webhook_targets(e.kind) for e in stored):
            self.webhooks.wake()
        return stored

    def _offer(self, event: StoredEvent) -> None:
        loop = self.loop
        if loop is None or event.kind not in SSE_KINDS:
            return
        try:
            loop.call_soon_threadsafe(self._publish, event.seq, self._stored_frame(event))
        except RuntimeError:
            pass

    @classmethod
    def _stored_frame(cls, event: StoredEvent) -> bytes:
        body = linda_body(event) if event.kind in ("message", "ack", "state", "liveness") else None
        if body is None:
            body = {"event": event.kind, **event.payload, "event_id": event.id}
        if event.kind in ("message", "message.any"):
            body.pop("account", None)
        return cls._frame(str(event.seq), event.kind, body)

    def _publish(self, seq: int, frame: bytes) -> None:
        for q in list(self._streams):
            try:
                q.put_nowait((seq, frame))
            except asyncio.QueueFull:
                log.warning("an event stream fell too far behind; closing it")
                self._end_stream(q)

    def _publish_live(self, kind: str, payload: dict[str, Any]) -> None:
        self._publish(0, self._frame(None, kind, payload))

    @staticmethod
    def _frame(event_id: str | None, kind: str, payload: dict[str, Any]) -> bytes:
        head = f"id: {event_id}\n" if event_id else ""
        return f"{head}event: {kind}\ndata: ".encode() + json_bytes(payload) + b"\n\n"

    def _end_stream(self, q: asyncio.Queue[Any]) -> None:
        self._streams.discard(q)
        while not q.empty():
            q.get_nowait()
        q.put_nowait(None)

    # ------------------------------------------------------------------ connections
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._writers) >= MAX_CONNECTIONS:
            writer.write(response_bytes(503, error_body("busy", "too many connections"), close=True))
            await self._linger(reader)
            await self._close(writer)
            return
        self._writers.add(writer)
        try:
            timeout = HEADER_TIMEOUT
            while self._stop is not None and not self._stop.is_set():
                try:
                    request = await read_request(reader, first_timeout=timeout)
                except HttpError as err:
                    writer.write(self._error(err))
                    await writer.drain()
                    await self._linger(reader)
                    break
                if request is None:
                    break
                timeout = IDLE_TIMEOUT
                self.requests += 1
                if not await self._handle(request, reader, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("bot API connection failed")
        finally:
            self._writers.discard(writer)
            await self._close(writer)

    @staticmethod
    async def _linger(reader: asyncio.StreamReader) -> None:
        """Read and drop what the client still sends (up to 1 MiB / 1 s) before closing, so a
        client busy sending a refused body reads our answer instead of a connection reset."""
        deadline = asyncio.get_running_loop().time() + 1.0
        dropped = 0
        try:
            while dropped < 1024 * 1024:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    return
                chunk = await asyncio.wait_for(reader.read(65536), remaining)
                if not chunk:
                    return
                dropped += len(chunk)
        except (asyncio.TimeoutError, ConnectionError):
            return

    @staticmethod
    async def _close(writer: asyncio.StreamWriter) -> None:
        try:
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), 2)
        except Exception:  # noqa: BLE001 - a bad connection must not stop the server
            pass

    @staticmethod
    def _error(err: HttpError) -> bytes:
        return response_bytes(err.status, error_body(err.code, err.message), headers=err.headers,
                              close=err.close)

    async def _handle(self, request: Request, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        """Answers one request; False when the connection must close."""
        keep = request.keep_alive
        try:
            self._check_host(request)
            route = self._route(request)
            if route == "events":
                return await self._events(request, reader, writer)
            status, body, ctype, headers = await route
            writer.write(response_bytes(status, body, content_type=ctype, headers=headers, close=not keep))
        except HttpError as err:
            keep = keep and not err.close
            body = getattr(err, "body", None) or error_body(err.code, err.message)
            writer.write(response_bytes(err.status, body, headers=err.headers, close=not keep))
        except Exception:
            log.exception("bot API request %s %s failed", request.method, request.path)
            keep = False
            writer.write(response_bytes(500, error_body("internal", "the request failed; see the log"),
                                        close=True))
        await writer.drain()
        return keep

    def _check_host(self, request: Request) -> None:
        host = request.headers.get("host")
        if host is None:
            raise HttpError(400, "bad_request", "the Host header is missing")
        name, port = host, None
        if host.startswith("["):
            name, _, rest = host[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else None
        elif host.count(":") == 1:
            name, port = host.split(":")
        if not is_loopback_host(name) or (port not in (None, str(self.port))):
            raise HttpError(421, "bad_host", "the Host header must name this computer's loopback address")

    def _authorize(self, request: Request) -> None:
        """The /v1 form (``Authorization: Bearer``) or WAHA's ``X-Api-Key``, the same token."""
        key = request.headers.get("x-api-key")
        if key is not None and key and token_matches(self._token, f"Bearer {key}"):
            return
        if not token_matches(self._token, request.headers.get("authorization")):
            raise HttpError(401, "unauthorized", "send Authorization: Bearer <token> or X-Api-Key: <token> "
                                                 "(see Diagnostics)",
                            headers={"WWW-Authenticate": 'Bearer realm="linda-desktop"'})

    def _route(self, request: Request) -> Any:
        routes: dict[str, tuple[str, Callable[..., Any], bool]] = {
            "/v1/openapi.json": ("GET", self._openapi, False),
            "/docs": ("GET", self._docs, False),
            "/v1/status": ("GET", self._status, True),
            "/v1/qr": ("GET", self._qr, True),
            "/v1/messages": ("POST", self._send, True),
            "/v1/events": ("GET", self._events, True),
            "/v1/dead-letters/retry": ("POST", self._retry_dead, True),
            "/ping": ("GET", self._ping, False),
            "/health": ("GET", self._health, True),
            "/api/sessions": ("GET", self._waha_sessions, True),
            "/api/sendText": ("POST", self._waha_send_text, True),
        }
        entry = routes.get(request.path)
        if entry is None:
            entry = self._waha_route(request.path)
        if entry is None:
            if request.path.startswith(("/v1/", "/api/")):
                self._authorize(request)
            raise HttpError(404, "not_found", f"no such path {request.path}")
        method, handler, secured = entry
        if secured:
            self._authorize(request)
        if request.method != method:
            raise HttpError(405, "method_not_allowed", f"use {method} {request.path}",
                            headers={"Allow": method})
        if handler == self._events:
            return "events"
        return handler(request)

    def _waha_route(self, path: str) -> tuple[str, Callable[..., Any], bool] | None:
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[:2] == ["api", "sessions"]:
            return "GET", lambda r: self._waha_session(r, parts[2]), True
        if len(parts) == 4 and parts[0] == "api" and parts[2] == "auth" and parts[3] == "qr":
            return "GET", lambda r: self._waha_qr(r, parts[1]), True
        if len(parts) == 4 and parts[0] == "api" and parts[2] == "auth" and parts[3] == "request-code":
            return "POST", lambda r: self._waha_request_code(r, parts[1]), True
        if len(parts) == 3 and parts[0] == "api" and parts[2] == "chats":
            return "GET", lambda r: self._waha_chats(r, parts[1]), True
        return None

    # ------------------------------------------------------------------ routes
    async def _openapi(self, request: Request) -> tuple[int, bytes, str, dict[str, str]]:
        return 200, json_bytes(openapi.document(self.port)), "application/json", {}

    async def _docs(self, request: Request) -> tuple[int, bytes, str, dict[str, str]]:
        return 200, openapi.docs_html(self.port).encode(), "text/html; charset=utf-8", {
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}

    async def _service_call(self, coro: Any, timeout: float) -> Any:
        loop = getattr(self.service, "loop", None)
        if loop is None or loop.is_closed():
            coro.close()
            raise HttpError(503, "not_connected", "the session is not running yet", headers={"Retry-After": "5"})
        try:
            future = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:
            coro.close()
            raise HttpError(503, "not_connected", "the session is stopping", headers={"Retry-After": "5"}) from None
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except asyncio.TimeoutError:
            future.cancel()
            raise HttpError(504, "timeout", "the session did not answer in time") from None

    def _status_for_service(self) -> dict[str, Any]:
        """For `linda-desktop status` and Diagnostics (any thread)."""
        store = self.store
        return {"url": self.url, "webhook": self.webhook_status(),
                "events": {"last_id": store.last_seq(), "messages": store.count("message")} if store else None,
                "send_queue": store.outbox_stats(SEND_TARGET) if store else None}

    def webhook_status(self) -> dict[str, Any] | None:
        """The outbox as /v1/status and Diagnostics show it (None without a webhook)."""
        if self.webhooks is not None:
            return self.webhooks.stats()
        if self.webhook_error is not None:
            return {"url": self.webhook_url, "error": str(self.webhook_error)}
        return None

    async def _status(self, request: Request) -> tuple[int, bytes, str, dict[str, str]]:
        svc = self.service
        state = svc.state.value
        try:
            messaging = await self._service_call(svc.messaging_status(), 5)
        except HttpError:
            messaging = {}
        webhook = await asyncio.to_thread(self.webhook_status)
        messaging = messaging or {}
        store = self.store
        events = {"last_id": store.last_seq(), "messages": store.count("message")} if store is not None else None
        queued = store.outbox_stats(SEND_TARGET) if store is not None else None
        data = {"state": state, "reason": svc.reason, "account": svc.account,
                "connected": state == "connected",
                "ready_to_send": state == "connected" and bool(messaging.get("ready") and messaging.get("connected")),
                "messaging": messaging, "webhook": webhook, "events": events, "send_queue": queued,
                "app_version": __version__}
        return 200, json_bytes(data), "application/json", {}

    async def _retry_dead(self, request: Request) -> tuple[int, bytes, str, dict[str, str]]:
        count = await asyncio.to_thread(self.store.retry_dead, TARGET) if self.store is not None else 0
        if self.webhooks is not None:
            self.webhooks.wake()
        return 200, json_bytes({"requeued": count}), "application/json", {}

    async def _qr(self, request: Request) -> tuple[int, bytes, str, dict[str, str]]:
        return 200, json_bytes({"state": self.service.state.value, "qr": self.service.current_qr()}), \
            "application/json", {}

    def _check_send_body(self, body: Any, fields: set[str], to_key: str) -> tuple[str, str]:
        from linda_desktop.browser.messaging import MessagingError, check_text, normalize_recipient

        if not isinstance(body, dict):
            raise HttpError(400, "bad_body", "the body must be a JSON object: {\"to\": ..., \"text\": ...}")
        unknown = sorted(set(body) - fields)
        if unknown:
            raise HttpError(400, "bad_body", f"unknown field(s): {', '.join(unknown)[:200]}; "
                                             f"send only {', '.join(sorted(fields))}")
        for name in (to_key, "text"):
            if name not in body:
                raise HttpError(400, "bad_body", f"missing field '{name}'")
            if not isinstance(body[name], str):
                raise HttpError(400, "bad_body", f"'{name}' must be a string")
        try:
            return normalize_recipient(body[to_key]), check_text(body["text"])
        except MessagingError as exc:
            raise HttpError(400, exc.code, exc.message) from None

    async def _send_now(self, to: str, text: str) -> dict[str, Any]:
        from linda_desktop.browser.messaging import MessagingError

        try:
            result = dict(await self._service_call(self.service.send_message(to, text), SEND_TIMEOUT_SECONDS))
        except MessagingError as exc:
            status = {"invalid_recipient": 400, "invalid_text": 400, "not_connected": 503, "not_ready": 503,
                      "timeout": 504}.get(exc.code, 502)
            message = exc.message + (f" — {exc.fix}" if exc.fix else "")
            raise HttpError(status, exc.code, message,
                            headers={"Retry-After": "5"} if status == 503 else None) from None
        except LindaError as exc:
            raise HttpError(503, "unavailable", str(exc), headers={"Retry-After": "5"}) from None
        if result.get("id"):  # WhatsApp accepted it: the first ack (1, sent); delivered and read follow
            ack = result.get("ack")
            self._ingest.put({"event": "ack", "id": result["id"], "chat_id": to,
                              "ack": ack if isinstance(ack, int) else 1})
        return result

    async def _send(self, request: Request) -> tuple[int, bytes, str, dict[str, str]]:
        body = request.json()
        to, text = self._check_send_body(body, FIELDS, "to")
        want_queue = body.get("queue", False)
        if not isinstance(want_queue, bool):
            raise HttpError(400, "bad_body", "'queue' must be true or false")
        if want_queue and self.service.state.value != "connected":
            return await self._enqueue_send(to, text)
        return 200, json_bytes(await self._send_now(to, text)), "application/json", {}

    async def _enqueue_send(self, to: str, text: str) -> tuple[int, bytes, str, dict[str, str]]:
        """Kept in the store until WhatsApp is connected, then sent in order (``send_queue`` in
        /v1/status; a ``sent`` or ``send_failed`` event follows on the stream)."""
        assert self.store is not None
        event = await asyncio.to_thread(self.store.append, "send_request", {"to": to, "text": text},
                                        targets=(SEND_TARGET,))
        assert event is not None
        if self._sender_wake is not None:
            self._sender_wake.set()
        return 202, json_bytes({"queued": True, "queue_id": event.id, "to": to,
                                "state": self.service.state.value}), "application/json", {}

    async def _queued_sender(self) -> None:
        """Sends queued messages once connected, oldest first; a refusal that retrying cannot fix
        (bad number…) ends that one as ``send_failed``; nothing is dropped silently."""
        assert self._sender_wake is not None and self.store is not None
        while True:
            try:
                await asyncio.wait_for(self._sender_wake.wait(), 2.0)
            except asyncio.TimeoutError:
                pass
            self._sender_wake.clear()
            if self.service.state.value != "connected":
                continue
            for event, _attempts, _next in await asyncio.to_thread(self.store.pending, SEND_TARGET, 20):
                try:
                    result = await self._send_now(event.payload["to"], event.payload["text"])
                except HttpError as err:
                    if err.status in (503, 504):
                        break  # not connected after all: try again later
                    await asyncio.to_thread(self.store.failed, event.seq, SEND_TARGET, err.message, next_at=None)
                    self._ingest.put({"event": "send_failed", "queue_id": event.id, "error": err.code,
                                      "message": err.message})
                    continue
                await asyncio.to_thread(self.store.delivered, event.seq, SEND_TARGET)
                self._ingest.put({"event": "sent", "queue_id": event.id, **result})

    async def _events(self, request: Request, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        if len(self._streams) >= MAX_STREAMS:
            raise HttpError(503, "busy", f"at most {MAX_STREAMS} event streams", headers={"Retry-After": "5"})
        q: asyncio.Queue[Any] = asyncio.Queue(maxsize=STREAM_QUEUE)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
                     b"Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                     b"X-Accel-Buffering: no\r\nConnection: keep-alive\r\n\r\nretry: 2000\n\n")
        self._streams.add(q)  # before reading the store: nothing falls between replay and live
        last = request.headers.get("last-event-id", "").strip()
        sent_up_to = 0
        if last.isdigit() and self.store is not None:
            sent_up_to = int(last)
            while True:
                batch = await asyncio.to_thread(self.store.since, sent_up_to, 500)
                if not batch:
                    break
                for event in batch:
                    if event.kind in SSE_KINDS:
                        writer.write(self._stored_frame(event))
                    sent_up_to = event.seq
                await writer.drain()
        else:
            svc = self.service
            current = {"event": "state", "state": svc.state.value}
            if svc.reason:
                current["reason"] = svc.reason
            if svc.account and current["state"] == "connected":
                current["account"] = svc.account
            writer.write(self._frame(None, "state", current))
            sent_up_to = 0  # from now on: whatever is published
        eof = asyncio.ensure_future(reader.read(1))
        try:
            await writer.drain()
            while True:
                getter = asyncio.ensure_future(q.get())
                done, _ = await asyncio.wait({getter, eof}, timeout=HEARTBEAT_SECONDS,
                                             return_when=asyncio.FIRST_COMPLETED)
                if eof in done:
                    getter.cancel()
                    break
                if getter in done:
                    item = getter.result()
                    if item is None:
                        break
                    seq, frame = item
                    if seq and seq <= sent_up_to:
                        continue  # already sent from the store
                    writer.write(frame)
                else:
                    getter.cancel()
                    writer.write(b": ping\n\n")
                await asyncio.wait_for(writer.drain(), 10)
        except (ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            self._streams.discard(q)
            eof.cancel()
        return False

    # ------------------------------------------------------------------ WAHA dialect
    @staticmethod
    def _waha_error(status: int, message: str) -> HttpError:
        err = HttpError(status, "waha", message)
        err.body = json_bytes(waha.error(status, message))  # type: ignore[attr-defined]
        return err

    def _check_session(self, name: str) -> None:
        if name != waha.SESSION:
            raise self._waha_error(404, f'Session "{name[:60]}" does not exist; Linda Desktop serves one '
                                        f'session, "{waha.SESSION}"')

    def _session_info(self) -> dict[str, Any]:
        return waha.session_info(self.service.state.value, self.service.account)

    async def _ping(self, request: Request) -> tuple[int, bytes, str, dict[str, str]]:
        return 200, json_bytes({"message": "pong"}), "application/json", {}

    async def _health(self, request: Request) -> tuple[int, bytes, str, dict[str, str]]:
        state = self.service.state.value
        ok = state == "connected"
        details = {"session": {"status": "up" if ok else "down", "state": state}}
        if self.store is not None:
            details["events"] = {"status": "up"}
        body = {"status": "ok" if ok else "error", "info": details if ok else {},
                "error": {} if ok else details, "details": details}
        return (200 if ok else 503), json_bytes(body), "application/json", {}

    async def _waha_sessions(self, request: Request) -> tuple[int, bytes, str, dict[str, str]]:
        return 200, json_bytes([self._session_info()]), "application/json", {}

    async def _waha_session(self, request: Request, name: str) -> tuple[int, bytes, str, dict[str, str]]:
        self._check_session(name)
        return 200, json_bytes(self._session_info()), "application/json", {}

    async def _waha_qr(self, request: Request, name: str) -> tuple[int, bytes, str, dict[str, str]]:
        """``format=raw`` → {value}; ``image`` (default) → PNG, or {mimetype, data} when the
        client asks for JSON (WAHA's Accept rule)."""
        self._check_session(name)
        fmt = request.query.get("format", "image")
        if fmt not in ("image", "raw"):
            raise self._waha_error(400, "format must be image or raw")
        qr = self.service.current_qr()
        if not qr:
            raise self._waha_error(422, f"Can get QR code only in SCAN_QR_CODE status. The current status is "
                                        f"{waha.session_status(self.service.state.value)}")
        if fmt == "raw":
            return 200, json_bytes({"value": qr}), "application/json", {}
        png = await asyncio.to_thread(_qr_png, qr)
        accept = request.headers.get("accept", "")
        if "application/json" in accept and "image/png" not in accept:
            import base64

            return 200, json_bytes({"mimetype": "image/png", "data": base64.b64encode(png).decode()}), \
                "application/json", {}
        return 200, png, "image/png", {}

    async def _waha_request_code(self, request: Request, name: str) -> tuple[int, bytes, str, dict[str, str]]:
        self._check_session(name)
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("phoneNumber"), str):
            raise self._waha_error(400, "phoneNumber must be a string (international format, digits)")
        ask = getattr(self.service, "request_pairing_code", None)
        if ask is None:
            raise self._waha_error(501, "pairing codes are not available in this version; scan the QR code")
        try:
            code = await self._service_call(ask(body["phoneNumber"]), 60)
        except LindaError as exc:
            raise self._waha_error(422, str(exc)) from None
        return 201, json_bytes({"code": code}), "application/json", {}

    async def _waha_send_text(self, request: Request) -> tuple[int, bytes, str, dict[str, str]]:
        body = request.json()
        if isinstance(body, dict):
            self._check_session(str(body.get("session", waha.SESSION)))
            body = {k: v for k, v in body.items() if k in ("chatId", "text")}
        to, text = self._check_send_body(body, {"chatId", "text"}, "chatId")
        try:
            result = await self._send_now(to, text)
        except HttpError as err:
            raise self._waha_error(err.status, err.message) from None
        sent = waha.message({"id": result.get("id"), "chat_id": to, "from_me": True, "type": "chat", "text": text,
                             "timestamp": int(time.time()), "ack": result.get("ack"), "via_api": True},
                            self.service.account)
        return 201, json_bytes(sent), "application/json", {}

    async def _waha_chats(self, request: Request, name: str) -> tuple[int, bytes, str, dict[str, str]]:
        self._check_session(name)
        chats = await self._service_call(self._list_chats(), 20)
        return 200, json_bytes(chats), "application/json", {}

    async def _list_chats(self) -> list[dict[str, Any]]:
        bot = getattr(self.service, "bot", None)
        page = bot._page() if bot is not None else None
        if bot is None or bot.bridge is None or page is None:
            raise self._waha_error(503, "WhatsApp is not connected")
        result = await bot.bridge.chats(page)
        if result is None:
            raise self._waha_error(503, "WhatsApp Web did not list the chats")
        return result


def _qr_png(payload: str) -> bytes:
    import io

    import segno

    buf = io.BytesIO()
    segno.make(payload, error="l").save(buf, kind="png", scale=6, border=4)
    return buf.getvalue()
