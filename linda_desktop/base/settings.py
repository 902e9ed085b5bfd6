"""User settings, one atomic JSON file, typed and bounded.

Every field has a type and bounds (``SPECS``). A value of the wrong type or out of bounds is
never fatal: the field keeps its default and the problem is listed in ``Settings.problems``
(the app turns each into a ``settings_invalid`` notice; `doctor` names the key). Keys this
version does not know are kept on save, and so is an owner's invalid value unless the app set
that field itself. A file that is not JSON at all is set aside (``.broken-<ts>``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from linda_desktop.base.atomic import atomic_write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Spec:
    """What one setting may hold: ``kind`` ("float", "int", "bool", "str", "choice", "url"),
    inclusive bounds for numbers, the allowed words for a choice, and whether null is allowed."""

    kind: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    nullable: bool = False

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind in ("float", "int"):
            noun = "a whole number" if self.kind == "int" else "a number"
            return f"{noun} from {_num(self.minimum)} to {_num(self.maximum)}"
        if self.kind == "bool":
            return "true or false"
        noun = "a text" if self.kind == "str" else "an http:// address"
        return f"{noun} or null" if self.nullable else noun

    def check(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind in ("float", "int"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return False
            if self.kind == "int" and not (isinstance(value, int) or float(value).is_integer()):
                return False
            if isinstance(value, float) and not math.isfinite(value):
                return False
            return (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)
        if self.kind == "choice":
            return value in self.choices
        if self.kind == "url":
            return isinstance(value, str) and value.startswith(("http://", "https://"))
        return isinstance(value, str) and bool(value.strip())


def _num(value: float | None) -> str:
    if value is None:
        return "any"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# The bounds: small enough to stop a backup every half second, wide enough for every real use.
SPECS: dict[str, Spec] = {
    "backup_interval_hours": Spec("float", 0.25, 24 * 30),
    "keep_backups": Spec("int", 1, 50),
    "key_mode": Spec("choice", choices=("keyring", "passphrase")),
    "flush_delay_seconds": Spec("float", 0, 300),
    "page_timeout_seconds": Spec("float", 5, 3600),
    "link_stall_seconds": Spec("float", 1, 3600),
    "take_over_on_conflict": Spec("bool"),
    "api_enabled": Spec("bool"),
    "api_host": Spec("str"),
    "api_port": Spec("int", 1, 65535),
    "webhook_url": Spec("url", nullable=True),
    # bot API (issue 14)
    "webhook_format": Spec("choice", choices=("linda", "waha")),
    "webhook_events": Spec("str"),
    "webhook_hmac_key": Spec("str", nullable=True),
    "webhook_max_attempts": Spec("int", 1, 1000),
    "webhook_retry_base_seconds": Spec("float", 0.01, 3600),
    "webhook_retry_max_seconds": Spec("float", 0.01, 86400),
    "replay_window_hours": Spec("float", 0, 24 * 30),
    "replay_max_messages": Spec("int", 0, 10000),
    "show_online": Spec("bool"),
    "bot_channels": Spec("bool"),
    "liveness_silence_seconds": Spec("float", 5, 86400),
    "liveness_check_seconds": Spec("float", 0.5, 3600),
    "bridge_ready_seconds": Spec("float", 1, 3600),
}


@dataclass(frozen=True)
class SettingProblem:
    """One key of settings.json whose value was not used."""

    key: str
    value: Any
    expected: str
    default: Any

    @property
    def message(self) -> str:
        return (f"settings.json: {self.key} = {json.dumps(self.value)} is not {self.expected}; "
                f"using the default {json.dumps(self.default)}")

    @property
    def fix(self) -> str:
        return f"set {self.key} to {self.expected} in settings.json, or remove it"


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
    # Bot API (issue 14): webhook body and signature ("linda": X-Linda-Signature; "waha": WAHA's
    # envelope and X-Webhook-Hmac), the WAHA events sent, the HMAC key (None: the API token),
    # the outbox's retries before an event becomes a dead letter.
    webhook_format: str = "linda"
    webhook_events: str = "message,message.ack,session.status"
    webhook_hmac_key: str | None = None
    webhook_max_attempts: int = 40
    webhook_retry_base_seconds: float = 1.0
    webhook_retry_max_seconds: float = 600.0
    # Catch-up after a start or reconnect: unread messages at most this old, at most this many.
    replay_window_hours: float = 24.0
    replay_max_messages: int = 500
    # Show the linked computer as "online" (silences the phone's notifications); off by default.
    show_online: bool = False
    # Pass channel (@newsletter) messages to the bot too; off: channels are left out.
    bot_channels: bool = False
    # "Connected but dead": no traffic for this long while connected; how often to check.
    liveness_silence_seconds: float = 120.0
    liveness_check_seconds: float = 15.0
    # A wa-js build that is not ready this long after a launch is rolled back (api update-bridge).
    bridge_ready_seconds: float = 90.0
    # Not settings: what load() found. Never saved as such.
    problems: list[SettingProblem] = field(default_factory=list, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name in SPECS]

    @classmethod
    def load(cls, path: Path) -> Settings:
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
        settings = cls.from_dict(raw)
        for problem in settings.problems:
            log.warning("%s", problem.message)
        return settings

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Settings:
        """Typed settings from a JSON object: bad values keep their default and are listed in ``problems``."""
        settings = cls()
        for key, value in raw.items():
            spec = SPECS.get(key)
            if spec is None:
                settings.extra[key] = value
                continue
            if spec.check(value):
                setattr(settings, key, float(value) if spec.kind == "float" else
                        int(value) if spec.kind == "int" else value)
                continue
            settings.problems.append(SettingProblem(key, value, spec.describe(), getattr(settings, key)))
        return settings

    def to_dict(self) -> dict[str, Any]:
        """What save() writes: unknown keys, an owner's invalid value the app did not replace, then the settings."""
        out: dict[str, Any] = dict(self.extra)
        for name in self.field_names():
            out[name] = getattr(self, name)
        for problem in self.problems:
            if out.get(problem.key) == problem.default:
                out[problem.key] = problem.value
        return out

    def save(self, path: Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(path), self.to_dict())
