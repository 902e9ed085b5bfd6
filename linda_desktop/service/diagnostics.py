"""What `status`, `doctor` and the tray's Diagnostics say. Qt-free; reads files, changes nothing."""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from typing import Any

from linda_desktop import __version__
from linda_desktop.base.errors import LindaError
from linda_desktop.base.paths import AppPaths


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False  # ok but worth attention

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _keyring_info(paths: AppPaths, key_error: LindaError | None = None) -> dict[str, Any]:
    from linda_desktop.session.keystore import KeyStore

    keystore = KeyStore(paths.passphrase_file)
    info: dict[str, Any] = {"backend": keystore.backend_name(), "ok": True, "error": None, "fix": None}
    try:
        keystore.check()
    except LindaError as exc:
        key_error = key_error or exc
    if key_error is not None:
        info.update(ok=False, error=key_error.message, fix=key_error.fix)
    return info


def _browser_info(browser: str | None, paths: AppPaths) -> dict[str, Any]:
    from linda_desktop.browser.discovery import browser_version, find_browser

    try:
        found = find_browser(browser, extra_playwright_dirs=[paths.browsers])
    except LindaError as exc:
        return {"found": False, "path": None, "version": None, "error": str(exc)}
    return {"found": True, "path": str(found.path), "kind": found.kind, "source": found.source,
            "version": browser_version(str(found.path)), "error": None}


def _autostart_info(data_dir: str | None) -> dict[str, Any]:
    from linda_desktop.system.autostart import autostart_for_platform

    try:
        strategy = autostart_for_platform(data_dir=data_dir)
        return {"enabled": strategy.is_enabled(), "where": strategy.describe()}
    except Exception as exc:  # noqa: BLE001 - an unsupported desktop must not break `status`
        return {"enabled": False, "where": None, "error": str(exc)}


def _backups_info(paths: AppPaths, backup_store: Any = None) -> list[dict[str, Any]]:
    from linda_desktop.session.backup import list_backups_checked

    try:  # with the app stopped, key_matches is checked against the key when it can be had
        items = backup_store.list() if backup_store is not None else list_backups_checked(
            paths.backups, paths.passphrase_file)
    except LindaError:
        return []
    return [b.to_json() for b in items]


def data_dir_override(paths: AppPaths) -> str | None:
    """The --data-dir in force (autostart entries must carry it), or None for the OS folders."""
    return str(paths.data) if paths.logs == paths.data / "logs" else None


def collect_status(paths: AppPaths, *, wa_url: str, browser: str | None, running: bool,
                   backup_store: Any = None, key_error: LindaError | None = None) -> dict[str, Any]:
    """Everything `status --json` reports. Works with or without a running app."""
    from linda_desktop.session.profile import validate_profile
    from linda_desktop.session.state import SessionStateStore

    meta = SessionStateStore(paths.state_file).snapshot()
    report = validate_profile(paths.profile, wa_url)
    backups = _backups_info(paths, backup_store)
    return {
        "version": __version__,
        "running": running,
        "state": None,
        "linked": bool(meta.get("linked")),
        "account": meta.get("account"),
        "restore_count": meta.get("restore_count", 0),
        "last_restore": meta.get("last_restore"),
        "last_backup": meta.get("last_backup"),
        "last_link": meta.get("last_link"),
        "last_connected": meta.get("last_connected"),
        "profile": report.to_json(),
        "backups": backups,
        "known_good": next((b["id"] for b in backups if b.get("known_good")), None),
        "keyring": _keyring_info(paths, key_error),
        "autostart": _autostart_info(data_dir_override(paths)),
        "browser": _browser_info(browser, paths),
        "wa_url": wa_url,
        "data_dir": str(paths.data),
        "log_file": str(paths.log_file),
        "history": meta.get("history", [])[-10:],
    }


def _when(value: Any) -> str:
    if not value:
        return "never"
    if isinstance(value, dict):
        stamp = value.get("at") or value.get("ts") or ""
        extra = value.get("id") or value.get("from") or value.get("source") or ""
        return f"{stamp} ({extra})" if extra else str(stamp)
    return str(value)


def account_words(account: Any) -> str:
    """The account as people read it: the phone number when known, else the id."""
    if isinstance(account, dict):
        return str(account.get("phone") or account.get("id") or "")
    return str(account or "")


def format_status(data: dict[str, Any]) -> str:
    state = data.get("state") or ("not running" if not data.get("running") else "unknown")
    profile = "ok" if data["profile"].get("ok") else "; ".join(data["profile"].get("problems") or ["missing"])
    keyring = data["keyring"]
    keyring_problem = "" if keyring["ok"] else f" — {keyring['error']} ({keyring['fix']})"
    lines = [
        f"Linda Desktop {data['version']} — {'running' if data.get('running') else 'not running'}",
        f"  Session:       {state}{' — ' + data['reason'] if data.get('reason') else ''}",
        f"  Linked:        {'yes' if data.get('linked') else 'no'}"
        f"{' (' + account_words(data.get('account')) + ')' if data.get('account') else ''}",
        f"  Profile:       {profile}",
        f"  Restores:      {data.get('restore_count', 0)} (last: {_when(data.get('last_restore'))})",
        f"  Last backup:   {_when(data.get('last_backup'))}",
        f"  Last link:     {_when(data.get('last_link'))}",
        f"  Backups:       {len(data.get('backups', []))}"
        f"{' (last known good: ' + data['known_good'] + ')' if data.get('known_good') else ''}",
        f"  Keyring:       {keyring['backend']}{keyring_problem}",
        f"  Autostart:     {'on' if data['autostart'].get('enabled') else 'off'}",
        f"  Browser:       {data['browser']['path'] or data['browser']['error']}",
        f"  Data folder:   {data['data_dir']}",
        f"  Log file:      {data['log_file']}",
    ]
    return "\n".join(lines)


def doctor_checks(paths: AppPaths, *, wa_url: str, browser: str | None) -> list[Check]:
    """Each part the app needs, checked, with the fix for each failure."""
    checks: list[Check] = []
    info = _browser_info(browser, paths)
    found = f"{info['path']} ({info.get('version') or 'version unknown'})"
    checks.append(Check("browser", info["found"], found if info["found"] else info["error"],
                        "" if info["found"] else "install Google Chrome or Microsoft Edge, "
                        "or run `playwright install chromium`, or pass --browser PATH"))
    key = _keyring_info(paths)
    checks.append(Check("keyring", key["ok"], key["backend"] if key["ok"] else f"{key['error']} ({key['backend']})",
                        "" if key["ok"] else key["fix"] or "install and unlock a keyring, or set a backup passphrase"))
    checks.append(_data_dir_check(paths))
    checks.append(_settings_check(paths))
    checks.append(_disk_check(paths))
    checks.append(_profile_check(paths, wa_url))
    checks.append(_tray_check())
    return checks


def _data_dir_check(paths: AppPaths) -> Check:
    """Every folder the app writes (data, logs, state) exists, takes a file, and is private."""
    from linda_desktop.base.errors import StorageError

    for folder in dict.fromkeys((paths.data, paths.logs, paths.state)):
        try:
            paths.ensure(folder)
            probe = folder / ".write-test"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            error = StorageError.from_os_error(exc, "writing to the data folder")
            return Check("data folder", False, f"{folder}: {exc.strerror or exc} (the log goes to stderr instead)",
                         error.fix or "make the folder writable by you, or choose another with --data-dir")
    mode = oct(paths.data.stat().st_mode & 0o777) if os.name == "posix" else "n/a"
    private = os.name != "posix" or (paths.data.stat().st_mode & 0o077) == 0
    return Check("data folder", private, f"{paths.data} (mode {mode})",
                 "" if private else f"run: chmod 700 '{paths.data}'")


def _settings_check(paths: AppPaths) -> Check:
    """settings.json: each bad key named with what it should hold. Reads only (the app sets a broken file aside)."""
    import json

    from linda_desktop.base.settings import Settings

    try:
        raw = json.loads(paths.settings_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Check("settings", True, "defaults (no settings.json)")
    except (OSError, ValueError) as exc:
        return Check("settings", True, f"{paths.settings_file} is unreadable ({exc}); the defaults are used",
                     "fix the file, or delete it to use the defaults", warning=True)
    if not isinstance(raw, dict):
        return Check("settings", True, f"{paths.settings_file} is not a JSON object; the defaults are used",
                     "fix the file, or delete it to use the defaults", warning=True)
    problems = Settings.from_dict(raw).problems
    if not problems:
        return Check("settings", True, str(paths.settings_file))
    return Check("settings", True, "; ".join(p.message for p in problems),
                 "; ".join(p.fix for p in problems), warning=True)


def _disk_check(paths: AppPaths) -> Check:
    folder = next((p for p in (paths.data, *paths.data.parents) if p.exists()), paths.data)
    try:
        usage = shutil.disk_usage(folder)
    except OSError as exc:
        return Check("disk space", True, f"unknown ({exc.strerror or exc})", warning=True)
    free_mb = usage.free // (1024 * 1024)
    ok = free_mb >= 500
    return Check("disk space", ok, f"{free_mb} MB free", "" if ok else "free some disk space (backups need room)",
                 warning=not ok)


def _profile_check(paths: AppPaths, wa_url: str) -> Check:
    from linda_desktop.session.profile import validate_profile

    report = validate_profile(paths.profile, wa_url)
    if report.ok:
        return Check("session", True, "the live profile holds a WhatsApp session")
    if not report.has_session:
        return Check("session", True, "not linked yet", warning=True)
    return Check("session", False, "; ".join(report.problems),
                 "start Linda Desktop: it restores the newest backup, or run `linda-desktop restore`")


def _tray_check() -> Check:
    """Whether a system tray exists. Asks Qt in a child process so `doctor` never needs a display."""
    import subprocess
    import sys

    code = ("import sys\nfrom PySide6.QtWidgets import QApplication, QSystemTrayIcon\n"
            "app = QApplication(sys.argv[:1])\nprint('yes' if QSystemTrayIcon.isSystemTrayAvailable() else 'no')\n")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("tray", False, f"could not ask Qt: {exc}", "run `linda-desktop run` without a tray", warning=True)
    answer = out.stdout.strip().splitlines()[-1:] or [""]
    if answer[0] == "yes":
        return Check("tray", True, "a system tray is available")
    return Check("tray", True, "no system tray on this desktop: Linda Desktop shows a small status window instead",
                 "on GNOME install the 'AppIndicator and KStatusNotifierItem Support' extension", warning=True)


def format_doctor(checks: list[Check]) -> str:
    lines = []
    for check in checks:
        mark = "OK  " if check.ok and not check.warning else ("WARN" if check.ok else "FAIL")
        lines.append(f"[{mark}] {check.name}: {check.detail}")
        if check.fix and (not check.ok or check.warning):
            lines.append(f"       fix: {check.fix}")
    return "\n".join(lines)


def report(paths: AppPaths, *, wa_url: str, browser: str | None, status: dict[str, Any] | None = None) -> str:
    """The text the tray's Diagnostics window shows (and copies)."""
    data = status or collect_status(paths, wa_url=wa_url, browser=browser, running=False)
    return format_status(data) + "\n\nChecks:\n" + format_doctor(doctor_checks(paths, wa_url=wa_url, browser=browser))
