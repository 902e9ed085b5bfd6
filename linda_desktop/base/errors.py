"""Typed errors. Each carries a one-line message for people and, where there is one, a fix.

The CLI prints ``str(error)`` on stderr (one line) and exits 1; the tray shows the same words.
"""

from __future__ import annotations

import errno


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
    """A live browser holds the profile (``pid`` when known)."""

    def __init__(self, message: str, fix: str | None = None, *, pid: int | None = None) -> None:
        super().__init__(message, fix)
        self.pid = pid


class BrowserNotFound(LindaError):
    pass


class BrowserLaunchFailed(LindaError):
    pass


class StorageError(LindaError):
    """Disk full, folder not writable, and other OS-level write failures."""

    def __init__(self, message: str, fix: str | None = None, *, errno_code: int | None = None) -> None:
        super().__init__(message, fix)
        self.errno = errno_code

    @property
    def disk_full(self) -> bool:
        return self.errno in (errno.ENOSPC, errno.EDQUOT)

    @classmethod
    def from_os_error(cls, exc: OSError, what: str) -> StorageError:
        """Words and a fix for an OSError met while ``what`` (e.g. "writing the state file")."""
        where = f" ({exc.filename})" if exc.filename else ""
        code = exc.errno
        if code in (errno.ENOSPC, errno.EDQUOT):
            return cls(f"The disk is full while {what}{where}",
                       "free some space; the app retries by itself", errno_code=code)
        if code == errno.EROFS:
            return cls(f"The data folder is read-only while {what}{where}",
                       "use a writable folder (--data-dir) or remount it read-write", errno_code=code)
        if code in (errno.EACCES, errno.EPERM):
            return cls(f"Permission denied while {what}{where}",
                       "check that this user owns the data folder", errno_code=code)
        return cls(f"Could not finish {what}{where}: {exc.strerror or exc}",
                   "check the disk and the data folder", errno_code=code)


class ImportSourceInvalid(LindaError):
    pass


class AlreadyRunning(LindaError):
    """Another instance holds the single-instance lock."""


class NotRunning(LindaError):
    pass
