"""User settings, one atomic JSON file. Unknown keys are kept; a broken file is set aside."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from linda_desktop.base.atomic import atomic_write_json

log = logging.getLogger(__name__)


@dataclass
class Settings:
    backup_interval_hours: float = 6.0
    keep_backups: int = 5
    # "keyring" (default) or "passphrase" (explicit opt-in when no keyring exists).
    key_mode: str = "keyring"
    # Seconds to wait after the page reports connected before the first backup, so that
    # localStorage (WhatsApp's encryption salt) has reached the disk.
    flush_delay_seconds: float = 6.0
    # Seconds a page may show "loading" or an unknown page before the service reports an error.
    page_timeout_seconds: float = 90.0
    # Seconds the page may sit between "phone scanned" and "linked" before the owner is told the
    # link stalled (WhatsApp's passkey step cannot be done in a headless browser).
    link_stall_seconds: float = 25.0
    # Take over when the page says WhatsApp is open in another window ("Use here").
    take_over_on_conflict: bool = True
    # Local bot API (issue 6; linda_desktop/api). Off by default; loopback only.
    api_enabled: bool = False
    api_host: str = "127.0.0.1"
    api_port: int = 8723
    # Where incoming messages and state changes are POSTed (a loopback http URL), or None.
    webhook_url: str | None = None

    @classmethod
    def load(cls, path: Path) -> "Settings":
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise ValueError("settings file is not a JSON object")
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            aside = Path(path).with_name(f"{Path(path).name}.broken-{int(time.time())}")
            try:
                Path(path).replace(aside)
            except OSError:
                pass
            log.warning("settings file was unreadable (%s); set aside as %s, using defaults", exc, aside.name)
            return cls()
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        try:
            return cls(**values)
        except TypeError:
            return cls()

    def save(self, path: Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(path), asdict(self))
