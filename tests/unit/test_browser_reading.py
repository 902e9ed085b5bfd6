"""The page-reading logic that needs no browser: selectors.json, classify, codes, phone numbers,
forgetting restored tabs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from linda_desktop.base.events import LinkStep, LogoutInfo
from linda_desktop.base.events import PageState as S
from linda_desktop.base.phone import PhoneNumberError, normalize_phone
from linda_desktop.browser.classify import classify, differs, format_code
from linda_desktop.browser.selectors import Selectors, SelectorsError
from linda_desktop.browser.tabs import forget_open_tabs
from linda_desktop.browser.watch import watcher_source
from linda_desktop.resources import path as resource_path

SEL = Selectors.load()
QR = "2@abc,k1,k2,k3,WEB"


def reading(**kw):
    base = {"href": "http://x/", "matches": {}, "internal": None}
    base.update(kw)
    return base


def internal(state, synced=False, info="NORMAL"):
    return {"state": state, "synced": synced, "info": info, "mode": None, "ref": None}


def test_shipped_selectors_load_cover_every_dom_state_in_three_languages():
    assert SEL.path == resource_path("selectors.json")
    dom_states = {S.UNSUPPORTED, S.CONFLICT, S.PASSKEY, S.PAIRING_CODE, S.QR_IDLE, S.QR, S.LOADING, S.OFFLINE,
                  S.CONNECTED}
    assert set(SEL.order) == dom_states
    for state in (S.CONFLICT, S.OFFLINE, S.LOADING, S.UNSUPPORTED):
        assert set(SEL.states[state].texts) == {"en", "pt", "de"}, state
    assert set(SEL.use_here_action.labels) == {"en", "pt", "de"}
    # The wordmark is drawn on the QR and passkey screens too: it marks nothing.
    assert not any("wordmark" in s for m in SEL.states.values() for s in m.selectors)
    assert "#wa_web_initial_startup" in SEL.states[S.LOADING].selectors
    assert "#initial_startup" not in SEL.states[S.LOADING].selectors


@pytest.mark.parametrize("socket, state", [
    ("UNLAUNCHED", S.RESUMING), ("OPENING", S.RESUMING), ("PAIRING", S.RESUMING), ("UNPAIRED", S.QR),
    ("UNPAIRED_IDLE", S.QR_IDLE), ("CONFLICT", S.CONFLICT), ("TIMEOUT", S.OFFLINE),
    ("DEPRECATED_VERSION", S.OUTDATED), ("TOS_BLOCK", S.BANNED), ("SMB_TOS_BLOCK", S.BANNED),
    ("PROXYBLOCK", S.NETWORK_BLOCKED), ("CONNECTED", S.CONNECTED),
])
def test_every_socket_state_maps_to_a_page_state(socket, state):
    snap = classify(reading(internal=internal(socket)), SEL)
    assert snap.state is state and snap.source == "internal"


def test_internal_state_wins_and_the_dom_refines_it():
    # CONNECTED before the first sync, then synced; Stream OFFLINE while CONNECTED -> offline.
    assert classify(reading(internal=internal("CONNECTED")), SEL).synced is False
    assert classify(reading(internal=internal("CONNECTED", synced=True)), SEL).synced is True
    assert classify(reading(internal=internal("CONNECTED", info="OFFLINE")), SEL).state is S.OFFLINE
    # The DOM says connected, the socket says the QR: the socket wins.
    assert classify(reading(internal=internal("UNPAIRED"), matches={"connected": True}, qr=QR), SEL).state is S.QR
    # Socket UNPAIRED during the Shortcake screens: the DOM names the step.
    snap = classify(reading(internal=internal("UNPAIRED"), matches={"passkey": True, "qr": True},
                            passkey={"step": "code_matching", "code": "abcd efgh"}), SEL)
    assert (snap.state, snap.link_step, snap.verification_code) == (S.PASSKEY, LinkStep.CODE_MATCHING, "ABCD-EFGH")
    error = classify(reading(matches={"passkey": True}, passkey={"step": "prompt", "error": True}), SEL)
    assert error.link_step is LinkStep.ERROR and error.source == "dom"
    pairing = classify(reading(internal=internal("UNPAIRED"), matches={"pairing_code": True},
                               pairingCode="WXYZ-1234"), SEL)
    assert (pairing.state, pairing.pairing_code) == (S.PAIRING_CODE, "WXYZ-1234")
    # An unknown socket value: the DOM decides.
    assert classify(reading(internal=internal("SOMETHING_NEW"), matches={"qr": True}, qr=QR), SEL).state is S.QR


def test_dom_fallback_order_qr_payloads_and_account():
    both = reading(matches={"qr": True, "conflict": True}, qr=QR)
    assert classify(both, SEL).state is S.CONFLICT                       # order decides
    assert classify(reading(matches={"qr": True}, qr="garbage"), SEL).qr is None
    built = reading(internal=internal("UNPAIRED"), matches={"qr": True}, qr="", qrInternal=QR)
    assert classify(built, SEL).qr == QR                                 # canvas-only: from internals
    assert classify(reading(matches={}), SEL).state is S.UNKNOWN
    assert classify(None, SEL).state is S.UNKNOWN
    connected = reading(matches={"connected": True}, account='"15550001234:3@c.us"')
    snap = classify(connected, SEL)
    assert snap.state is S.CONNECTED and snap.synced and snap.account == "15550001234"
    offline = classify(reading(matches={"connected": True, "offline": True}), SEL)
    assert offline.state is S.OFFLINE


def test_logout_info_from_url_and_captured_reason():
    url = "http://x/?post_logout=1&logout_reason=0"
    snap = classify(reading(href=url, matches={"qr": True}, qr=QR), SEL)
    assert snap.logout == LogoutInfo(reason=None, code="0", post_logout=True)
    snap = classify(reading(href="http://x/?post_logout=1", matches={"qr": True}, qr=QR,
                            logout={"reason": "user_initiated"}), SEL)
    assert snap.logout == LogoutInfo(reason="user_initiated", code=None, post_logout=True)
    snap = classify(reading(href="http://x/?post_logout=1", matches={"qr": True}, qr=QR), SEL,
                    logout_reason="missing_enc_salt")
    assert snap.logout is not None and snap.logout.reason == "missing_enc_salt"
    assert classify(reading(matches={"qr": True}, qr=QR), SEL).logout is None
    # Once connected again the old URL parameters mean nothing any more.
    assert classify(reading(href=url, internal=internal("CONNECTED", synced=True)), SEL).logout is None


def test_a_loading_percentage_is_no_change_but_a_sync_is():
    a = classify(reading(internal=internal("OPENING"), progress=10), SEL)
    b = classify(reading(internal=internal("OPENING"), progress=60), SEL)
    assert a.progress == 10 and not differs(a, b)
    c = classify(reading(internal=internal("CONNECTED")), SEL)
    d = classify(reading(internal=internal("CONNECTED", synced=True)), SEL)
    assert differs(b, c) and differs(c, d) and differs(None, d)


def test_codes_and_phone_numbers():
    assert format_code("abcdefgh") == "ABCD-EFGH"
    assert format_code("A,B,C,D,E,F,G,H") == "ABCD-EFGH"
    assert format_code("ABCD-EFG") is None and format_code(None) is None
    assert normalize_phone("+49 151 2345-6789") == "4915123456789"
    assert normalize_phone("0049 (151) 23456789") == "4915123456789"
    for bad in ("", "12", "+0 123 456 789", "phone", "1" * 16):
        with pytest.raises(PhoneNumberError):
            normalize_phone(bad)


def test_watcher_source_carries_the_selectors_and_no_placeholders():
    source = watcher_source(SEL)
    assert "__LINDA_CONFIG__" not in source and "__LINDA_BINDING__" not in source
    assert "shortcake_passkey_screen" in source and "Hier verwenden" not in source   # clicks stay in Python
    assert "Computador não conectado" in source


def test_forget_open_tabs_clears_sessions_and_marks_a_clean_exit(tmp_path: Path):
    default = tmp_path / "Default"
    (default / "Sessions").mkdir(parents=True)
    (default / "Sessions" / "Session_1").write_bytes(b"tabs")
    (default / "Current Tabs").write_bytes(b"old")
    (default / "Preferences").write_text(json.dumps({"profile": {"exit_type": "Crashed", "name": "x"},
                                                     "session": {"restore_on_startup": 1}}))
    done = forget_open_tabs(tmp_path)
    assert "Sessions" in done and "Current Tabs" in done and "Preferences:exit_type" in done
    assert not (default / "Sessions").exists() and not (default / "Current Tabs").exists()
    prefs = json.loads((default / "Preferences").read_text())
    assert prefs["profile"] == {"exit_type": "Normal", "name": "x", "exited_cleanly": True}
    assert prefs["session"] == {"restore_on_startup": 1}                   # other settings kept
    assert forget_open_tabs(tmp_path) == []                                 # nothing left to do
    assert forget_open_tabs(tmp_path / "missing") == []
    (default / "Preferences").write_text("{broken")
    assert forget_open_tabs(tmp_path) == []                                 # unreadable: left alone
    assert (default / "Preferences").read_text() == "{broken"


@pytest.mark.parametrize("damage, words", [
    (None, "not found"),
    ("{not json", "unreadable"),
    ({"schema": 1}, "schema"),
    ("unknown_state", "nonsense"),
    ("empty_selector", "non-empty strings"),
    ("order_without_markers", "without markers"),
    ("texts_without_scope", "text_in"),
    ("unknown_step", "nowhere"),
])
def test_broken_selectors_file_is_a_clear_error(tmp_path, damage, words):
    target = tmp_path / "selectors.json"
    good = json.loads(resource_path("selectors.json").read_text())
    if damage == "{not json":
        target.write_text(damage)
    elif isinstance(damage, dict):
        target.write_text(json.dumps({**good, **damage}))
    elif damage is not None:
        if damage == "unknown_state":
            good["states"]["nonsense"] = {"selectors": ["x"]}
        elif damage == "empty_selector":
            good["states"]["qr"]["selectors"].append("")
        elif damage == "order_without_markers":
            del good["states"]["offline"]
        elif damage == "texts_without_scope":
            del good["states"]["conflict"]["text_in"]
        elif damage == "unknown_step":
            good["passkey"]["steps"].append(["nowhere", "[data-testid=x]"])
        target.write_text(json.dumps(good))
    with pytest.raises(SelectorsError) as info:
        Selectors.load(target)
    assert words in str(info.value) and str(target) in str(info.value)
