"""The bot API's token: 32 random bytes (URL-safe text) per installation, kept in the OS keyring
(service "linda-desktop", user "api-token"). Never written to disk or logged. Without a usable
keyring there is no token, and the API stays off (KeyringUnavailable says why and how to fix).
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from linda_desktop.base.errors import KeyringUnavailable
from linda_desktop.session.keystore import NO_KEYRING, NO_KEYRING_FIX, KeyStore

SERVICE = "linda-desktop"
USERNAME = "api-token"
TOKEN_BYTES = 32


def _checked_keyring() -> object:
    """The keyring module after refusing fail/null/plaintext backends (KeyStore's rules)."""
    import keyring

    # A KeyStore with no passphrase file is in keyring mode: check() applies the refusals
    # and proves the Secret Service answers (raises KeyringUnavailable otherwise).
    KeyStore(Path("/nonexistent/linda-desktop/no-passphrase"), service=SERVICE, username=USERNAME).check()
    return keyring


def load_token(*, create: bool = True) -> str | None:
    """The installation's API token; created on first use when ``create``."""
    keyring = _checked_keyring()
    try:
        token = keyring.get_password(SERVICE, USERNAME)  # type: ignore[attr-defined]
        if token or not create:
            return token or None
        token = secrets.token_urlsafe(TOKEN_BYTES)
        keyring.set_password(SERVICE, USERNAME, token)  # type: ignore[attr-defined]
        if keyring.get_password(SERVICE, USERNAME) != token:  # type: ignore[attr-defined]
            raise KeyringUnavailable(NO_KEYRING, NO_KEYRING_FIX)
        return token
    except KeyringUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - locked keyring, D-Bus errors
        raise KeyringUnavailable(NO_KEYRING, NO_KEYRING_FIX) from exc


def reset_token() -> str:
    """A new token (bots holding the old one get 401 from now on)."""
    keyring = _checked_keyring()
    token = secrets.token_urlsafe(TOKEN_BYTES)
    try:
        keyring.set_password(SERVICE, USERNAME, token)  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001
        raise KeyringUnavailable(NO_KEYRING, NO_KEYRING_FIX) from exc
    return token


def token_matches(expected: str, authorization: str | None) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    if not authorization:
        return False
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode("utf-8"), expected.encode("utf-8"))
