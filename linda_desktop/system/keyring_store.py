"""The one vetted way to the OS keyring, for every secret the app keeps (the backup key, the bot
API token).

Refused, never used: keyring's ``fail`` and ``null`` backends and everything from ``keyrings.alt``
(plaintext files or home-made encryption). Inside keyring's chainer only the acceptable backends
are used, so a secret can never land in a refused one. Every failure (no backend, a locked
keyring, D-Bus errors, a keyring that does not keep what it was given) is ``KeyringUnavailable``
with the caller's message and fix; the secret itself is never logged.
"""

from __future__ import annotations

import logging
from typing import Any

from linda_desktop.base.errors import KeyringUnavailable

log = logging.getLogger(__name__)

NO_KEYRING = "No usable system keyring"
NO_KEYRING_FIX = "install and unlock a keyring (GNOME Keyring/KWallet, macOS Keychain, Windows Credential Manager)"
_REFUSED_MODULES = ("keyring.backends.fail", "keyring.backends.null", "keyrings.alt")


def backend_label(backend: object) -> str:
    """A backend's class path, e.g. ``keyring.backends.SecretService.Keyring``."""
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def refused(backend: object) -> bool:
    """The fail/null backends and keyrings.alt (plaintext or home-made encryption) are refused."""
    return backend_label(backend).startswith(_REFUSED_MODULES)


def _usable_backends() -> list[Any]:
    """The acceptable backends, best first (empty when there is none)."""
    import keyring
    from keyring.backends.chainer import ChainerBackend

    backend = keyring.get_keyring()
    if isinstance(backend, ChainerBackend):
        return [b for b in backend.backends if not refused(b)]
    return [] if refused(backend) else [backend]


def backend_name() -> str:
    """The backend in use, for diagnostics: its class path (also for a refused one, so the owner
    sees which), ``chainer(a, b)`` for the acceptable ones in keyring's chainer, or ``none``."""
    try:
        import keyring
        from keyring.backends.chainer import ChainerBackend

        backend = keyring.get_keyring()
        if isinstance(backend, ChainerBackend):
            usable = [backend_label(b) for b in backend.backends if not refused(b)]
            return usable[0] if len(usable) == 1 else f"chainer({', '.join(usable)})"
        return backend_label(backend)
    except Exception:  # noqa: BLE001 - any failure to pick a backend means "no keyring"
        return "none"


class KeyringEntry:
    """One secret in the keyring: ``service`` / ``username``. ``message`` and ``fix`` are what
    the owner reads when the keyring cannot be used."""

    def __init__(self, service: str, username: str, *, message: str = NO_KEYRING, fix: str = NO_KEYRING_FIX) -> None:
        self.service = service
        self.username = username
        self.message = message
        self.fix = fix

    def unavailable(self, detail: str | None = None) -> KeyringUnavailable:
        """The typed error (``detail`` goes to the log only: never a secret in it)."""
        if detail:
            log.warning("Keyring unusable: %s", detail)
        return KeyringUnavailable(self.message, self.fix)

    def _backends(self) -> list[Any]:
        try:
            usable = _usable_backends()
        except Exception as exc:  # an import or configuration failure means "no keyring"
            raise self.unavailable(type(exc).__name__) from exc
        if not usable:
            raise self.unavailable("no acceptable keyring backend")
        return usable

    def get(self) -> str | None:
        """The stored secret, or None when there is none yet."""
        for backend in self._backends():
            try:
                value = backend.get_password(self.service, self.username)
            except Exception as exc:  # NoKeyringError, InitError (locked), D-Bus errors
                raise self.unavailable(f"reading failed: {type(exc).__name__}") from exc
            if value is not None:
                return str(value)
        return None

    def set(self, value: str) -> None:
        """Store ``value`` in the best acceptable backend and prove it was kept."""
        backend = self._backends()[0]
        try:
            backend.set_password(self.service, self.username, value)
            kept = backend.get_password(self.service, self.username)
        except Exception as exc:
            raise self.unavailable(f"storing failed: {type(exc).__name__}") from exc
        if kept != value:
            raise self.unavailable("the keyring did not keep the secret")
        log.info("Stored %s/%s in %s", self.service, self.username, backend_label(backend))

    def check(self) -> None:
        """Raise KeyringUnavailable (with the fix) unless the keyring answers for this entry."""
        self.get()
