"""The backup key: 32 random bytes per installation in the OS keyring, or — only as an explicit
opt-in — derived from a passphrase with scrypt. Never a plaintext key on disk, never a silent
fallback: without a usable keyring and without a passphrase, backups are refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from linda_desktop.base.atomic import atomic_write_json
from linda_desktop.base.errors import KeyringUnavailable, StorageError, WrongKey
from linda_desktop.session.crypto import KEY_SIZE, key_id

log = logging.getLogger(__name__)

PASSPHRASE_ENV = "LINDA_BACKUP_PASSPHRASE"
NO_KEYRING = "No usable system keyring: backups cannot be encrypted"
NO_KEYRING_FIX = (
    "install and unlock a keyring (GNOME Keyring/KWallet, macOS Keychain, Windows Credential "
    "Manager), or set a backup passphrase with LINDA_BACKUP_PASSPHRASE"
)
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_REFUSED_MODULES = ("keyring.backends.fail", "keyring.backends.null", "keyrings.alt")


def _backend_label(backend: Any) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def _refused(backend: Any) -> bool:
    """The fail/null backends and keyrings.alt (plaintext or home-made encryption) are refused."""
    return _backend_label(backend).startswith(_REFUSED_MODULES)


def _unavailable(detail: str | None = None) -> KeyringUnavailable:
    if detail:
        log.warning("Keyring unusable: %s", detail)
    return KeyringUnavailable(NO_KEYRING, NO_KEYRING_FIX)


class KeyStore:
    """Where the backup key comes from. ``passphrase_file`` exists -> passphrase mode."""

    def __init__(self, passphrase_file: Path, *, service: str = "linda-desktop", username: str = "backup-key") -> None:
        self.passphrase_file = Path(passphrase_file)
        self.service = service
        self.username = username

    # ---- keyring -------------------------------------------------------------------------

    @property
    def passphrase_mode(self) -> bool:
        return self.passphrase_file.exists()

    def _keyring(self) -> Any:
        """The keyring backend after refusing the unusable ones (raises KeyringUnavailable)."""
        try:
            import keyring
            from keyring.backends.chainer import ChainerBackend

            backend = keyring.get_keyring()
            if isinstance(backend, ChainerBackend):
                chained = [b for b in backend.backends if not _refused(b)]
                if not chained:
                    raise _unavailable("the keyring chainer has no usable backend")
            elif _refused(backend):
                raise _unavailable(f"backend {_backend_label(backend)} is not acceptable")
            return backend
        except KeyringUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to pick a backend means "no keyring"
            raise _unavailable(f"{type(exc).__name__}") from exc

    def backend_name(self) -> str:
        """``passphrase`` in passphrase mode, else the keyring backend's class path."""
        if self.passphrase_mode:
            return "passphrase"
        try:
            import keyring
            from keyring.backends.chainer import ChainerBackend

            backend = keyring.get_keyring()
            if isinstance(backend, ChainerBackend):
                usable = [_backend_label(b) for b in backend.backends if not _refused(b)]
                return usable[0] if len(usable) == 1 else f"chainer({', '.join(usable)})"
            return _backend_label(backend)
        except Exception:  # noqa: BLE001
            return "none"

    def _get(self, backend: Any) -> str | None:
        try:
            return backend.get_password(self.service, self.username)
        except Exception as exc:  # noqa: BLE001 - NoKeyringError, InitError (locked), D-Bus errors
            raise _unavailable(f"{type(exc).__name__}: {exc}") from exc

    def check(self) -> None:
        """Raise KeyringUnavailable (with the fix) unless the key can be stored and read."""
        if self.passphrase_mode:
            return
        self._get(self._keyring())

    def _keyring_key(self, *, create: bool) -> bytes:
        backend = self._keyring()
        stored = self._get(backend)
        if stored is None:
            if not create:
                raise WrongKey(
                    "There is no backup key in the system keyring, so the existing backups cannot be opened",
                    "Restore the keyring from your computer's backup, or re-link (new backups get a new key)",
                )
            key = secrets.token_bytes(KEY_SIZE)
            try:
                backend.set_password(self.service, self.username, base64.b64encode(key).decode("ascii"))
            except Exception as exc:  # noqa: BLE001
                raise _unavailable(f"storing the key failed: {type(exc).__name__}: {exc}") from exc
            if self._get(backend) != base64.b64encode(key).decode("ascii"):
                raise _unavailable("the keyring did not keep the key")
            log.info("Created a new backup key in %s", _backend_label(backend))
            return key
        try:
            key = base64.b64decode(stored.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            key = b""
        if len(key) != KEY_SIZE:
            raise KeyringUnavailable(
                "The backup key stored in the system keyring is damaged",
                f"Remove the '{self.service}' entry from the keyring only if you accept losing the old backups",
            )
        return key

    # ---- passphrase ----------------------------------------------------------------------

    def _derive(self, passphrase: str, params: dict[str, Any]) -> bytes:
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

        salt = base64.b64decode(params["salt"])
        kdf = Scrypt(salt=salt, length=KEY_SIZE, n=int(params["n"]), r=int(params["r"]), p=int(params["p"]))
        return kdf.derive(passphrase.encode("utf-8"))

    def _read_params(self) -> dict[str, Any]:
        try:
            params = json.loads(self.passphrase_file.read_text("utf-8"))
            if params.get("kdf") != "scrypt" or not all(k in params for k in ("salt", "n", "r", "p")):
                raise ValueError("bad parameters")
            return params
        except (OSError, ValueError, AttributeError) as exc:
            raise KeyringUnavailable(
                f"The backup passphrase settings in {self.passphrase_file} are unreadable",
                "Restore that file from a copy; without it the passphrase cannot open the backups",
            ) from exc

    def enable_passphrase(self, passphrase: str) -> None:
        """Opt in to passphrase mode: writes the scrypt salt and parameters (never the key).
        The file also records the key's public id, so a mistyped passphrase is caught at once."""
        if not passphrase:
            raise ValueError("the passphrase must not be empty")
        if self.passphrase_mode:
            self.load_key(passphrase=passphrase)  # same passphrase again: nothing to do
            return
        params: dict[str, Any] = {
            "kdf": "scrypt",
            "n": SCRYPT_N,
            "r": SCRYPT_R,
            "p": SCRYPT_P,
            "salt": base64.b64encode(secrets.token_bytes(16)).decode("ascii"),
            "version": 1,
        }
        params["key_id"] = key_id(self._derive(passphrase, params)).hex()
        try:
            self.passphrase_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            atomic_write_json(self.passphrase_file, params)
        except OSError as exc:
            raise StorageError(
                f"Cannot save the passphrase settings in {self.passphrase_file.parent}",
                "Make the data folder writable",
            ) from exc
        log.info("Backup passphrase mode enabled")

    def _passphrase_key(self, passphrase: str) -> bytes:
        params = self._read_params()
        key = self._derive(passphrase, params)
        expected = params.get("key_id")
        if isinstance(expected, str) and expected != key_id(key).hex():
            raise WrongKey(
                "The backup passphrase is wrong",
                f"Set {PASSPHRASE_ENV} to the passphrase the backups were made with",
            )
        return key

    # ---- the one entry point -------------------------------------------------------------

    def load_key(self, *, create: bool = True, passphrase: str | None = None) -> bytes:
        """The 32-byte backup key.

        Passphrase mode (file exists): derived from ``passphrase`` or $LINDA_BACKUP_PASSPHRASE.
        Keyring mode: read from the keyring, created on first use when ``create``. When the
        keyring is unusable and a passphrase is given (argument or environment), that is the
        owner's explicit opt-in: passphrase mode is enabled. Otherwise KeyringUnavailable.
        """
        given = passphrase if passphrase is not None else os.environ.get(PASSPHRASE_ENV) or None
        if self.passphrase_mode:
            if not given:
                raise KeyringUnavailable(
                    "Backups are protected by a passphrase, but none was given",
                    f"Set {PASSPHRASE_ENV} to the backup passphrase",
                )
            return self._passphrase_key(given)
        try:
            return self._keyring_key(create=create)
        except KeyringUnavailable:
            if not given or not create:
                raise
        self.enable_passphrase(given)
        return self._passphrase_key(given)
