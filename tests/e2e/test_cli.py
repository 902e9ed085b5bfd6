"""The one-shot commands as a user types them: real processes, real files, real keyring."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.e2e.harness import AppProcess, cli

NO_KEYRING = {"DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent/bus", "LINDA_BACKUP_PASSPHRASE": ""}


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    for args in (["no-such-command"], ["restore", "a", "b"], ["autostart", "sideways"]):
        out = cli(tmp_path, *args)
        assert out.returncode == 2, args
        assert "usage:" in out.stderr


def test_version_and_help(tmp_path: Path) -> None:
    out = cli(tmp_path, "--version")
    assert out.returncode == 0 and out.stdout.startswith("linda-desktop ")
    assert "run" in cli(tmp_path, "--help").stdout


def test_status_on_a_fresh_folder(tmp_path: Path) -> None:
    out = cli(tmp_path / "data", "status", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["running"] is False and data["linked"] is False and data["backups"] == []
    assert data["data_dir"] == str((tmp_path / "data").resolve())
    assert data["log_file"].startswith(str((tmp_path / "data" / "logs").resolve()))
    assert data["keyring"]["ok"] is True
    assert os.stat(tmp_path / "data").st_mode & 0o077 == 0, "the data folder is private"


def test_failures_are_one_line_with_exit_1(tmp_path: Path) -> None:
    for args in (["restore", "20990101T000000Z-ffff"], ["backup"], ["import", str(tmp_path / "missing")]):
        out = cli(tmp_path / "data", *args)
        assert out.returncode == 1, (args, out.stdout, out.stderr)
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("linda-desktop: "), out.stderr
        assert "Traceback" not in out.stderr


def test_browser_missing_is_a_clear_error(tmp_path: Path) -> None:
    out = cli(tmp_path / "data", "doctor", "--json")
    checks = {c["name"]: c for c in json.loads(out.stdout)}
    assert checks["browser"]["ok"] is True
    missing = tmp_path / "no-browser"
    run = AppProcess(tmp_path / "data2", "http://127.0.0.1:9/", env={"LINDA_BROWSER": ""})
    run.cmd[run.cmd.index("--browser") + 1] = str(missing)
    run.start()
    try:
        assert run.proc.wait(60) == 1
        assert any(e.get("state") == "error" and str(missing) in e.get("reason", "") for e in run.events)
        assert run.stderr_lines and run.stderr_lines[-1].startswith("linda-desktop: ")
    finally:
        run.close()


@pytest.mark.browser
def test_backups_restore_relink_on_files(linked: AppProcess, data_dir: Path, sim) -> None:
    assert linked.terminate() == 0
    listing = json.loads(cli(data_dir, "backups", "--json").stdout)
    assert len(listing) == 2 and listing[0]["reason"] == "exit"
    assert any(b["known_good"] for b in listing)
    human = cli(data_dir, "backups").stdout
    assert "(last known good)" in human

    out = cli(data_dir, "backup", wa_url=sim.url)
    assert out.returncode == 0, out.stderr
    assert "saved" in out.stdout

    target = listing[-1]["id"]
    out = cli(data_dir, "restore", target, wa_url=sim.url)
    assert out.returncode == 0, out.stderr
    assert json.loads(cli(data_dir, "status", "--json").stdout)["history"][-1]["event"] == "backup_restore"

    out = cli(data_dir, "relink", wa_url=sim.url)
    assert out.returncode == 0, out.stderr
    assert not (data_dir / "profile").exists()
    assert any((data_dir / "quarantine").iterdir())
    assert len(json.loads(cli(data_dir, "backups", "--json").stdout)) == 3, "relink keeps backups"
    app = AppProcess(data_dir, sim.url).start()
    try:
        app.wait_state("needs_link", 60)
        assert app.of("restore") == [], "after a relink no backup is restored behind the owner's back"
    finally:
        app.close()


@pytest.mark.browser
def test_relink_through_running_app(linked: AppProcess, data_dir: Path, sim) -> None:
    mark = len(linked.events)
    out = cli(data_dir, "relink", wa_url=sim.url)
    assert out.returncode == 0, out.stderr
    linked.wait_state("needs_link", 60, after=mark)
    linked.wait_for(lambda e: e.get("event") == "qr", 30, after=mark)


@pytest.mark.browser
def test_no_keyring_runs_the_session_and_says_backups_are_off(tmp_path: Path, sim, apps) -> None:
    data_dir = tmp_path / "data"
    app = AppProcess(data_dir, sim.url, env=NO_KEYRING).start()
    apps.append(app)
    notice = app.wait_for(lambda e: e.get("event") == "notice", 60)
    assert notice["kind"] == "keyring_unavailable" and "keyring" in notice["message"].lower()
    app.wait_for(lambda e: e.get("event") == "qr", 60)
    sim.link()
    app.wait_state("connected", 30)
    status = json.loads(cli(data_dir, "status", "--json", env=NO_KEYRING).stdout)
    assert status["keyring"]["ok"] is False
    out = cli(data_dir, "backup", env=NO_KEYRING)
    assert out.returncode == 1 and "keyring" in out.stderr.lower()
    assert not list((data_dir / "backups").glob("*.linda*")), "never a plaintext or keyless backup"
    assert app.terminate() == 0


@pytest.mark.browser
def test_passphrase_mode_when_there_is_no_keyring(tmp_path: Path, sim, apps) -> None:
    data_dir = tmp_path / "data"
    env = {**NO_KEYRING, "LINDA_BACKUP_PASSPHRASE": "correct horse battery staple"}
    out = cli(data_dir, "set-passphrase", env=env)
    assert out.returncode == 0, out.stderr
    app = AppProcess(data_dir, sim.url, env=env).start()
    apps.append(app)
    app.wait_for(lambda e: e.get("event") == "qr", 60)
    sim.link()
    app.wait_for(lambda e: e.get("event") == "backup", 60)
    assert app.terminate() == 0
    wrong = {**env, "LINDA_BACKUP_PASSPHRASE": "wrong"}
    out = cli(data_dir, "restore", env=wrong)
    assert out.returncode == 1 and "passphrase" in out.stderr.lower(), out.stderr
    assert cli(data_dir, "restore", env=env).returncode == 0


@pytest.mark.browser
def test_import_a_localauth_folder(linked: AppProcess, data_dir: Path, sim, tmp_path: Path) -> None:
    """A whatsapp-web.js LocalAuth folder made from a linked profile comes up connected."""
    assert linked.terminate() == 0
    auth = tmp_path / "bot" / ".wwebjs_auth"
    shutil.copytree(data_dir / "profile", auth / "session-mybot")
    target = tmp_path / "fresh"
    out = cli(target, "import", str(tmp_path / "bot" / ".wwebjs_auth"), wa_url=sim.url)
    assert out.returncode == 0, out.stderr
    app = AppProcess(target, sim.url).start()
    try:
        app.wait_state("connected", 60)
        assert app.of("qr") == []
    finally:
        app.close()
