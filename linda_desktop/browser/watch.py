"""The in-page watcher's source (js/watch.js, shipped as package data) filled in with the selectors.

The page pushes readings and logout reasons through ONE Playwright binding, ``BINDING``; the
bot bridge has its own (``messaging.BINDING``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from linda_desktop.browser.selectors import Selectors

BINDING = "__lindaPage"
JS_DIR = Path(__file__).resolve().parent / "js"
READ_JS = "() => window.__lindaWatch ? window.__lindaWatch.read() : null"
PING_JS = "() => window.__lindaWatch ? window.__lindaWatch.ping() : null"
ACT_JS = "([name, arg]) => window.__lindaWatch ? window.__lindaWatch.act(name, arg) : {ok: false, why: 'no_watcher'}"


@lru_cache(maxsize=4)
def _template(name: str) -> str:
    return (JS_DIR / name).read_text(encoding="utf-8")


def watcher_source(selectors: Selectors) -> str:
    """The init script for every page of the context."""
    config = json.dumps(selectors.probe_config(), ensure_ascii=False)
    return (_template("watch.js").replace("__LINDA_CONFIG__", config)
            .replace("__LINDA_BINDING__", json.dumps(BINDING)))


def reading(data: Any) -> Mapping[str, Any] | None:
    """A pushed reading, checked for shape (the page is not trusted to be well-formed)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("matches"), Mapping):
        return None
    if not isinstance(data.get("href"), str):
        return None
    return data


def logout_reason(data: Any) -> str | None:
    if isinstance(data, Mapping) and isinstance(data.get("reason"), str) and 0 < len(data["reason"]) <= 120:
        return data["reason"]
    return None
