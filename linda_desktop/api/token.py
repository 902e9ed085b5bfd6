"""The bot API's token: 32 random bytes (URL-safe text) per installation, kept in the OS keyring
(service "linda-desktop", user "api-token"). Never written to disk or logged. Without a usable
keyring there is no token, and the API stays off (KeyringUnavailable says why and how to fix).
"""

from __future__ import annotations

import hmac
import secrets

from linda_desktop.session.keystore import NO_KEYRING, NO_KEYRING_FIX
from linda_desktop.system.keyring_store import KeyringEntry

SERVICE = "linda-desktop"
USERNAME = "api-token"
TOKEN_BYTES = 32


def _entry() -> KeyringEntry:
    """The token's keyring entry: the vetted wrapper refuses fail/null/plaintext backends."""
    return KeyringEntry(SERVICE, USERNAME, message=NO_KEYRING, fix=NO_KEYRING_FIX)


def load_token(*, create: bool = True) -> str | None:
    """The installation's API token; created on first use when ``create``."""
    entry = _entry()
    token = entry.get()
    if token or not create:
        return token or None
    token = secrets.token_urlsafe(TOKEN_BYTES)
    entry.set(token)
    return token


def reset_token() -> str:
    """A new token (bots holding the old one get 401 from now on)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    _entry().set(token)
    return token


def token_matches(expected: str, authorization: str | None) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    if not authorization:
        return False
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode("utf-8"), expected.encode("utf-8"))
