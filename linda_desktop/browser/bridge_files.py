"""Where `linda-desktop api update-bridge` keeps the wa-js builds it fetched (``<data>/bridge``).

    bridge/<version>/wppconnect-wa.js   the build, checked against the registry's integrity hash
    bridge/<version>/package.json       its own package metadata (name, version)
    bridge/state.json                   {"current": v, "previous": v, "bad": [v, …]}

``bad`` lists builds that never became ready in the page: they are skipped, so the previous
build (or npm's copy) is used again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from linda_desktop.base.atomic import atomic_write_json

STATE = "state.json"
FILE = "wppconnect-wa.js"


def read_state(bridge_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((Path(bridge_dir) / STATE).read_text("utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def write_state(bridge_dir: Path, state: dict[str, Any]) -> None:
    Path(bridge_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(bridge_dir) / STATE, state)


def installed_bridges(bridge_dir: Path) -> list[tuple[str, Path]]:
    """(version, file) of the current and previous builds, minus those marked bad."""
    state = read_state(bridge_dir)
    bad = set(state.get("bad") or [])
    out = []
    for key in ("current", "previous"):
        version = state.get(key)
        if isinstance(version, str) and version not in bad:
            path = Path(bridge_dir) / version / FILE
            if path.is_file():
                out.append((version, path))
    return out


def mark_bad(bridge_dir: Path, version: str) -> bool:
    """Remember that ``version`` never became ready; True when that changed anything."""
    state = read_state(bridge_dir)
    if version not in {state.get("current"), state.get("previous")}:
        return False
    bad = list(state.get("bad") or [])
    if version in bad:
        return False
    bad.append(version)
    state["bad"] = bad
    write_state(bridge_dir, state)
    return True
