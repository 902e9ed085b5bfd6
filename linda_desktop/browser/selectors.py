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
from linda_desktop.base.events import LinkStep, PageState

FILE_NAME = "selectors.json"
SCHEMA = 2
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


def _by_language(value: Any, where: str) -> dict[str, tuple[str, ...]]:
    """``{"en": [...], "pt": [...]}``: texts or labels per UI language."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be an object of language -> list of strings")
    return {lang: _strings(items, f"{where}.{lang}") for lang, items in value.items()}


def _flat(by_language: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    return tuple(text for texts in by_language.values() for text in texts)


@dataclass(frozen=True)
class StateMarkers:
    selectors: tuple[str, ...]
    texts: dict[str, tuple[str, ...]]
    text_in: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()

    @property
    def all_texts(self) -> tuple[str, ...]:
        return _flat(self.texts)


@dataclass(frozen=True)
class Action:
    """A fallback click: CSS selectors first, then buttons with one of the labels (any language)."""

    selectors: tuple[str, ...]
    labels: dict[str, tuple[str, ...]]

    def playwright_selectors(self, scope: str = "") -> tuple[str, ...]:
        prefix = f"{scope} " if scope else ""
        out = [f"{prefix}{sel}" for sel in self.selectors]
        for label in _flat(self.labels):
            quoted = label.replace("\\", "\\\\").replace('"', '\\"')
            out += [f'{prefix}button:has-text("{quoted}")', f'{prefix}[role=button]:has-text("{quoted}")',
                    f'{prefix}text="{quoted}"']
        return tuple(out)


def _action(spec: Any, where: str) -> Action:
    if not isinstance(spec, dict):
        raise ValueError(f"{where} must be an object")
    action = Action(_strings(spec.get("selectors", []), f"{where}.selectors"),
                    _by_language(spec.get("labels"), f"{where}.labels"))
    if not action.selectors and not action.labels:
        raise ValueError(f"{where} needs selectors or labels")
    return action


@dataclass(frozen=True)
class Selectors:
    """Validated view of selectors.json. ``probe_config()`` is what the in-page watcher reads."""

    path: Path
    order: tuple[PageState, ...]
    states: dict[PageState, StateMarkers]
    text_exclude: tuple[str, ...]
    watch: dict[str, Any]
    qr_container: tuple[str, ...]
    qr_attribute: str
    qr_pattern: str
    progress_selectors: tuple[str, ...]
    progress_pattern: str
    passkey: dict[str, Any]
    pairing: dict[str, Any]
    pairing_link: Action
    pairing_next: Action
    use_here_action: Action
    reload_qr_action: Action
    logout_flag: str
    logout_reason: str
    logout: dict[str, Any]
    account_keys: tuple[str, ...]
    account_pattern: str
    internal: dict[str, Any]
    internal_map: dict[str, PageState]
    stream_offline: tuple[str, ...]

    @property
    def use_here(self) -> tuple[str, ...]:
        """Playwright selectors for the conflict dialog's "Use here" (every language)."""
        return self.use_here_action.playwright_selectors()

    @property
    def reload_qr(self) -> tuple[str, ...]:
        return self.reload_qr_action.playwright_selectors()

    @classmethod
    def load(cls, path: Path | str | None = None) -> Selectors:
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
    def from_dict(cls, data: Any, path: Path) -> Selectors:
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
                                   _by_language(spec.get("texts"), f"states.{name}.texts"),
                                   _strings(spec.get("text_in", []), f"states.{name}.text_in"),
                                   _strings(spec.get("unless", []), f"states.{name}.unless"))
            if not markers.selectors and not markers.all_texts:
                raise ValueError(f"states.{name} needs at least one selector or text")
            if markers.all_texts and not markers.text_in:
                raise ValueError(f"states.{name} has texts but no 'text_in' subtrees to look in")
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
        watch = _section(data, "watch")
        passkey = _section(data, "passkey")
        pairing = _section(data, "pairing_code")
        for part in ("socket", "conn", "stream", "cmd"):
            spec = _section(internal, part)
            if not isinstance(spec.get("module"), str) or not isinstance(spec.get("object"), str):
                raise ValueError(f"internal.{part} needs 'module' and 'object'")
        for key in ("screen", "error", "code", "continue", "confirm", "cancel"):
            if not isinstance(passkey.get(key), str) or not passkey[key].strip():
                raise ValueError(f"passkey.{key} must be a selector")
        steps = passkey.get("steps")
        if not isinstance(steps, list) or not steps:
            raise ValueError("passkey.steps must be a list of [step, selector]")
        for step in steps:
            LinkStep(step[0])  # ValueError names an unknown step
            _strings([step[1]], "passkey.steps selector")
        internal_map = {key: PageState(value) for key, value in _section(internal, "state_map").items()}
        for pattern in (qr["payload_pattern"], progress["text_pattern"], account["pattern"]):
            re.compile(pattern)
        return cls(
            path=path, order=order, states=states,
            text_exclude=_strings(data.get("text_exclude", []), "text_exclude"),
            watch=watch,
            qr_container=_strings(qr.get("container"), "qr.container", allow_empty=False),
            qr_attribute=str(qr["attribute"]), qr_pattern=str(qr["payload_pattern"]),
            progress_selectors=_strings(progress.get("selectors", []), "progress.selectors"),
            progress_pattern=str(progress["text_pattern"]),
            passkey=passkey, pairing=pairing,
            pairing_link=_action(pairing.get("link"), "pairing_code.link"),
            pairing_next=_action(pairing.get("next"), "pairing_code.next"),
            use_here_action=_action(actions.get("use_here"), "actions.use_here"),
            reload_qr_action=_action(actions.get("reload_qr"), "actions.reload_qr"),
            logout_flag=str(logout["url_flag"]), logout_reason=str(logout["url_reason"]), logout=logout,
            account_keys=_strings(account.get("local_storage_keys", []), "account.local_storage_keys"),
            account_pattern=str(account["pattern"]),
            internal=internal, internal_map=internal_map,
            stream_offline=_strings(internal.get("stream_offline", []), "internal.stream_offline"),
        )

    def probe_config(self) -> dict[str, Any]:
        """The JSON-able subset the in-page watcher (js/watch.js) needs."""
        return {
            "states": {s.value: {"selectors": list(m.selectors), "texts": list(m.all_texts),
                                 "textIn": list(m.text_in), "unless": list(m.unless)}
                       for s, m in self.states.items()},
            "order": [s.value for s in self.order],
            "textExclude": list(self.text_exclude),
            "watch": {"ignore": list(self.watch.get("ignore", [])),
                      "attributes": list(self.watch.get("attributes", [])),
                      "debounceMs": int(self.watch.get("debounce_ms", 30)),
                      "textNodeLimit": int(self.watch.get("text_node_limit", 400))},
            "qr": {"container": list(self.qr_container), "attribute": self.qr_attribute},
            "progress": list(self.progress_selectors),
            "progressPattern": self.progress_pattern,
            "passkey": {k: self.passkey[k] for k in ("screen", "steps", "error", "code")},
            "pairing": {"code": list(self.pairing.get("code", [])), "attribute": self.pairing.get("attribute"),
                        "expired": list(self.pairing.get("expired", []))},
            "accountKeys": list(self.account_keys),
            "logout": {"sessionKey": self.logout.get("session_key", "__linda_logout"),
                       "hooks": list(self.logout.get("hooks", [])),
                       "cmdEvents": list(self.logout.get("cmd_events", []))},
            "internal": {k: self.internal[k] for k in ("require", "boot", "require_probe_seconds", "socket",
                                                        "stream", "conn", "cmd", "qr_parts") if k in self.internal},
        }


_default: Selectors | None = None


def default_selectors() -> Selectors:
    """The shipped selectors, loaded once."""
    global _default
    if _default is None:
        _default = Selectors.load()
    return _default
