"""Outgoing webhooks: each event is POSTed as JSON to one loopback URL, in order, with retries.

Delivery runs on its own thread (urllib), never on the service's loop. Each request carries
``X-Linda-Event`` (message/state), ``X-Linda-Delivery`` (unique id, the same on every retry)
and ``X-Linda-Signature: sha256=<hex HMAC-SHA256 of the body, keyed with the API token>``.
A 2xx answer is delivered; connection errors, timeouts, 408, 429 and 5xx are retried after
0.5, 1, 2, 4, 8 and 16 s; any other answer (or the last failure) drops the event and is
counted. At most MAX_QUEUE events wait; past that the oldest is dropped (counted).
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import ipaddress
import json
import logging
import threading
import urllib.error
import urllib.request
import uuid
from typing import Any
from urllib.parse import urlsplit

from linda_desktop.api.errors import ApiUnavailable

log = logging.getLogger(__name__)

RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
TIMEOUT_SECONDS = 5.0
MAX_QUEUE = 1000
_RETRY_STATUS = {408, 425, 429}


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_webhook_url(url: str) -> str:
    """The URL when it is http(s) on this computer; ApiUnavailable otherwise."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiUnavailable(f"webhook_url {url!r} is not an http:// URL",
                             "set webhook_url to e.g. http://127.0.0.1:3000/whatsapp")
    if not is_loopback_host(parts.hostname):
        raise ApiUnavailable(f"webhook_url {url!r} is not on this computer: webhooks only go to loopback "
                             "addresses", "use http://127.0.0.1:<port>/... (or localhost)")
    if parts.username or parts.password:
        raise ApiUnavailable("webhook_url must not carry a user or password",
                             "check the X-Linda-Signature header in your bot instead")
    return url.strip()


def signature(token: str, body: bytes) -> str:
    return "sha256=" + hmac.new(token.encode("utf-8"), body, hashlib.sha256).hexdigest()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # never follow off the loopback
        return None


class WebhookSender:
    """``send(event_json)`` from any thread; ``close()`` stops the worker (pending events are lost)."""

    def __init__(self, url: str, token: str, *, retry_delays: tuple[float, ...] = RETRY_DELAYS,
                 timeout: float = TIMEOUT_SECONDS, max_queue: int = MAX_QUEUE) -> None:
        self.url = check_webhook_url(url)
        self._token = token
        self.retry_delays = retry_delays
        self.timeout = timeout
        self._queue: collections.deque[tuple[str, dict[str, Any]]] = collections.deque(maxlen=max_queue)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._opener = urllib.request.build_opener(_NoRedirect, urllib.request.ProxyHandler({}))
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self.retries = 0
        self._thread = threading.Thread(target=self._run, name="linda-webhooks", daemon=True)
        self._thread.start()

    def stats(self) -> dict[str, Any]:
        return {"url": self.url, "pending": len(self._queue), "delivered": self.delivered,
                "failed": self.failed, "dropped": self.dropped, "retries": self.retries}

    def send(self, event: dict[str, Any]) -> None:
        with self._cond:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
                log.warning("webhook queue full: dropped the oldest event")
            self._queue.append((uuid.uuid4().hex, event))
            self._cond.notify()

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while not self._queue and not self._stop.is_set():
                    self._cond.wait(1.0)
                if self._stop.is_set():
                    return
                delivery, event = self._queue[0]
            ok = self._deliver(delivery, event)
            with self._cond:
                if self._queue and self._queue[0][0] == delivery:
                    self._queue.popleft()
            if ok:
                self.delivered += 1
            else:
                self.failed += 1

    def _deliver(self, delivery: str, event: dict[str, Any]) -> bool:
        body = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "linda-desktop-webhook",
                   "X-Linda-Event": str(event.get("event", "")), "X-Linda-Delivery": delivery,
                   "X-Linda-Signature": signature(self._token, body)}
        for attempt in range(len(self.retry_delays) + 1):
            if attempt:
                self.retries += 1
                if self._stop.wait(self.retry_delays[attempt - 1]):
                    return False
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    response.read(65536)
                    if 200 <= response.status < 300:
                        return True
                    status = response.status
            except urllib.error.HTTPError as err:
                status = err.code
            except (OSError, ValueError) as err:  # refused, reset, timeout
                log.debug("webhook attempt %d failed: %s", attempt + 1, type(err).__name__)
                continue
            if status not in _RETRY_STATUS and status < 500:
                log.warning("webhook refused an event with HTTP %s; not retried", status)
                return False
        log.warning("webhook unreachable after %d attempts; event dropped", len(self.retry_delays) + 1)
        return False
