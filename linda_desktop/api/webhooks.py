"""Webhook URL rules and the /v1 dialect's signature (delivery itself: api/outbox.py).

Webhooks only go to this computer (loopback http/https, no credentials in the URL, no
redirects followed). ``X-Linda-Signature: sha256=<hex HMAC-SHA256 of the body, keyed with the
API token>``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from linda_desktop.api.errors import ApiUnavailable

RETRY_DELAYS = (1.0,)  # the first back-off step, kept for ApiServer(webhook_retry_delays=…)


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
