"""The bot API server: its own thread and asyncio loop, so nothing a client does can slow the
session's loop. It talks to the service only through thread-safe calls (``subscribe``,
``send_message`` via ``run_coroutine_threadsafe``, ``state``/``account`` reads).

Security: binds loopback only (anything else is refused before a socket opens); every /v1 path
but the OpenAPI document needs ``Authorization: Bearer <token>`` (constant-time compare); the
Host header must name the loopback (a web page that rebinds a DNS name to 127.0.0.1 gets 421);
no CORS headers, so browsers cannot read answers. Limits: 64 connections, 16 event streams,
512 KiB bodies, 10 s to send a request head. Message text is never logged.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import threading
import time
from typing import Any, Callable

from linda_desktop import __version__
from linda_desktop.api import openapi
from linda_desktop.api.errors import ApiUnavailable
from linda_desktop.api.http import (HEADER_TIMEOUT, IDLE_TIMEOUT, MAX_HEADER_BYTES, HttpError, Request,
                                    error_body, json_bytes, read_request, response_bytes)
from linda_desktop.api.token import load_token, token_matches
from linda_desktop.api.webhooks import RETRY_DELAYS, WebhookSender, is_loopback_host
from linda_desktop.base.errors import KeyringUnavailable, LindaError

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 64
MAX_STREAMS = 16
STREAM_QUEUE = 1000
REPLAY_EVENTS = 500
HEARTBEAT_SECONDS = 15.0
SEND_TIMEOUT_SECONDS = 40.0
FIELDS = {"to", "text"}


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
                 webhook_retry_delays: tuple[float, ...] = RETRY_DELAYS) -> None:
        self.service = service
        self.host = host
        self.port = port
        self.webhook_url = webhook_url
        self.error: LindaError | None = None
        self.webhook_error: LindaError | None = None
        self.webhooks: WebhookSender | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._token_loader = token_loader
        self._retry_delays = webhook_retry_delays
        self._token = ""
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._streams: set[asyncio.Queue[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._ring: collections.deque[tuple[int, str, bytes]] = collections.deque(maxlen=REPLAY_EVENTS)
        self._epoch = format(int(time.time() * 1000), "x")
        self._seq = 0
        self._unsubscribe: Callable[[], None] | None = None
        self.requests = 0

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._ready.is_set() and self.error is None and self._thread is not None and self._thread.is_alive()

    def start(self) -> "ApiServer":
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
        try:
            server = await self._open()
        except LindaError as exc:
            self.error = exc
            log.warning("bot API is off: %s", exc)
            self._report("api_unavailable", f"The bot API is off: {exc}")
            return
        self._start_webhooks()
        self._unsubscribe = self.service.subscribe(self._on_service_event)
        self.service.enable_messaging()
        log.info("bot API listening on %s", self.url)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            if self._unsubscribe is not None:
                self._unsubscribe()
            if self.webhooks is not None:
                self.webhooks.close()
            server.close()
            for queue in list(self._streams):
                self._end_stream(queue)
            for writer in list(self._writers):
                writer.close()
            await asyncio.sleep(0)
            log.info("bot API stopped")

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
        if not self.webhook_url:
            return
        try:
            self.webhooks = WebhookSender(self.webhook_url, self._token, retry_delays=self._retry_delays)
            log.info("webhooks go to a local URL on port %s", self.webhooks.url.split(":")[-1].split("/")[0])
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
        """On the service's loop thread: keep state, qr and message events; hop to our loop."""
        try:
            payload = event.to_json()
        except Exception:
            return
        kind = payload.get("event")
        if kind not in ("state", "qr", "message"):
            return
        if self.webhooks is not None and kind != "qr":
            self.webhooks.send(payload)
        loop = self.loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._publish, kind, payload)
            except RuntimeError:
                pass

    def _publish(self, kind: str, payload: dict[str, Any]) -> None:
        self._seq += 1
        frame = self._frame(f"{self._epoch}-{self._seq}", kind, payload)
        self._ring.append((self._seq, kind, frame))
        for queue in list(self._streams):
            try:
                queue.put_nowait(frame)
            except asyncio.QueueFull:
                log.warning("an event stream fell too far behind; closing it")
                self._end_stream(queue)

    @staticmethod
    def _frame(event_id: str | None, kind: str, payload: dict[str, Any]) -> bytes:
        head = f"id: {event_id}\n" if event_id else ""
        return f"{head}event: {kind}\ndata: ".encode() + json_bytes(payload) + b"\n\n"

    def _end_stream(self, queue: asyncio.Queue[Any]) -> None:
        self._streams.discard(queue)
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)

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
        except Exception:
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
            writer.write(response_bytes(err.status, error_body(err.code, err.message), headers=err.headers,
                                        close=not keep))
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
        if not token_matches(self._token, request.headers.get("authorization")):
            raise HttpError(401, "unauthorized", "send Authorization: Bearer <token> (see Diagnostics)",
                            headers={"WWW-Authenticate": 'Bearer realm="linda-desktop"'})

    def _route(self, request: Request) -> Any:
        routes: dict[str, tuple[str, Callable[[Request], Any], bool]] = {
            "/v1/openapi.json": ("GET", self._openapi, False),
            "/docs": ("GET", self._docs, False),
            "/v1/status": ("GET", self._status, True),
            "/v1/qr": ("GET", self._qr, True),
            "/v1/messages": ("POST", self._send, True),
            "/v1/events": ("GET", self._events, True),
        }
        entry = routes.get(request.path)
        if entry is None:
            if request.path.startswith("/v1/"):
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

    async def _status(self, request: Request) -> tuple[int, bytes, str, dict[str, str]]:
        svc = self.service
        state = svc.state.value
        try:
            messaging = await self._service_call(svc.messaging_status(), 5)
        except HttpError:
            messaging = {}
        webhook: dict[str, Any] | None = None
        if self.webhooks is not None:
            webhook = self.webhooks.stats()
        elif self.webhook_error is not None:
            webhook = {"url": self.webhook_url, "error": str(self.webhook_error)}
        messaging = messaging or {}
        data = {"state": state, "reason": svc.reason, "account": svc.account,
                "connected": state == "connected",
                "ready_to_send": state == "connected" and bool(messaging.get("ready") and messaging.get("connected")),
                "messaging": messaging, "webhook": webhook, "app_version": __version__}
        return 200, json_bytes(data), "application/json", {}

    async def _qr(self, request: Request) -> tuple[int, bytes, str, dict[str, str]]:
        return 200, json_bytes({"state": self.service.state.value, "qr": self.service.current_qr()}), \
            "application/json", {}

    async def _send(self, request: Request) -> tuple[int, bytes, str, dict[str, str]]:
        from linda_desktop.browser.messaging import MessagingError, check_text, normalize_recipient

        body = request.json()
        if not isinstance(body, dict):
            raise HttpError(400, "bad_body", "the body must be a JSON object: {\"to\": ..., \"text\": ...}")
        unknown = sorted(set(body) - FIELDS)
        if unknown:
            raise HttpError(400, "bad_body", f"unknown field(s): {', '.join(unknown)[:200]}; "
                                             "send only 'to' and 'text'")
        for name in ("to", "text"):
            if name not in body:
                raise HttpError(400, "bad_body", f"missing field '{name}'")
            if not isinstance(body[name], str):
                raise HttpError(400, "bad_body", f"'{name}' must be a string")
        try:
            to, text = normalize_recipient(body["to"]), check_text(body["text"])
        except MessagingError as exc:
            raise HttpError(400, exc.code, exc.message) from None
        try:
            result = await self._service_call(self.service.send_message(to, text), SEND_TIMEOUT_SECONDS)
        except MessagingError as exc:
            status = {"invalid_recipient": 400, "invalid_text": 400, "not_connected": 503, "not_ready": 503,
                      "timeout": 504}.get(exc.code, 502)
            message = exc.message + (f" — {exc.fix}" if exc.fix else "")
            raise HttpError(status, exc.code, message,
                            headers={"Retry-After": "5"} if status == 503 else None) from None
        except LindaError as exc:
            raise HttpError(503, "unavailable", str(exc), headers={"Retry-After": "5"}) from None
        return 200, json_bytes(result), "application/json", {}

    async def _events(self, request: Request, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        if len(self._streams) >= MAX_STREAMS:
            raise HttpError(503, "busy", f"at most {MAX_STREAMS} event streams", headers={"Retry-After": "5"})
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=STREAM_QUEUE)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
                     b"Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                     b"X-Accel-Buffering: no\r\nConnection: keep-alive\r\n\r\nretry: 2000\n\n")
        last = request.headers.get("last-event-id", "")
        epoch, _, number = last.partition("-")
        if last and epoch == self._epoch and number.isdigit():
            for seq, _kind, frame in list(self._ring):
                if seq > int(number):
                    writer.write(frame)
        else:
            svc = self.service
            current = {"event": "state", "state": svc.state.value}
            if svc.reason:
                current["reason"] = svc.reason
            if svc.account and current["state"] == "connected":
                current["account"] = svc.account
            writer.write(self._frame(None, "state", current))
        self._streams.add(queue)
        eof = asyncio.ensure_future(reader.read(1))
        try:
            await writer.drain()
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, eof}, timeout=HEARTBEAT_SECONDS,
                                             return_when=asyncio.FIRST_COMPLETED)
                if eof in done:
                    getter.cancel()
                    break
                if getter in done:
                    frame = getter.result()
                    if frame is None:
                        break
                    writer.write(frame)
                else:
                    getter.cancel()
                    writer.write(b": ping\n\n")
                await asyncio.wait_for(writer.drain(), 10)
        except (ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            self._streams.discard(queue)
            eof.cancel()
        return False

