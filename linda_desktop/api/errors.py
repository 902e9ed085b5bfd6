"""Why the bot API is off (a typed LindaError with a one-line message and a fix)."""

from __future__ import annotations

from linda_desktop.base.errors import LindaError


class ApiUnavailable(LindaError):
    """The bot API cannot run: non-loopback host, port taken, no keyring for its token, …"""
