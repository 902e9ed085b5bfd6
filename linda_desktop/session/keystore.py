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
from linda_desktop.system import keyring_store
from linda_desktop.system.keyring_store import KeyringEntry

log = logging.getLogger(__name__)

PASSPHRASE_ENV = "LINDA_BACKUP_PASSPHRASE"
NO_KEYRING = f"{keyring_store.NO_KEYRING}: backups cannot be encrypted"
NO_KEYRING_FIX = f"{keyring_store.NO_KEYRING_FIX}, or set a backup passphrase with {PASSPHRASE_ENV}"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


class KeyStore:
    """Where the backup key comes from. ``passphrase_file`` exists -> passphrase mode."""

    def __init__(self, passphrase_file: Path, *, service: str = "linda-desktop", username: str = "backup-key") -> None:
        self.passphrase_file = Path(passphrase_file)
        self.service = service
        self.username = username
        self._entry = KeyringEntry(service, username, message=NO_KEYRING, fix=NO_KEYRING_FIX)

    # ---- keyring -------------------------------------------------------------------------

    @property
    def passphrase_mode(self) -> bool:
        return self.passphrase_file.exists()

    def backend_name(self) -> str:
        """``passphrase`` in passphrase mode, else the keyring backend's class path."""
        return "passphrase" if self.passphrase_mode else keyring_store.backend_name()

    def check(self) -> None:
        """Raise KeyringUnavailable (with the fix) unless the key can be stored and read."""
        if self.passphrase_mode:
            return
        self._entry.check()

    def _keyring_key(self, *, create: bool) -> bytes:
        stored = self._entry.get()
        if stored is None:
            if not create:
                raise WrongKey(
                    "There is no backup key in the system keyring, so the existing backups cannot be opened",
                    "Restore the keyring from your computer's backup, or re-link (new backups get a new key)",
                )
            key = secrets.token_bytes(KEY_SIZE)
            self._entry.set(base64.b64encode(key).decode("ascii"))
            log.info("Created a new backup key")
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
            params: dict[str, Any] = json.loads(self.passphrase_file.read_text("utf-8"))
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
