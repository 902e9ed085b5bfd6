"""The session's decisions as a pure reducer: ``(model, input, now) -> (model, actions)``.

Inputs are page readings (``step``), the facts found at start-up (``boot``) and the results of
actions the service carried out (``restore_done``, ``backup_done``, ``show_done``,
``pairing_done``). Nothing here touches a browser, a file or a clock: the service
(``session_service.SessionService``) executes the actions and feeds the results back, and the
unit tests drive every transition with plain data.

The rules (DESIGN.md §4, whatsapp-web-reference.md §1, §3):
- a QR page while the profile held a session is a logout, decided by its cause
  (``recovery.classify_logout``): local → the newest usable backup, then one older generation;
  removed → say so, revoke, archive, QR; locked / banned → words, no QR loop; sync failure or no
  reason → one restore of the newest, then QR (no archive, no revoke: that would be a guess);
- a profile that never held a session is never "unlinked" (``FIRST_LINK``);
- damage that no backup could repair is ``NO_USABLE_BACKUP``, not the phone's doing;
- RESUMING (OPENING / PAIRING) is an ordinary resume step; CONNECTED-not-synced is loading that
  may take minutes: no reload, and the link backup (with its storage flush) waits for ``synced``;
- a restored backup becomes known-good once its session reached connected (and it verifies).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from linda_desktop.base.events import LinkStep, LogoutInfo, NoticeKind, PageSnapshot, PageState, SessionState, StateCode
from linda_desktop.service import actions as A
from linda_desktop.service.recovery import MAX_RESTORES, Cause, classify_logout

Result = tuple["Model", list[A.Action]]

TAKEOVER_WINDOW_SECONDS = 600.0
MAX_TAKEOVERS_PER_WINDOW = 3
LINK_STAGE_SECONDS = 130.0            # the page's own 120 s per stage, and a little grace
RELOAD_BACKOFF_SECONDS = (0.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0)
BACKUP_RETRY_SECONDS = (30.0, 60.0, 120.0, 300.0, 900.0)
MAX_PAIRING_REQUESTS = 5
# A restored profile can come up connected and still be logged out with code 0 seconds later
# (reference §3, ~7 s): the recovery ends, and its backup is proven good, only after this.
PROBATION_SECONDS = 15.0

PASSKEY_WORDS = ("WhatsApp asks to finish linking with a passkey: press Continue in the WhatsApp window "
                 "that opened, confirm with your phone, then check that the code matches")
NO_DISPLAY_WORDS = ("WhatsApp asks for a passkey to finish linking, which needs a browser window on screen "
                    "and this machine has no display: link once on a desktop and `linda-desktop import` the "
                    "profile, or run `linda-desktop finish-link` with a display, or link with a pairing code "
                    "(`linda-desktop run --phone NUMBER`)")
LINK_EXPIRED_WORDS = "the linking step timed out or was cancelled; scan the new QR code to try again"
PAIRING_EXPIRED_WORDS = "the pairing code expired; ask for a new one"
DAMAGED_WORDS = "the session data is damaged and no backup could restore it; link this computer again"
LOCKED_WORDS = "WhatsApp says this account is locked; unlock it on your phone, then choose Re-link"
AGAIN_WORDS = "link this computer again: scan the QR code"
BANNED_WORDS = "WhatsApp has banned this account from using WhatsApp Web; linking again will not help"
CONFLICT_LIMIT_WORDS = ("another copy of this session keeps taking WhatsApp over; close it, "
                        "then choose Restore or Re-link")


@dataclass(frozen=True)
class Config:
    """The settings the decisions need (from ``Settings``)."""

    flush_delay_seconds: float = 6.0
    page_timeout_seconds: float = 90.0
    backup_interval_seconds: float = 6 * 3600.0
    take_over_on_conflict: bool = True
    link_stage_seconds: float = LINK_STAGE_SECONDS


@dataclass(frozen=True)
class Boot:
    """What the service found before launching (profile check, state file, backups, display)."""

    linked: bool                       # the state file says this computer was linked
    has_session: bool                  # the profile holds session data
    profile_ok: bool                   # ... and it is sound
    problems: tuple[str, ...] = ()
    link_backup_missing: bool = False  # no backup younger than the last link (issue 12 item 2)
    last_logout: LogoutInfo | None = None  # a logout recorded but not yet acted on


@dataclass(frozen=True)
class Model:
    """Everything the decisions remember. Frozen: every change is a new Model."""

    config: Config = field(default_factory=Config)
    display: bool = False              # a real window is possible here (desktop session)
    pairing_phone: str | None = None   # link with a pairing code for this number instead of a QR
    # what is reported
    session: SessionState = SessionState.STARTING
    code: StateCode | None = None
    reason: str | None = None
    step: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    account: str | None = None
    # the browser
    hidden_window: bool = False        # the current browser has a real window kept out of sight
    window_shown: bool = False
    page_connected: bool = False       # the current page has reached CONNECTED
    synced: bool = False
    parked: bool = False               # no browser on purpose (locked / banned)
    # recovery
    expect_session: bool = False       # the profile held a session: a QR page is a logout
    damaged: bool = False              # start-up found the session data damaged
    count_resume: bool = False         # count the next CONNECTED as a restore (restore_count)
    restores: tuple[str, ...] = ()     # backups restored in this recovery
    restored_from: str | None = None   # restored, not yet seen connected
    no_backup_left: bool = False       # a Restore found nothing usable in this recovery
    launched: bool = False             # a browser was launched since boot
    pending_logout: LogoutInfo | None = None
    logout: LogoutInfo | None = None   # the logout this recovery is about, and its cause
    cause: Cause | None = None
    link_code: StateCode = StateCode.FIRST_LINK
    link_reason: str | None = None
    # running
    was_connected: bool = False
    connected_at: float | None = None  # when this recovery's session reached connected (probation)
    pending_good: tuple[A.Action, ...] = ()  # MarkKnownGood / ConfirmExitBackup once probation passed
    counted: bool = False              # this recovery's restore is counted (once, however many tries)
    link_backup_due: bool = False
    link_backup_at: float | None = None
    next_backup_at: float | None = None
    backup_failures: int = 0
    last_qr: str | None = None
    qr_idle_sent: bool = False
    unsettled_since: float | None = None
    takeovers: tuple[float, ...] = ()
    reloads: int = 0
    next_reload_at: float | None = None
    link_step: LinkStep | None = None
    step_since: float | None = None
    pairing_requests: int = 0
    pairing_requested: bool = False    # a code was asked for on this page
    pairing_shown: bool = False        # the page showed the code screen
    pairing_code: str | None = None


# ---------------------------------------------------------------------------------- helpers

def _say(model: Model, state: SessionState, code: StateCode | None = None, reason: str | None = None, *,
         step: str | None = None, details: Mapping[str, Any] | None = None) -> Result:
    """Report ``state`` unless it is what was reported last."""
    details = dict(details or {})
    if (state, code, reason, step, details) == (model.session, model.code, model.reason, model.step,
                                                dict(model.details)):
        return model, []
    entering_link = state == SessionState.NEEDS_LINK and model.session != SessionState.NEEDS_LINK
    model = replace(model, session=state, code=code, reason=reason, step=step, details=details,
                    last_qr=None if entering_link else model.last_qr,
                    qr_idle_sent=False if entering_link else model.qr_idle_sent)
    account = model.account if state == SessionState.CONNECTED else None
    return model, [A.EmitState(state, code, reason, step, details, account)]


def _launch(model: Model, *, hidden: bool) -> Result:
    model = replace(model, hidden_window=hidden, window_shown=False, page_connected=False, synced=False, launched=True,
                    unsettled_since=None, link_step=None, step_since=None, pairing_shown=False, pairing_requested=False,
                    parked=False)
    return model, [A.Launch(hidden_window=hidden)]


def _for_link(model: Model) -> bool:
    """Launch with a hidden real window: linking may need the passkey step, which needs a window."""
    return model.display


def _fresh_link(model: Model, code: StateCode, reason: str | None) -> Model:
    """From now on a QR page is a link to make, not a logout."""
    return replace(model, expect_session=False, damaged=False, count_resume=False, restores=(), restored_from=None,
                   pending_logout=None, no_backup_left=False, connected_at=None, pending_good=(), counted=False,
                   logout=None, cause=None,
                   link_code=code,
                   link_reason=reason)


# ---------------------------------------------------------------------------------- start-up

def boot(model: Model, facts: Boot) -> Result:
    """Start-up: restore first when the profile that should hold a session is damaged, then launch.

    A profile the state file never saw linked is a first link whatever its files hold (WhatsApp
    writes storage before any link); it is never damaged, never restored, never archived."""
    damaged = facts.linked and (not facts.has_session or not facts.profile_ok)
    model = replace(model, expect_session=facts.linked, damaged=damaged, count_resume=facts.linked, restores=(),
                    restored_from=None, pending_logout=facts.last_logout if facts.linked else None,
                    link_backup_due=facts.linked and facts.link_backup_missing, link_code=StateCode.FIRST_LINK,
                    link_reason=None, parked=False, no_backup_left=False, launched=False, connected_at=None,
                    pending_good=(), counted=False, logout=None, cause=None)
    if damaged:
        why = "the live profile is damaged: " + ("; ".join(facts.problems) or "session data missing")
        model, acts = _say(model, SessionState.RESTORING, StateCode.LOCAL_DAMAGE, why)
        return model, [*acts, A.Restore(tried=(), why=why)]
    return _launch(model, hidden=not facts.linked and _for_link(model))


def restore_done(model: Model, backup_id: str | None) -> Result:
    """A ``Restore`` finished: ``backup_id`` is now the live profile, or None when no usable backup was left."""
    if backup_id is not None:
        model = replace(model, restores=(*model.restores, backup_id), restored_from=backup_id, count_resume=True)
        return _launch(model, hidden=False)
    model = replace(model, no_backup_left=True)
    if not model.launched:
        # Damaged at start-up and nothing to restore: the page may still come up (or say why not).
        return _launch(model, hidden=False)
    cause = Cause.LOCAL if model.damaged else (model.cause or (Cause.LOCAL if model.restores else Cause.UNKNOWN))
    return _give_up(model, cause, model.logout, launch=True)


# ---------------------------------------------------------------------------------- page readings

def step(model: Model, snap: PageSnapshot, now: float) -> Result:
    """React to one reading of the page (also called with an unchanged reading: timers)."""
    state = snap.state
    if state not in (PageState.LOADING, PageState.RESUMING, PageState.UNKNOWN):
        model = replace(model, unsettled_since=None)
    if state != PageState.OUTDATED:
        model = replace(model, reloads=0, next_reload_at=None)
    handler = _HANDLERS.get(state, _unsettled)
    return handler(model, snap, now)


def _connected(model: Model, snap: PageSnapshot, now: float) -> Result:
    acts: list[A.Action] = []
    model = replace(model, account=snap.account or model.account, link_step=None, step_since=None)
    if not model.page_connected:
        model, acts = _first_connected(model, now)
    if snap.synced and not model.synced:
        model = replace(model, synced=True)
        if model.link_backup_due and model.link_backup_at is None:
            model = replace(model, link_backup_at=now + model.config.flush_delay_seconds)
    model, said = _say(model, SessionState.CONNECTED, None if model.synced else StateCode.SYNCING)
    model, timers = _timers(model, now)
    return model, [*acts, *said, *timers]


def _first_connected(model: Model, now: float) -> Result:
    """The bookkeeping of reaching connected: count a resume or a restore, record a new link (its
    backup follows once synced). The backup it came from is confirmed after the probation."""
    acts: list[A.Action] = []
    account = model.account or ""
    pending: tuple[A.Action, ...] = ()
    if model.count_resume or model.restored_from:
        if not model.counted:
            acts.append(A.RecordMeta("restore", {"source": model.restored_from or "profile", "account": account}))
        pending = (A.MarkKnownGood(model.restored_from),) if model.restored_from else (A.ConfirmExitBackup(),)
    elif not model.expect_session:
        acts.append(A.RecordMeta("link", {"account": account}))
        model = replace(model, link_backup_due=True, link_backup_at=None)
    acts.append(A.RecordMeta("connected", {"account": account}))
    next_backup = model.next_backup_at if model.next_backup_at is not None \
        else now + model.config.backup_interval_seconds
    model = replace(model, page_connected=True, was_connected=True, expect_session=True, count_resume=False,
                    restored_from=None, pending_logout=None, no_backup_left=False, next_backup_at=next_backup,
                    link_code=StateCode.FIRST_LINK, link_reason=None, connected_at=now, pending_good=pending,
                    counted=model.counted or bool(pending))
    return model, acts


def _probation(model: Model, now: float) -> Result:
    """Connected long enough: this recovery is over, and the backup it came from is proven good."""
    if model.connected_at is None or now - model.connected_at < PROBATION_SECONDS:
        return model, []
    return settle_recovery(model)


def settle_recovery(model: Model) -> Result:
    """End the recovery: forget its restores and confirm the backup (also at a clean exit while connected)."""
    pending = model.pending_good if model.session == SessionState.CONNECTED else ()
    model = replace(model, connected_at=None, pending_good=(), restores=(), damaged=False, counted=False,
                    logout=None, cause=None)
    return model, list(pending)


def _timers(model: Model, now: float) -> Result:
    """Backups while connected: the link backup once synced, then periodic ones."""
    model, confirmed = _probation(model, now)
    if confirmed or not model.synced:
        return model, confirmed
    if model.link_backup_due and model.link_backup_at is not None and now >= model.link_backup_at:
        model = replace(model, link_backup_at=None)
        if model.hidden_window:  # back to headless: closing flushes storage, back up at rest
            model, launch = _launch(model, hidden=False)
            return model, [A.Close(), A.Backup("link", cold=True, known_good=True), *launch]
        return model, [A.Backup("link", flush=True, known_good=True)]
    if model.next_backup_at is not None and now >= model.next_backup_at:
        model = replace(model, next_backup_at=None)
        return model, [A.Backup("auto")]
    return model, []


def _qr(model: Model, snap: PageSnapshot, now: float) -> Result:
    if model.parked:
        return model, []
    if model.expect_session:
        return _logout(model, snap)
    model, expired = _link_expired(model)
    model, said = _say(model, SessionState.NEEDS_LINK, model.link_code, model.link_reason)
    model, shown = _qr_payload(model, snap)
    model, asked = _ask_pairing_code(model, snap)
    return model, [*expired, *said, *shown, *asked]


def _link_expired(model: Model) -> Result:
    """Back on a QR after the passkey step or a pairing code: it timed out, or the owner cancelled."""
    if model.link_step is None and not model.pairing_shown:
        return model, []
    expired = PAIRING_EXPIRED_WORDS if model.link_step is None else LINK_EXPIRED_WORDS
    hide: list[A.Action] = [A.HideWindow()] if model.window_shown else []
    model = replace(model, link_step=None, step_since=None, pairing_shown=False, pairing_requested=False,
                    pairing_code=None, link_code=StateCode.LINK_EXPIRED, link_reason=expired, window_shown=False)
    return model, [A.RecordMeta("link_expired", {}), *hide]


def _qr_payload(model: Model, snap: PageSnapshot) -> Result:
    """Each new QR payload once; a QR list that ran out once."""
    if snap.state == PageState.QR and snap.qr and snap.qr != model.last_qr:
        return replace(model, last_qr=snap.qr, qr_idle_sent=False), [A.EmitQr(snap.qr)]
    if snap.state == PageState.QR_IDLE and not model.qr_idle_sent:
        return replace(model, qr_idle_sent=True), [A.EmitQr(snap.qr or model.last_qr or "", idle=True)]
    return model, []


def _ask_pairing_code(model: Model, snap: PageSnapshot) -> Result:
    """`run --phone`: ask for a pairing code on the QR screen (again once one expired)."""
    phone = model.pairing_phone
    if not phone or model.pairing_requested or model.pairing_requests >= MAX_PAIRING_REQUESTS \
            or snap.state != PageState.QR:
        return model, []
    model = replace(model, pairing_requests=model.pairing_requests + 1, pairing_requested=True)
    return model, [A.RequestPairingCode(phone)]


def _logout(model: Model, snap: PageSnapshot) -> Result:
    """A QR page although the profile held a session: decide by the cause (DESIGN §4)."""
    info = snap.logout or model.pending_logout
    cause = classify_logout(info, damaged=model.damaged)
    record = A.RecordMeta("logout_seen", {"reason": (info.reason if info else None) or "",
                                          "code": (info.code if info else None) or "",
                                          "cause": cause.value, "restores_done": len(model.restores)})
    model = replace(model, pending_logout=None, logout=info, cause=cause)
    if cause in (Cause.REMOVED, Cause.LOCKED):
        return _prepend(record, _give_up(model, cause, info))
    if len(model.restores) < MAX_RESTORES[cause] and not model.no_backup_left:
        why = _restore_words(cause, info)
        code = StateCode.LOCAL_DAMAGE if cause == Cause.LOCAL or model.damaged else None
        model, said = _say(model, SessionState.RESTORING, code, why)
        model = replace(model, damaged=model.damaged or cause == Cause.LOCAL, connected_at=None, pending_good=())
        return model, [record, *said, A.Close(), A.Restore(tried=model.restores, why=why)]
    return _prepend(record, _give_up(model, Cause.LOCAL if model.damaged else cause, info))


def _prepend(action: A.Action, result: Result) -> Result:
    return result[0], [action, *result[1]]


def _restore_words(cause: Cause, info: LogoutInfo | None) -> str:
    said = (info.reason or (f"code {info.code}" if info.code else "")) if info else ""
    words = {Cause.LOCAL: "WhatsApp could not read the session stored here",
             Cause.SYNC: "the session could not sync",
             Cause.UNKNOWN: "the page asked for a QR code although a session existed"}[cause]
    return f"{words}{f' ({said})' if said else ''}; restoring a backup"


def _give_up(model: Model, cause: Cause, info: LogoutInfo | None = None, *, launch: bool = False) -> Result:
    """No (more) restores: say what happened in words, then ask for a link (or park)."""
    said = (info.reason or (f"code {info.code}" if info.code else "")) if info else ""
    record = A.RecordMeta("logged_out", {"reason": said, "cause": cause.value, "restores_tried": len(model.restores)})
    if cause == Cause.LOCKED:
        model, acts = _say(model, SessionState.LOGGED_OUT, StateCode.ACCOUNT_LOCKED, LOCKED_WORDS)
        model = replace(_fresh_link(model, StateCode.ACCOUNT_LOCKED, LOCKED_WORDS), parked=True)
        return model, [*acts, record, A.Park()]
    if cause == Cause.REMOVED:
        words = "This computer was unlinked from your phone" + (f" (WhatsApp said: {said})" if said else "")
        model, acts = _say(model, SessionState.LOGGED_OUT, StateCode.PHONE_REMOVED, words)
        model = _fresh_link(model, StateCode.PHONE_REMOVED, AGAIN_WORDS)
        model, launch_acts = _launch(model, hidden=_for_link(model))
        return model, [*acts, record, A.MarkRevoked(), A.Archive(f"logged out: {said or 'removed'}"), *launch_acts]
    if cause == Cause.LOCAL:
        model, acts = _say(model, SessionState.NEEDS_LINK, StateCode.NO_USABLE_BACKUP, DAMAGED_WORDS)
        model = _fresh_link(model, StateCode.NO_USABLE_BACKUP, DAMAGED_WORDS)
    else:  # SYNC / UNKNOWN after the one restore: most likely removed, but a guess: nothing revoked or archived
        model, acts = _say(model, SessionState.LOGGED_OUT, StateCode.PHONE_REMOVED, _guess_words(said, model.restores))
        model = _fresh_link(model, StateCode.PHONE_REMOVED, AGAIN_WORDS)
    if launch or (model.display and not model.hidden_window):
        model, more = _launch(model, hidden=_for_link(model))
        return model, [*acts, record, *more]
    return model, [*acts, record]


def _guess_words(said: str, restores: tuple[str, ...]) -> str:
    tried = len(restores)
    return ("WhatsApp logged this computer out" + (f" ({said})" if said else " without giving a reason")
            + (f" and {tried} restore{'s' if tried > 1 else ''} did not bring the session back" if tried else "")
            + "; it was probably unlinked from the phone. Backups are kept")


def _passkey(model: Model, snap: PageSnapshot, now: float) -> Result:
    """The Shortcake screens after a scan (reference §4): the same window must come on screen."""
    stage = snap.link_step or LinkStep.PROMPT
    acts: list[A.Action] = []
    if model.link_step != stage:
        model = replace(model, link_step=stage, step_since=now)
        acts.append(A.RecordMeta("link_step", {"stage": stage.value}))
    elif model.step_since is not None and now - model.step_since > model.config.link_stage_seconds:
        model = replace(model, link_step=None, step_since=None, link_code=StateCode.LINK_EXPIRED,
                        link_reason=LINK_EXPIRED_WORDS)
        model, said = _say(model, SessionState.NEEDS_LINK, StateCode.LINK_EXPIRED, LINK_EXPIRED_WORDS)
        hide: list[A.Action] = [A.HideWindow()] if model.window_shown else []
        return replace(model, window_shown=False), [*said, *hide, A.RecordMeta("link_expired", {}), A.Reload()]
    details: dict[str, Any] = {"stage": stage.value}
    if snap.verification_code:
        details["verification_code"] = snap.verification_code
    if model.hidden_window:
        if not model.window_shown:
            model = replace(model, window_shown=True)
            acts.append(A.ShowWindow())
        model, said = _say(model, SessionState.NEEDS_LINK, StateCode.PASSKEY, PASSKEY_WORDS, step="passkey",
                           details=details)
    else:
        model, said = _say(model, SessionState.NEEDS_LINK, StateCode.PASSKEY_NEEDS_DISPLAY, NO_DISPLAY_WORDS,
                           step="passkey", details=details)
    return model, [*acts, *said]


def _pairing_code(model: Model, snap: PageSnapshot, now: float) -> Result:
    acts: list[A.Action] = []
    model = replace(model, pairing_shown=True)
    if snap.pairing_code and snap.pairing_code != model.pairing_code:
        model = replace(model, pairing_code=snap.pairing_code)
        acts.append(A.EmitPairingCode(snap.pairing_code))
    model, said = _say(model, SessionState.NEEDS_LINK, StateCode.PAIRING_CODE,
                       "enter the code on your phone: Linked devices ▸ Link with phone number instead")
    return model, [*acts, *said]


def _conflict(model: Model, snap: PageSnapshot, now: float) -> Result:
    """Take over (``Socket.takeover()``, no language needed) unless another copy of this session
    keeps taking it back: two clients fighting over one device would ping-pong forever."""
    acts: list[A.Action] = []
    if model.session != SessionState.CONFLICT:
        model, acts = _say(model, SessionState.CONFLICT, None, "WhatsApp is open in another window")
        acts.append(A.RecordMeta("conflict", {}))
    recent = tuple(t for t in model.takeovers if now - t < TAKEOVER_WINDOW_SECONDS)
    model = replace(model, takeovers=recent)
    if not model.config.take_over_on_conflict:
        return model, acts
    if len(recent) >= MAX_TAKEOVERS_PER_WINDOW:
        model, said = _say(model, SessionState.CONFLICT, StateCode.CONFLICT_LIMIT, CONFLICT_LIMIT_WORDS)
        return model, [*acts, *said]
    if recent and now - recent[-1] < 2.0:
        return model, acts  # the last takeover is still landing
    model = replace(model, takeovers=(*recent, now))
    return model, [*acts, A.TakeOver(), A.RecordMeta("conflict_taken_over", {})]


def _offline(model: Model, snap: PageSnapshot, now: float) -> Result:
    return _say(model, SessionState.OFFLINE, None, "the computer is not connected to the internet")


def _network_blocked(model: Model, snap: PageSnapshot, now: float) -> Result:
    return _say(model, SessionState.OFFLINE, StateCode.NETWORK_BLOCKED,
                "WhatsApp is blocked on this network (proxy or firewall); try another network")


def _banned(model: Model, snap: PageSnapshot, now: float) -> Result:
    model, acts = _say(model, SessionState.LOGGED_OUT, StateCode.BANNED, BANNED_WORDS)
    if not acts:
        return model, []
    model = replace(model, parked=True)
    return model, [*acts, A.RecordMeta("banned", {}), A.Park()]


def _outdated(model: Model, snap: PageSnapshot, now: float) -> Result:
    """DEPRECATED_VERSION: the WhatsApp build in the page is old; a reload cures it (with back-off)."""
    model, acts = _say(model, SessionState.STARTING, StateCode.OUTDATED_BUILD,
                       "the WhatsApp page is out of date; reloading it")
    if model.next_reload_at is not None and now < model.next_reload_at:
        return model, acts
    delay = RELOAD_BACKOFF_SECONDS[min(model.reloads + 1, len(RELOAD_BACKOFF_SECONDS) - 1)]
    model = replace(model, reloads=model.reloads + 1, next_reload_at=now + delay)
    return model, [*acts, A.RecordMeta("outdated_reload", {"attempt": model.reloads}), A.Reload()]


def _unsupported(model: Model, snap: PageSnapshot, now: float) -> Result:
    return _say(model, SessionState.ERROR, StateCode.BROWSER,
                "WhatsApp Web says this browser is not supported; update Google Chrome or Chromium")


def _unsettled(model: Model, snap: PageSnapshot, now: float) -> Result:
    """LOADING, RESUMING or UNKNOWN: wait; reload only after the page timeout."""
    if model.unsettled_since is None:
        return replace(model, unsettled_since=now), []
    if now - model.unsettled_since <= model.config.page_timeout_seconds:
        return model, []
    what = {PageState.LOADING: "still loading", PageState.RESUMING: "still resuming"}.get(
        snap.state, "unknown page (no marker matched)")
    model = replace(model, unsettled_since=now)
    model, said = _say(model, SessionState.ERROR, None, f"WhatsApp Web did not finish loading ({what}); reloading")
    return model, [*said, A.RecordMeta("error", {"reason": what}), A.Reload()]


_HANDLERS = {
    PageState.CONNECTED: _connected,
    PageState.QR: _qr,
    PageState.QR_IDLE: _qr,
    PageState.PASSKEY: _passkey,
    PageState.PAIRING_CODE: _pairing_code,
    PageState.CONFLICT: _conflict,
    PageState.OFFLINE: _offline,
    PageState.NETWORK_BLOCKED: _network_blocked,
    PageState.BANNED: _banned,
    PageState.OUTDATED: _outdated,
    PageState.UNSUPPORTED: _unsupported,
}


# ---------------------------------------------------------------------------------- results

def report(model: Model, state: SessionState, code: StateCode | None = None, reason: str | None = None) -> Result:
    """A state the service met itself (a failed step, a failed relaunch)."""
    return _say(model, state, code, reason)


def backup_done(model: Model, reason: str, ok: bool, now: float) -> Result:
    """A ``Backup`` finished. A failure (a full disk…) is retried later with back-off."""
    if ok:
        model = replace(model, backup_failures=0)
        if reason == "link":
            model = replace(model, link_backup_due=False)
        if reason in ("link", "auto"):
            model = replace(model, next_backup_at=now + model.config.backup_interval_seconds)
        return model, []
    failures = model.backup_failures + 1
    retry = now + BACKUP_RETRY_SECONDS[min(failures - 1, len(BACKUP_RETRY_SECONDS) - 1)]
    model = replace(model, backup_failures=failures)
    if reason == "link":
        return replace(model, link_backup_at=retry), []
    if reason == "auto":
        return replace(model, next_backup_at=min(retry, now + model.config.backup_interval_seconds)), []
    return model, []


def show_done(model: Model, shown: bool) -> Result:
    """``ShowWindow`` could not bring a window on screen (headless): say what the ways out are."""
    if shown:
        return model, []
    model = replace(model, hidden_window=False, window_shown=False)
    return _say(model, SessionState.NEEDS_LINK, StateCode.PASSKEY_NEEDS_DISPLAY, NO_DISPLAY_WORDS,
                step="passkey", details=dict(model.details))


def pairing_done(model: Model, code: str | None, error: str | None = None) -> Result:
    """A pairing code came back (``EmitPairingCode``), or the page refused: fall back to the QR."""
    if code is not None:
        return replace(model, pairing_requested=True, pairing_code=code), [A.EmitPairingCode(code)]
    model = replace(model, pairing_requested=False, pairing_phone=None)
    return model, [A.Notify(NoticeKind.LINK, f"No pairing code: {error or 'WhatsApp did not give one'}; "
                                             "scan the QR code instead")]


def browser_gone(model: Model, delay: float) -> Result:
    """The browser crashed or was closed: report it; the service relaunches after ``delay``."""
    model, said = _say(model, SessionState.BROWSER_CRASHED, StateCode.BROWSER,
                       f"the browser stopped; restarting in {delay:g} s")
    return replace(model, page_connected=False, synced=False), [*said, A.RecordMeta("browser_crashed",
                                                                                     {"restart_in": delay})]


# ---------------------------------------------------------------------------------- owner's commands

def owner_restoring(model: Model, backup_id: str) -> Result:
    """The owner asked to restore ``backup_id`` (the service closes the browser and restores it)."""
    return _say(model, SessionState.RESTORING, None, f"restoring backup {backup_id} on request")


def owner_restored(model: Model, backup_id: str) -> Result:
    """The owner's restore is in place: it is the session now; relaunch headless."""
    model = replace(model, expect_session=True, damaged=False, count_resume=True, restores=(),
                    restored_from=backup_id, pending_logout=None)
    return _launch(model, hidden=False)


def relinking(model: Model) -> Result:
    """The owner asked to link again: the old session is archived; show a fresh QR."""
    model = _fresh_link(replace(model, was_connected=False, link_backup_due=False), StateCode.RELINK, None)
    model, said = _say(model, SessionState.STARTING, StateCode.RELINK, "re-linking")
    model, launch = _launch(model, hidden=_for_link(model))
    return model, [*said, *launch]


def imported(model: Model) -> Result:
    """A session folder was imported as the live profile: it is expected to come up connected."""
    model = replace(model, expect_session=True, damaged=False, count_resume=False, restores=(),
                    restored_from=None, pending_logout=None, link_backup_due=True, link_backup_at=None)
    model, said = _say(model, SessionState.STARTING, None, "imported session")
    model, launch = _launch(model, hidden=False)
    return model, [*said, *launch]
