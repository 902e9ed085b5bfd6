"""Where Linda Desktop keeps its files.

platformdirs gives the OS locations; ``--data-dir`` / ``LINDA_DATA_DIR`` puts *everything*
under one folder instead. Nothing is created at import time: folders are made on use,
private to the user (0700 on POSIX).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_DIR_NAME = "LindaDesktop"
APP_AUTHOR = "Linda"
DATA_DIR_ENV = "LINDA_DATA_DIR"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and make it readable by the user only."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.name == "posix":
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode != 0o700:
            os.chmod(path, 0o700)
    return path


@dataclass(frozen=True)
class AppPaths:
    """Every location the app reads or writes. Pure values: no I/O until ``ensure``."""

    data: Path
    logs: Path
    state: Path

    @property
    def profile(self) -> Path:
        """The live Chromium user-data dir."""
        return self.data / "profile"

    @property
    def backups(self) -> Path:
        return self.data / "backups"

    @property
    def quarantine(self) -> Path:
        """Dead or replaced sessions are archived here, never deleted outright."""
        return self.data / "quarantine"

    @property
    def work(self) -> Path:
        """Scratch space for restores and imports; same filesystem as the profile so renames are atomic."""
        return self.data / "work"

    @property
    def browsers(self) -> Path:
        """Where a browser downloaded on first run is installed (PLAYWRIGHT_BROWSERS_PATH)."""
        return self.data / "browsers"

    @property
    def settings_file(self) -> Path:
        return self.data / "settings.json"

    @property
    def state_file(self) -> Path:
        return self.state / "session-state.json"

    @property
    def log_file(self) -> Path:
        return self.logs / "linda-desktop.log"

    @property
    def lock_file(self) -> Path:
        return self.state / "instance.lock"

    @property
    def passphrase_file(self) -> Path:
        """Salt and scrypt parameters of the opt-in passphrase mode (never the key)."""
        return self.data / "passphrase.json"

    def ensure(self, path: Path) -> Path:
        """Create one of this object's folders with private permissions and return it.

        Every folder from the app's outermost own root down to ``path`` is made private too,
        so creating ``logs/`` first never leaves the data root readable by others."""
        roots = [r for r in (self.data, self.logs, self.state) if path == r or r in path.parents]
        if not roots:
            return ensure_private_dir(path)
        current = min(roots, key=lambda r: len(r.parts))
        ensure_private_dir(current)
        for part in path.relative_to(current).parts:
            current = current / part
            ensure_private_dir(current)
        return path

    def ensure_all(self) -> None:
        for folder in (self.data, self.logs, self.state, self.backups):
            ensure_private_dir(folder)


def resolve_paths(data_dir: str | os.PathLike[str] | None = None) -> AppPaths:
    """Locations for this run: ``data_dir`` argument, else ``LINDA_DATA_DIR``, else the OS folders."""
    chosen = data_dir if data_dir else os.environ.get(DATA_DIR_ENV)
    if chosen:
        root = Path(chosen).expanduser().resolve()
        return AppPaths(data=root, logs=root / "logs", state=root / "state")
    return AppPaths(
        data=Path(platformdirs.user_data_dir(APP_DIR_NAME, APP_AUTHOR)),
        logs=Path(platformdirs.user_log_dir(APP_DIR_NAME, APP_AUTHOR)),
        state=Path(platformdirs.user_state_dir(APP_DIR_NAME, APP_AUTHOR)),
    )
