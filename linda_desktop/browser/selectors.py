"""Loads and checks resources/selectors.json: how the app recognises WhatsApp Web's states.

The markers live in data, not code, because WhatsApp changes its page: a fix is a data change.
A missing or malformed file is a packaging bug; it raises ``SelectorsError`` with the path.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linda_desktop import resources
from linda_desktop.base.errors import LindaError
from linda_desktop.base.events import PageState

FILE_NAME = "selectors.json"
SCHEMA = 1
_FIX = "reinstall Linda Desktop (the selectors file ships with it)"


class SelectorsError(LindaError):
    """resources/selectors.json is missing or malformed."""


def _strings(value: Any, where: str, *, allow_empty: bool = True) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{where} must be a list of non-empty strings")
    if not value and not allow_empty:
        raise ValueError(f"{where} must not be empty")
    return tuple(value)


def _section(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise ValueError(f"'{key}' must be an object")
    return value


@dataclass(frozen=True)
class StateMarkers:
    selectors: tuple[str, ...]
    texts: tuple[str, ...]
    unless: tuple[str, ...] = ()


@dataclass(frozen=True)
class Selectors:
    """Validated view of selectors.json. ``probe_config()`` is what the in-page probe reads."""

    path: Path
    order: tuple[PageState, ...]
    states: dict[PageState, StateMarkers]
    text_exclude: tuple[str, ...]
    qr_container: tuple[str, ...]
    qr_attribute: str
    qr_pattern: str
    progress_selectors: tuple[str, ...]
    progress_pattern: str
    use_here: tuple[str, ...]
    reload_qr: tuple[str, ...]
    logout_flag: str
    logout_reason: str
    account_keys: tuple[str, ...]
    account_pattern: str
    internal: dict[str, Any]
    internal_map: dict[str, PageState]
    stream_offline: tuple[str, ...]

    @classmethod
    def load(cls, path: Path | str | None = None) -> "Selectors":
        file = Path(path) if path is not None else resources.path(FILE_NAME)
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SelectorsError(f"selectors file not found: {file}", _FIX) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise SelectorsError(f"selectors file unreadable: {file}: {err}", _FIX) from None
        try:
            return cls.from_dict(data, file)
        except (ValueError, KeyError, TypeError, re.error) as err:
            raise SelectorsError(f"selectors file invalid: {file}: {err}", _FIX) from None

    @classmethod
    def from_dict(cls, data: Any, path: Path) -> "Selectors":
        if not isinstance(data, dict):
            raise ValueError("top level must be an object")
        if data.get("schema") != SCHEMA:
            raise ValueError(f"schema must be {SCHEMA}, found {data.get('schema')!r}")
        raw_states = _section(data, "states")
        states: dict[PageState, StateMarkers] = {}
        for name, spec in raw_states.items():
            state = PageState(name)  # ValueError names an unknown state
            if not isinstance(spec, dict):
                raise ValueError(f"states.{name} must be an object")
            markers = StateMarkers(_strings(spec.get("selectors", []), f"states.{name}.selectors"),
                                   _strings(spec.get("texts", []), f"states.{name}.texts"),
                                   _strings(spec.get("unless", []), f"states.{name}.unless"))
            if not markers.selectors and not markers.texts:
                raise ValueError(f"states.{name} needs at least one selector or text")
            states[state] = markers
        order = tuple(PageState(name) for name in _strings(data.get("order"), "order", allow_empty=False))
        missing = [s.value for s in order if s not in states]
        if missing:
            raise ValueError(f"order names states without markers: {missing}")
        if len(set(order)) != len(order):
            raise ValueError("order lists a state twice")
        qr = _section(data, "qr")
        progress = _section(data, "progress")
        actions = _section(data, "actions")
        logout = _section(data, "logout")
        account = _section(data, "account")
        internal = _section(data, "internal")
        for part in ("socket", "conn", "stream"):
            spec = _section(internal, part)
            if not isinstance(spec.get("module"), str) or not isinstance(spec.get("object"), str):
                raise ValueError(f"internal.{part} needs 'module' and 'object'")
        internal_map = {key: PageState(value) for key, value in _section(internal, "state_map").items()}
        for pattern in (qr["payload_pattern"], progress["text_pattern"], account["pattern"]):
            re.compile(pattern)
        return cls(
            path=path, order=order, states=states,
            text_exclude=_strings(data.get("text_exclude", []), "text_exclude"),
            qr_container=_strings(qr.get("container"), "qr.container", allow_empty=False),
            qr_attribute=str(qr["attribute"]), qr_pattern=str(qr["payload_pattern"]),
            progress_selectors=_strings(progress.get("selectors", []), "progress.selectors"),
            progress_pattern=str(progress["text_pattern"]),
            use_here=_strings(actions.get("use_here"), "actions.use_here", allow_empty=False),
            reload_qr=_strings(actions.get("reload_qr"), "actions.reload_qr", allow_empty=False),
            logout_flag=str(logout["url_flag"]), logout_reason=str(logout["url_reason"]),
            account_keys=_strings(account.get("local_storage_keys", []), "account.local_storage_keys"),
            account_pattern=str(account["pattern"]),
            internal=internal, internal_map=internal_map,
            stream_offline=_strings(internal.get("stream_offline", []), "internal.stream_offline"),
        )

    def probe_config(self) -> dict[str, Any]:
        """The JSON-able subset the in-page probe script needs."""
        return {
            "states": {s.value: {"selectors": list(m.selectors), "texts": list(m.texts),
                                 "unless": list(m.unless)} for s, m in self.states.items()},
            "textExclude": list(self.text_exclude),
            "qr": {"container": list(self.qr_container), "attribute": self.qr_attribute},
            "progress": list(self.progress_selectors),
            "accountKeys": list(self.account_keys),
            "internal": {k: self.internal[k] for k in ("require", "socket", "conn", "stream")},
        }


_default: Selectors | None = None


def default_selectors() -> Selectors:
    """The shipped selectors, loaded once."""
    global _default
    if _default is None:
        _default = Selectors.load()
    return _default
