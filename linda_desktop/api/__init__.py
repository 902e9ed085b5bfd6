"""The local bot API (issue 6): lets the owner's bot use the WhatsApp session over loopback HTTP.

    api = start_api(service, paths, settings)   # after service.loop exists; never raises
    ...
    api.close()

Off unless ``settings.api_enabled``. See server.py (HTTP, SSE, auth, both dialects), store.py
(the event log and outbox), outbox.py (webhook delivery), waha.py (WAHA's shapes), token.py
(keyring), openapi.py, bridge_update.py, browser/messaging.py and service/bot_link.py.
"""

from __future__ import annotations

from typing import Any

from linda_desktop.api.errors import ApiUnavailable
from linda_desktop.api.server import ApiServer, check_host
from linda_desktop.base.paths import AppPaths
from linda_desktop.base.settings import Settings

__all__ = ["ApiServer", "ApiUnavailable", "check_host", "describe", "start_api"]


class _Off:
    """What ``start_api`` returns when the API is disabled: nothing runs, close() does nothing."""

    running = False
    error = None
    url = None

    def close(self, timeout: float = 5.0) -> None:
        return None

    def wait_ready(self, timeout: float = 0.0) -> bool:
        return False


def start_api(service: Any, paths: AppPaths, settings: Settings) -> ApiServer | _Off:
    """Start the bot API on its own thread when ``settings.api_enabled``. Problems (non-loopback
    host, port in use, no keyring) leave it off: logged, reported as a Notice, and in ``.error``."""
    if not settings.api_enabled:
        return _Off()
    return ApiServer(service, host=settings.api_host, port=settings.api_port,
                     webhook_url=settings.webhook_url, settings=settings).start()


def describe(settings: Settings) -> dict[str, Any]:
    """For the tray/diagnostics: whether the API is on and where (the token: token.load_token())."""
    base = f"http://127.0.0.1:{settings.api_port}"
    return {"enabled": settings.api_enabled, "host": settings.api_host, "port": settings.api_port,
            "url": base, "docs_url": base + "/docs", "openapi_url": base + "/v1/openapi.json",
            "webhook_url": settings.webhook_url}
