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
