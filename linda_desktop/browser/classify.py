"""Turns one reading of the in-page watcher (js/watch.js) into a ``PageSnapshot``. Pure: no browser.

Internal state first (``Socket.state`` once the page has booted, reference §1), the DOM markers of
selectors.json as the fallback (§2), the URL and the captured in-page reason for a logout (§3).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from linda_desktop.base.events import LinkStep, LogoutInfo, PageSnapshot, PageState
from linda_desktop.browser.selectors import Selectors

_QR_FIELDS = 4                 # ref, noise key, identity key, ADV secret (+ platform in the DOM's)
_CODE = re.compile(r"^[A-Z0-9]{4}-?[A-Z0-9]{4}$")
# Screens the DOM names more precisely than Socket.state does (UNPAIRED during the passkey step).
_DOM_REFINES = {PageState.QR: (PageState.PASSKEY, PageState.PAIRING_CODE),
                PageState.QR_IDLE: (PageState.PASSKEY, PageState.PAIRING_CODE),
                PageState.RESUMING: (PageState.PASSKEY,)}


def looks_like_qr(value: Any, pattern: str) -> bool:
    return isinstance(value, str) and re.match(pattern, value) is not None and value.count(",") >= _QR_FIELDS - 1


def parse_account(raw: Any, pattern: str) -> str | None:
    if not isinstance(raw, str) or not raw:
        return None
    match = re.match(pattern, raw)
    return match.group(1) if match else None


def format_code(raw: Any) -> str | None:
    """``"ABCDEFGH"``, ``"A,B,C,D,E,F,G,H"`` or ``"abcd-efgh"`` -> ``"ABCD-EFGH"``; None if not a code."""
    if not isinstance(raw, str):
        return None
    text = re.sub(r"[\s,]", "", raw).upper()
    if not _CODE.match(text):
        return None
    text = text.replace("-", "")
    return f"{text[:4]}-{text[4:]}"


def logout_from_url(url: str, selectors: Selectors) -> tuple[str | None, bool]:
    """The URL's ``logout_reason`` code and ``post_logout`` flag."""
    params = parse_qs(urlsplit(url).query)
    post_logout = params.get(selectors.logout_flag, [""])[-1].lower() in ("1", "true")
    code = params.get(selectors.logout_reason, [""])[-1] or None
    return code, post_logout


def logout_info(url: str, selectors: Selectors, reason: str | None) -> LogoutInfo | None:
    code, post_logout = logout_from_url(url, selectors)
    info = LogoutInfo(reason=reason or None, code=code, post_logout=post_logout)
    return info if info else None


def _dom_state(matches: Mapping[str, Any], selectors: Selectors) -> PageState | None:
    return next((s for s in selectors.order if matches.get(s.value)), None)


def _internal_state(internal: Any, selectors: Selectors) -> tuple[PageState | None, bool]:
    """(state, synced) from Socket/Stream, or (None, False) when the page gave nothing usable."""
    if not isinstance(internal, Mapping):
        return None, False
    state = selectors.internal_map.get(str(internal.get("state")))
    if state is None:
        return None, False
    synced = bool(internal.get("synced"))
    if state is PageState.CONNECTED and str(internal.get("info")) in selectors.stream_offline:
        state = PageState.OFFLINE
    return state, synced


def classify(raw: Mapping[str, Any] | None, selectors: Selectors, *, url: str | None = None,
             logout_reason: str | None = None) -> PageSnapshot:
    """``raw``: what js/watch.js read (None: nothing yet). ``url``: the page URL when ``raw`` has
    none. ``logout_reason``: the in-page reason captured before WhatsApp's reload (pushed earlier)."""
    href = str((raw or {}).get("href") or url or "")
    logged = (raw or {}).get("logout")
    reason = logout_reason or (logged.get("reason") if isinstance(logged, Mapping) else None)
    logout = logout_info(href, selectors, reason if isinstance(reason, str) else None)
    if not raw:
        return PageSnapshot(PageState.UNKNOWN, logout=logout)
    matches: Mapping[str, Any] = raw.get("matches") or {}
    dom = _dom_state(matches, selectors)
    state, synced = _internal_state(raw.get("internal"), selectors)
    source = "internal"
    if state is None:
        source = "dom"
        state = dom or PageState.UNKNOWN
        # The DOM cannot see the first history sync: a chat list without a loading bar is synced.
        synced = state is PageState.CONNECTED
    elif dom in _DOM_REFINES.get(state, ()):
        state = dom
    qr = None
    if state is PageState.QR:
        qr = next((v for v in (raw.get("qr"), raw.get("qrInternal")) if looks_like_qr(v, selectors.qr_pattern)), None)
    progress = raw.get("progress") if state in (PageState.LOADING, PageState.RESUMING) else None
    link_step = code = pairing = None
    if state is PageState.PASSKEY:
        found = raw.get("passkey")
        passkey: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        try:
            link_step = LinkStep(passkey.get("step") or LinkStep.PROMPT.value)
        except ValueError:
            link_step = LinkStep.PROMPT
        if link_step is LinkStep.PROMPT and passkey.get("error"):
            link_step = LinkStep.ERROR
        if link_step is LinkStep.CODE_MATCHING:
            code = format_code(passkey.get("code"))
    if state is PageState.PAIRING_CODE:
        pairing = format_code(raw.get("pairingCode"))
    if state is PageState.CONNECTED:
        logout = None   # the URL may still carry the parameters of a logout that is over
    return PageSnapshot(
        state=state, qr=qr,
        progress=int(progress) if isinstance(progress, (int, float)) else None,
        account=parse_account(raw.get("account"), selectors.account_pattern),
        synced=synced if state is PageState.CONNECTED else False,
        logout=logout, link_step=link_step, verification_code=code, pairing_code=pairing, source=source,
    )


def change_key(snap: PageSnapshot) -> tuple[Any, ...]:
    """What counts as a change for ``wait_for_change``: everything but the loading percentage
    and where the reading came from."""
    return (snap.state, snap.qr, snap.synced, snap.logout, snap.link_step, snap.verification_code,
            snap.pairing_code, snap.account)


def differs(previous: PageSnapshot | None, current: PageSnapshot) -> bool:
    return previous is None or change_key(previous) != change_key(current)
