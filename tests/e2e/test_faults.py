"""Fault injection (issue 12): every item the hostile probe broke, reproduced for real.

Real faults only: a 3 MiB tmpfs that fills up, a read-only bind mount, SIGTERM to the process
group with ``os.killpg``, settings files with wrong types, a changed key in the real Secret
Service, a keyring that is not there. The shared fixture in conftest.py fails any test whose app
wrote a traceback, "Future exception was never retrieved" or "Logging error" to stderr.
Where an item is another engineer's, the test follows the issue's words; see the xfail reasons.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.harness import (
    CHROMIUM,
    REPO,
    AppProcess,
    can_mount,
    cli,
    fill_disk,
    read_only,
    tmpfs,
    tree_digest,
    wait_until,
    write_settings,
)

NO_KEYRING = {"DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent/bus", "LINDA_BACKUP_PASSPHRASE": ""}
MOUNT_SKIP = can_mount()
needs_mount = pytest.mark.skipif(MOUNT_SKIP is not None, reason=str(MOUNT_SKIP))


BACKUP_SUFFIXES = (".lindaman", ".lindabak")  # a manifest (chunked format) or an archive (older format)


def _backups(data_dir: Path) -> dict[str, str]:
    """sha256 of every file of every backup (manifests, chunks, archives), by path."""
    return {k: v for k, v in tree_digest(data_dir / "backups").items() if not k.endswith((".lock", ".tmp"))}


def _ids(backups: dict[str, str]) -> list[str]:
    """Backup ids, oldest first (ids start with their UTC time)."""
    return sorted(Path(k).name.rsplit(".", 1)[0] for k in backups if k.endswith(BACKUP_SUFFIXES) and "/" not in k)


def _kept(before: dict[str, str], after: dict[str, str]) -> bool:
    """Every file of the older backups is still there, byte for byte."""
    return all(after.get(k) == v for k, v in before.items())


def _no_half_files(data_dir: Path) -> list[str]:
    """Temp files an interrupted atomic write would leave (there must be none)."""
    return [str(p) for p in data_dir.rglob("*.tmp") if "profile" not in p.parts]


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("linda-desktop:")]


def _link(app: AppProcess, sim) -> None:
    app.wait_state("needs_link", 60)
    app.wait_for(lambda e: e.get("event") == "qr", 30)
    sim.link()
    app.wait_state("connected", 30)


def _stopped_with_backups(linked: AppProcess, data_dir: Path) -> dict[str, str]:
    """Stop a linked app cleanly (link + exit backups on disk); returns the backups' digests."""
    assert linked.terminate() == 0
    assert wait_until(lambda: not linked.browser_pids(), 15)
    backups = _backups(data_dir)
    assert len(_ids(backups)) >= 2, backups
    return backups


# ------------------------------------------------------------------ 1. a full disk

@needs_mount
def test_1_full_disk_after_connected_gives_a_notice_keeps_running_and_recovers(tmp_path: Path, sim, apps) -> None:
    with tmpfs(tmp_path / "small", "3m") as disk:
        data = disk / "data"
        write_settings(data, flush_delay_seconds=6)
        app = AppProcess(data, sim.url).start()
        apps.append(app)
        _link(app, sim)
        connected_at = len(app.events)
        filler = fill_disk(disk)  # right after `connected`: the link backup meets a full disk
        notice = app.wait_for(lambda e: e.get("event") == "notice" and e.get("kind") in ("storage_full",
                              "backup_failed"), 60, after=connected_at)
        assert "full" in notice["message"].lower(), notice
        time.sleep(3)
        assert app.proc is not None and app.proc.poll() is None, "the app keeps running on a full disk"
        assert app.of("backup") == [], "no backup can be made on a full disk"
        assert _no_half_files(data) == []

        filler.unlink()  # space is back: the app retries by itself
        backup = app.wait_for(lambda e: e.get("event") == "backup", 120, after=connected_at)
        assert backup["reason"] in ("link", "auto", "retry"), backup
        state = json.loads((data / "state" / "session-state.json").read_text())
        events = [h["event"] for h in state["history"]]
        assert "backup_failed" in events, "the state written during the outage reached the disk later"
        assert _no_half_files(data) == []
        assert app.terminate() == 0


@needs_mount
def test_1_ctrl_c_on_a_full_disk_exits_zero_and_keeps_older_backups(tmp_path: Path, sim, apps) -> None:
    with tmpfs(tmp_path / "small", "3m") as disk:
        data = disk / "data"
        write_settings(data, flush_delay_seconds=2)
        app = AppProcess(data, sim.url).start()
        apps.append(app)
        _link(app, sim)
        app.wait_for(lambda e: e.get("event") == "backup" and e.get("reason") == "link", 60)
        older = _backups(data)
        fill_disk(disk)
        assert app.proc is not None
        app.proc.send_signal(signal.SIGINT)
        assert app.proc.wait(60) == 0
        assert _kept(older, _backups(data)), "older backups are byte-for-byte unchanged"
        assert _no_half_files(data) == []


# ------------------------------------------------------------------ 2. no backup after an early crash

def test_2_sigkill_right_after_the_first_connected_still_gets_a_backup(start_app, data_dir: Path, sim) -> None:
    first = start_app()
    _link(first, sim)
    first.wait_for(lambda e: e.get("event") == "state" and e.get("state") == "connected"
                   and e.get("code") != "syncing", 30)  # connected and synced (the first history sync is done)
    first.kill()  # within the flush delay of the first `connected`: no link backup yet
    assert first.of("backup") == []
    assert wait_until(lambda: not first.browser_pids(), 15)
    second = start_app()
    second.wait_state("connected", 60)
    second.wait_for(lambda e: e.get("event") == "backup", 40)
    assert _ids(_backups(data_dir))


# ------------------------------------------------------------------ 3. SIGTERM to the process group

def test_3_sigterm_to_the_group_closes_the_browser_and_exits_zero(linked: AppProcess, data_dir: Path) -> None:
    older = _backups(data_dir)
    assert linked.terminate_group(signal.SIGTERM) == 0
    assert wait_until(lambda: not linked.browser_pids(), 15)
    exits = [e for e in linked.of("backup") if e.get("reason") == "exit"]
    assert len(exits) == 1, linked.summary()
    assert _kept(older, _backups(data_dir)), "older backups unchanged"
    stderr = "\n".join(linked.stderr_lines)
    assert "Connection closed" not in stderr and "Target page, context or browser has been closed" not in stderr
    out = cli(data_dir, "verify", exits[0]["id"])
    assert out.returncode == 0, out.stderr


# ------------------------------------------------------------------ 4. a stop signal during start-up

@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGTERM-group"])
def test_4_stop_signal_during_start_up_exits_zero_quietly(start_app, how: str) -> None:
    app = start_app()
    time.sleep(1.0)
    sig = signal.SIGINT if how == "SIGINT" else signal.SIGTERM
    if how.endswith("group"):
        os.killpg(app.proc.pid, sig)
    else:
        app.proc.send_signal(sig)
    assert app.proc.wait(60) == 0, app.stderr_lines
    app.finish_reading()
    stderr = "\n".join(app.stderr_lines)
    assert _error_lines(stderr) == [], stderr
    assert "reinstall" not in stderr and "did not start" not in stderr
    assert wait_until(lambda: not app.browser_pids(), 15)


# ------------------------------------------------------------------ 5. a read-only data folder

@needs_mount
def test_5_read_only_data_folder_every_command_is_one_line(linked: AppProcess, data_dir: Path, sim,
                                                           tmp_path: Path) -> None:
    backups = _stopped_with_backups(linked, data_dir)
    profile = tree_digest(data_dir / "profile")
    source = tmp_path / "wwebjs"
    (source / "session").mkdir(parents=True)
    env = {"LINDA_BACKUP_PASSPHRASE": "a passphrase for the test"}
    with read_only(data_dir):
        assert subprocess.run(["touch", str(data_dir / "probe")], capture_output=True).returncode != 0
        for args in (["status"], ["status", "--json"], ["backups"], ["backup"], ["restore"], ["relink"],
                     ["import", str(source)], ["clear-logs"], ["autostart", "status"], ["set-passphrase"],
                     ["verify"], ["run", "--json"]):
            out = cli(data_dir, *args, wa_url=sim.url, env=env, timeout=120)
            assert "Traceback" not in out.stderr and "Logging error" not in out.stderr, (args, out.stderr)
            lines = [line for line in out.stderr.splitlines() if line.strip() and not line.startswith("[")]
            assert len(lines) <= 1, (args, out.stderr)
            if out.returncode != 0:
                assert out.returncode in (1,) and lines and lines[0].startswith("linda-desktop: "), (args, out)
        run = cli(data_dir, "run", wa_url=sim.url)
        assert run.returncode == 1 and "read-only" in run.stderr, run.stderr
        doctor = cli(data_dir, "doctor", "--json", wa_url=sim.url)
        assert "Traceback" not in doctor.stderr and len(_error_lines(doctor.stderr)) == 1, doctor.stderr
        checks = {c["name"]: c for c in json.loads(doctor.stdout)}
        folder = checks["data folder"]
        assert folder["ok"] is False and "read-only" in folder["detail"].lower() + folder["fix"].lower(), folder
        assert folder["fix"], "the data-folder check gives its fix"
        text = cli(data_dir, "doctor", wa_url=sim.url)
        assert "[FAIL] data folder" in text.stdout and "fix:" in text.stdout
    assert _backups(data_dir) == backups and tree_digest(data_dir / "profile") == profile, "nothing changed"


# ------------------------------------------------------------------ 6. settings with wrong types

@pytest.mark.parametrize("key, value", [("keep_backups", "five"), ("page_timeout_seconds", "x"),
                                        ("backup_interval_hours", "6")])
def test_6_wrong_type_in_settings_is_a_notice_and_the_default(start_app, data_dir: Path, sim, key: str,
                                                              value: object) -> None:
    write_settings(data_dir, **{key: value}, a_future_option={"kept": True})
    app = start_app()
    notice = app.wait_for(lambda e: e.get("event") == "notice" and e.get("kind") == "settings_invalid", 30)
    assert notice["key"] == key and key in notice["message"]
    app.wait_state("needs_link", 60)
    doctor = cli(data_dir, "doctor", wa_url=sim.url)
    assert key in doctor.stdout and "Traceback" not in doctor.stderr
    done = subprocess.run([sys.executable, "-m", "linda_desktop.api", "enable", "--data-dir", str(data_dir)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    saved = json.loads((data_dir / "settings.json").read_text())
    assert saved["a_future_option"] == {"kept": True} and saved["api_enabled"] is True
    assert saved[key] == value, "the owner's value stays for them to fix"
    assert app.terminate() == 0


def test_6_a_zero_backup_interval_is_bounded(start_app, data_dir: Path, sim) -> None:
    write_settings(data_dir, backup_interval_hours=0, flush_delay_seconds=1)
    app = start_app()
    notice = app.wait_for(lambda e: e.get("event") == "notice" and e.get("kind") == "settings_invalid", 30)
    assert notice["key"] == "backup_interval_hours"
    _link(app, sim)
    link = app.wait_for(lambda e: e.get("event") == "backup" and e.get("reason") == "link", 30)
    time.sleep(5)
    autos = [e for e in app.events[app.events.index(link):] if e.get("event") == "backup"
             and e.get("reason") == "auto"]
    assert autos == [], "no backup every half second"
    assert app.terminate() == 0


# ------------------------------------------------------------------ 7. a changed backup key

def test_7_changed_key_is_said_at_start_and_in_backups(linked: AppProcess, data_dir: Path, sim, start_app) -> None:
    import base64
    import secrets

    import keyring

    backups = _stopped_with_backups(linked, data_dir)
    old = keyring.get_password("linda-desktop", "backup-key")
    assert old
    keyring.set_password("linda-desktop", "backup-key", base64.b64encode(secrets.token_bytes(32)).decode())
    try:
        listed = json.loads(cli(data_dir, "backups", "--json").stdout)
        assert listed and all(b["key_matches"] is False for b in listed), listed
        app = start_app()
        notice = app.wait_for(lambda e: e.get("event") == "notice" and e.get("kind") == "other_key_backups", 60)
        assert str(len(listed)) in notice["message"] and "kept" in notice["message"]
        status = json.loads(cli(data_dir, "status", "--json").stdout)
        assert status["keyring"]["ok"] is False or any(b["key_matches"] is False for b in status["backups"])
        assert app.terminate() == 0
    finally:
        keyring.set_password("linda-desktop", "backup-key", old)
    assert _kept(backups, _backups(data_dir)), "kept byte-for-byte"


# ------------------------------------------------------------------ 8. `backups` while running without a keyring

def test_8_backups_while_running_without_a_keyring_lists_them(linked: AppProcess, data_dir: Path, sim,
                                                              apps) -> None:
    backups = _stopped_with_backups(linked, data_dir)
    ids = _ids(backups)
    app = AppProcess(data_dir, sim.url, env=NO_KEYRING).start()
    apps.append(app)
    app.wait_state("connected", 60)
    out = cli(data_dir, "backups")
    assert out.returncode == 0, out.stderr
    assert "No backups yet" not in out.stdout
    assert all(i in out.stdout for i in ids), out.stdout
    assert "key" in out.stdout.lower() and "open" in out.stdout.lower(), out.stdout
    assert app.terminate() == 0
    assert _kept(backups, _backups(data_dir))


# ------------------------------------------------------------------ 9. restore falls back; verify

def test_9_verify_and_restore_fall_back_past_a_damaged_newest(linked: AppProcess, data_dir: Path) -> None:
    before = _stopped_with_backups(linked, data_dir)
    ids = _ids(before)
    newest, previous = ids[-1], ids[-2]
    manifest = next(p for p in (data_dir / "backups").iterdir() if p.name.startswith(newest + "."))
    manifest.write_bytes(manifest.read_bytes()[: manifest.stat().st_size // 2])  # damaged (truncated)
    older = {k: v for k, v in before.items() if not k.startswith(newest + ".")}
    profile = tree_digest(data_dir / "profile")
    bad = cli(data_dir, "verify", newest)
    assert bad.returncode == 1 and len(_error_lines(bad.stderr)) == 1, bad.stderr
    good = cli(data_dir, "verify", previous)
    assert good.returncode == 0, good.stderr
    assert tree_digest(data_dir / "profile") == profile, "verify never touches the profile"
    restored = cli(data_dir, "restore")
    assert restored.returncode == 0, restored.stderr
    assert previous in restored.stdout, "it says which one"
    assert _kept(older, _backups(data_dir))


# ------------------------------------------------------------------ 10. redaction keeps paths readable

def test_10_log_keeps_paths_and_never_holds_qr_keys_or_message_text(linked: AppProcess, data_dir: Path,
                                                                    sim) -> None:
    import base64

    import keyring

    qrs = [e["data"] for e in linked.of("qr") if e.get("data")]
    assert qrs
    text = "a private message 7f3a9c that must never reach the log"
    sim.deliver("4915100000000", text)
    mark = len(linked.events)
    sim.revoke()  # the phone removes this computer: the dead session is archived
    linked.wait_state("needs_link", 60, after=mark)
    linked.wait_for(lambda e: e.get("event") == "qr", 30, after=mark)
    qrs += [e["data"] for e in linked.events[mark:] if e.get("event") == "qr" and e.get("data")]
    assert linked.terminate() == 0
    archived = next((data_dir / "quarantine").iterdir())
    log_text = (data_dir / "logs" / "linda-desktop.log").read_text()
    assert f"archived the dead session to {archived}" in log_text, "the archive's path stays readable"
    for qr in qrs:
        assert qr not in log_text and qr.split(",")[1] not in log_text
    key = keyring.get_password("linda-desktop", "backup-key")
    assert key and key not in log_text and base64.b64decode(key).hex() not in log_text
    assert text not in log_text and "7f3a9c" not in log_text


# ------------------------------------------------------------------ 11. the tray app with no display

@pytest.mark.parametrize("platform", [None, "xcb"])
def test_11_tray_without_a_display_is_one_line_before_qt_loads(tmp_path: Path, platform: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    if platform:
        env["QT_QPA_PLATFORM"] = platform
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "linda_desktop", "--data-dir",
                           str(tmp_path / "data"), "--browser", CHROMIUM], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    lines = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert len(lines) == 1 and "linda-desktop run" in lines[0], lines
    imported = [line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert not [m for m in imported if m.startswith(("PySide6", "shiboken"))], "Qt never loaded"
