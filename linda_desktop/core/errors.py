"""Typed errors. Each carries a one-line message for people and, where there is one, a fix.

The CLI prints ``str(error)`` on stderr (one line) and exits 1; the tray shows the same words.
"""

from __future__ import annotations


class LindaError(Exception):
    """Base of every error the app reports to its owner."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} — {self.fix}" if self.fix else self.message


class KeyringUnavailable(LindaError):
    """No usable OS keyring: backups cannot be encrypted with a stored key."""


class WrongKey(LindaError):
    """A backup was made with another key (keyring reset, other machine, other passphrase)."""


class BackupCorrupt(LindaError):
    """A backup is truncated, tampered with, or holds unsafe entries."""


class BackupNotFound(LindaError):
    pass


class NoBackups(LindaError):
    pass


class ProfileInvalid(LindaError):
    """The live profile's session parts are missing or damaged."""


class ProfileInUse(LindaError):
    """A live browser holds the profile."""


class BrowserNotFound(LindaError):
    pass


class BrowserLaunchFailed(LindaError):
    pass


class StorageError(LindaError):
    """Disk full, folder not writable, and other OS-level write failures."""


class ImportSourceInvalid(LindaError):
    pass


class AlreadyRunning(LindaError):
    """Another instance holds the single-instance lock."""


class NotRunning(LindaError):
    pass
