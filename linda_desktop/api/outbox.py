"""Delivers the store's outbox to the webhook URL: in order, at least once, across restarts.

One thread per target. The oldest pending event goes first; a receiver that is down keeps the
queue waiting (nothing is dropped), retried with exponential back-off (base × 2^n, capped),
until ``max_attempts``: then the event moves to the dead-letter list (visible in /v1/status and
Diagnostics; ``retry_dead`` puts them back) and the next one goes. A refusal that retrying cannot
fix (4xx other than 408/425/429) is dead at once. Every delivery carries the event's id
(``X-Linda-Delivery`` / the WAHA envelope's ``id``) so the receiver can drop duplicates.

Dialects: ``linda`` (today's body, X-Linda-Signature: sha256=HMAC-SHA256(token, body)) and
``waha`` (WAHA's envelope, X-Webhook-Hmac: HMAC-SHA512).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from linda_desktop.api import waha
from linda_desktop.api.store import EventStore, StoredEvent
from linda_desktop.api.webhooks import _NoRedirect, check_webhook_url, signature

log = logging.getLogger(__name__)

TARGET = "webhook"
TIMEOUT_SECONDS = 10.0
_RETRY_STATUS = {408, 425, 429}
# Stored kind → WAHA event name.
WAHA_EVENTS = {"message": "message", "message.any": "message.any", "ack": "message.ack",
               "session.status": "session.status"}
LINDA_EVENTS = {"message", "ack", "state", "liveness"}  # bodies the /v1 dialect knows


def backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds to wait after ``attempts`` failed tries (1 → base, 2 → 2·base, …, ≤ cap)."""
    return min(cap, base * (2 ** max(0, attempts - 1)))


def linda_body(event: StoredEvent) -> dict[str, Any] | None:
    """Today's webhook body (the /v1 dialect): the event's JSON plus its id."""
    if event.kind not in LINDA_EVENTS:
        return None
    body = dict(event.payload)
    if event.kind == "message":
        body = {k: body.get(k) for k in ("id", "chat_id", "from", "sender_name", "author", "type", "text",
                                         "timestamp", "group", "backfilled", "page_time")}
    body = {"event": event.kind, **body, "event_id": event.id}
    return body


def waha_body(event: StoredEvent, account: str | None) -> dict[str, Any] | None:
    name = WAHA_EVENTS.get(event.kind)
    if name is None:
        return None
    if event.kind in ("message", "message.any"):
        payload = waha.message(event.payload, event.payload.get("account") or account)
    elif event.kind == "ack":
        payload = waha.ack(event.payload, account)
    else:
        payload = dict(event.payload)
    return waha.envelope(event.id, event.created, name, payload, account)


def targets_for(kind: str, dialect: str, events: tuple[str, ...]) -> bool:
    """Whether a stored event of ``kind`` goes to a webhook of ``dialect`` subscribed to ``events``
    (WAHA event names; the linda dialect always gets message, ack and state)."""
    if dialect == "waha":
        name = WAHA_EVENTS.get(kind)
        return name is not None and ("*" in events or name in events)
    return kind in ("message", "ack", "state")


class Outbox:
    """``start()`` the worker; ``wake()`` after new events; ``close()`` stops it (nothing is lost:
    pending deliveries stay in the store)."""

    def __init__(self, store: EventStore, url: str, *, dialect: str = "linda", token: str = "",
                 hmac_key: str | None = None, account: Callable[[], str | None] = lambda: None,
                 base_delay: float = 1.0, max_delay: float = 600.0, max_attempts: int = 40,
                 timeout: float = TIMEOUT_SECONDS) -> None:
        self.store = store
        self.url = check_webhook_url(url)
        self.dialect = dialect if dialect in ("linda", "waha") else "linda"
        self._token = token
        self._hmac_key = hmac_key or token
        self._account = account
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_attempts = max(1, max_attempts)
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirect, urllib.request.ProxyHandler({}))
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="linda-outbox", daemon=True)
        self.delivered = 0
        self.retries = 0

    def start(self) -> Outbox:
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def stats(self) -> dict[str, Any]:
        data = self.store.outbox_stats(TARGET)
        return {"url": self.url, "format": self.dialect, **data, "retries": self.retries,
                "dead_letters": self.store.dead_letters(TARGET, 5)}

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self._turn()
            except Exception:
                log.exception("webhook outbox turn failed")
                wait = 5.0
            self._wake.wait(wait)
            self._wake.clear()

    def _turn(self) -> float:
        """Deliver what is due, in order; seconds until the next try."""
        while not self._stop.is_set():
            batch = self.store.pending(TARGET, 20)
            if not batch:
                return 30.0
            for event, attempts, next_at in batch:
                now = time.time()
                if next_at > now:
                    return max(0.05, next_at - now)
                ok, error, retry = self._deliver(event)
                if ok:
                    self.store.delivered(event.seq, TARGET)
                    self.delivered += 1
                    continue
                attempts += 1
                if retry and attempts < self.max_attempts:
                    self.retries += 1
                    self.store.failed(event.seq, TARGET, error,
                                      next_at=time.time() + backoff(attempts, self.base_delay, self.max_delay))
                    return backoff(attempts, self.base_delay, self.max_delay)
                log.warning("webhook event %s moved to the dead letters after %d attempt(s): %s",
                            event.id, attempts, error)
                self.store.failed(event.seq, TARGET, error, next_at=None)
                if self._stop.is_set():
                    return 1.0
        return 1.0

    def _request(self, event: StoredEvent) -> tuple[bytes, dict[str, str]] | None:
        headers = {"Content-Type": "application/json", "User-Agent": "linda-desktop-webhook"}
        if self.dialect == "waha":
            body_obj = waha_body(event, self._account())
            if body_obj is None:
                return None
            body = json.dumps(body_obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            headers.update(waha.sign(self._hmac_key, body))
            headers["X-Webhook-Request-Id"] = event.id
            headers["X-Webhook-Timestamp"] = str(int(time.time() * 1000))
        else:
            body_obj = linda_body(event)
            if body_obj is None:
                return None
            body = json.dumps(body_obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            headers.update({"X-Linda-Event": event.kind, "X-Linda-Delivery": event.id,
                            "X-Linda-Signature": signature(self._token, body)})
        return body, headers

    def _deliver(self, event: StoredEvent) -> tuple[bool, str, bool]:
        """(delivered, error, worth retrying)."""
        prepared = self._request(event)
        if prepared is None:
            return True, "", False  # nothing to send in this dialect
        body, headers = prepared
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read(65536)
                status = response.status
        except urllib.error.HTTPError as err:
            status = err.code
        except (OSError, ValueError) as err:  # refused, reset, timeout
            return False, type(err).__name__, True
        if 200 <= status < 300:
            return True, "", False
        retry = status in _RETRY_STATUS or status >= 500
        return False, f"HTTP {status}", retry
