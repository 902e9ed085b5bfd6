"""Where files go, who may read them, and what never reaches the log."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from linda_desktop.base.logs import clear_logs, redact, setup_logging
from linda_desktop.base.paths import resolve_paths


def test_data_dir_overrides_every_location(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("LINDA_DATA_DIR", raising=False)
    paths = resolve_paths(tmp_path / "d")
    for location in (paths.profile, paths.backups, paths.logs, paths.state, paths.lock_file, paths.log_file,
                     paths.settings_file, paths.state_file, paths.quarantine, paths.work):
        assert (tmp_path / "d") in location.parents
    monkeypatch.setenv("LINDA_DATA_DIR", str(tmp_path / "e"))
    assert resolve_paths().data == (tmp_path / "e").resolve()


def test_os_locations_do_not_depend_on_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("LINDA_DATA_DIR", raising=False)
    first = resolve_paths()
    monkeypatch.chdir(tmp_path)
    assert resolve_paths() == first
    assert first.data.is_absolute() and "LindaDesktop" in str(first.data)


def test_nothing_is_created_until_used(tmp_path: Path) -> None:
    resolve_paths(tmp_path / "d")
    assert not (tmp_path / "d").exists()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_folders_are_private_from_the_root_down(tmp_path: Path) -> None:
    os.umask(0o022)
    paths = resolve_paths(tmp_path / "d")
    paths.ensure(paths.logs)
    for folder in (paths.data, paths.logs):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


@pytest.fixture
def restore_logging():
    before = list(logging.getLogger().handlers)
    yield
    for handler in list(logging.getLogger().handlers):
        if handler not in before:
            logging.getLogger().removeHandler(handler)
            handler.close()


def test_log_file_never_holds_qr_payloads_or_keys(tmp_path: Path, restore_logging) -> None:
    paths = resolve_paths(tmp_path / "d")
    setup_logging(paths, stderr=False)
    payload = "2@AbCdEfGhIjKlMnOp,QrStUvWx0123456789+/=,YzAbCdEf==,GhIjKlMn==,WEB"
    key = "q" * 44
    logging.getLogger("test").info("showing %s with key %s", payload, key)
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = paths.log_file.read_text()
    assert payload not in text and key not in text and "<qr payload>" in text
    assert stat.S_IMODE(paths.log_file.stat().st_mode) == 0o600
    assert clear_logs(paths) >= 1 and paths.log_file.read_text() == ""


def test_redact_leaves_ordinary_lines_alone() -> None:
    line = "backup 20261127T081530Z-3f2a (link): 3397 bytes in 0.05 s"
    assert redact(line) == line


# -- issue 12 item 10: paths stay readable; keys, QR payloads and tokens never reach the log -------

def test_paths_stay_readable_in_the_log(tmp_path: Path, restore_logging) -> None:
    paths = resolve_paths(tmp_path / "d")
    setup_logging(paths, stderr=False)
    archived = "/tmp/pytest-of-root/pytest-12/test_faults_readonly0/data/quarantine/20261127T101010Z-dead-session"
    profile = str(tmp_path / "d" / "profile" / "Default" / "IndexedDB")
    logging.getLogger("test").info("archived the dead session to %s (profile %s)", archived, profile)
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = paths.log_file.read_text()
    assert archived in text and profile in text and "<redacted>" not in text


def test_secrets_are_redacted_also_inside_paths() -> None:
    import base64
    import secrets

    from linda_desktop.api.token import TOKEN_BYTES

    for _ in range(200):  # random material: every draw must be caught
        token = secrets.token_urlsafe(TOKEN_BYTES)  # the bot API token (43 characters)
        key = base64.b64encode(secrets.token_bytes(32)).decode()  # the backup key as stored
        line = redact(f"token {token} key {key} in /srv/linda/{token}/x")
        assert token not in line and key not in line, line
        assert "/srv/linda/" in line and line.endswith("/x")


def test_qr_payload_with_slashes_is_redacted() -> None:
    payload = "2@AbC/dEf+GhI/jKl=MnOp,QrSt/UvWx0123456789+/=,YzAb/CdEf==,GhIj/KlMn=="
    assert redact(f"qr {payload} shown") == "qr <qr payload> shown"


def test_unwritable_log_file_falls_back_to_stderr(tmp_path: Path, restore_logging, capfd) -> None:
    paths = resolve_paths(tmp_path / "d")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "logs").write_text("a file where the log folder should be")
    assert setup_logging(paths, stderr=True) is None
    logging.getLogger("test").warning("disk trouble at %s", tmp_path)
    logging.getLogger("test").info("quiet detail")
    err = capfd.readouterr().err
    assert f"disk trouble at {tmp_path}" in err and "quiet detail" not in err
    assert "Logging error" not in err and "Traceback" not in err


def test_log_file_failing_mid_run_falls_back_then_recovers(tmp_path: Path, restore_logging, capfd) -> None:
    from linda_desktop.base import logs

    paths = resolve_paths(tmp_path / "d")
    assert setup_logging(paths, stderr=True) == paths.log_file
    logging.getLogger("test").warning("first")
    # The log folder vanishes and a file takes its place: every reopen fails with a real OSError.
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, logs.FallbackFileHandler))
    handler.close()
    for p in paths.logs.iterdir():
        p.unlink()
    paths.logs.rmdir()
    paths.logs.write_text("blocker")
    logging.getLogger("test").warning("second")
    logging.getLogger("test").warning("third")
    err = capfd.readouterr().err
    assert "cannot be written" in err and "second" in err and "third" in err
    assert "Logging error" not in err and "Traceback" not in err
    paths.logs.unlink()
    paths.ensure(paths.logs)
    handler.failed_at = handler.failed_at - logs.RETRY_SECONDS  # the retry is due (time, not a mock)
    logging.getLogger("test").warning("fourth")
    handler.flush()
    assert "fourth" in paths.log_file.read_text() and "fourth" not in capfd.readouterr().err
