"""base/settings.py: typed, bounded settings (issue 12 item 6). Real files, no mocks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from linda_desktop.base.settings import SPECS, Settings


def _load(tmp_path: Path, raw: object) -> Settings:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(raw))
    return Settings.load(path)


def test_every_field_has_a_type_and_bounds() -> None:
    assert set(Settings.field_names()) == set(SPECS)
    for name, spec in SPECS.items():
        if spec.kind in ("int", "float"):
            assert spec.minimum is not None and spec.maximum is not None, name
        assert spec.check(getattr(Settings(), name)), f"the default of {name} is within its own bounds"


@pytest.mark.parametrize("raw, key", [
    ({"keep_backups": "five"}, "keep_backups"),
    ({"page_timeout_seconds": "x"}, "page_timeout_seconds"),
    ({"backup_interval_hours": "6"}, "backup_interval_hours"),
    ({"backup_interval_hours": 0}, "backup_interval_hours"),
    ({"backup_interval_hours": 0.1}, "backup_interval_hours"),
    ({"keep_backups": 0}, "keep_backups"),
    ({"keep_backups": 51}, "keep_backups"),
    ({"keep_backups": 2.5}, "keep_backups"),
    ({"keep_backups": True}, "keep_backups"),
    ({"take_over_on_conflict": "yes"}, "take_over_on_conflict"),
    ({"key_mode": "plaintext"}, "key_mode"),
    ({"api_port": 70000}, "api_port"),
    ({"api_host": ""}, "api_host"),
    ({"webhook_url": 5}, "webhook_url"),
    ({"flush_delay_seconds": -1}, "flush_delay_seconds"),
])
def test_a_bad_value_gets_the_default_and_names_the_key(tmp_path: Path, raw: dict, key: str) -> None:
    settings = _load(tmp_path, raw)
    assert getattr(settings, key) == getattr(Settings(), key)
    assert [p.key for p in settings.problems] == [key]
    problem = settings.problems[0]
    assert key in problem.message and json.dumps(raw[key]) in problem.message and key in problem.fix


def test_good_values_are_used_and_typed(tmp_path: Path) -> None:
    settings = _load(tmp_path, {"keep_backups": 7.0, "backup_interval_hours": 1, "webhook_url": None,
                                "take_over_on_conflict": False, "key_mode": "passphrase", "api_port": 9000})
    assert settings.problems == []
    assert settings.keep_backups == 7 and isinstance(settings.keep_backups, int)
    assert settings.backup_interval_hours == 1.0 and isinstance(settings.backup_interval_hours, float)
    assert settings.take_over_on_conflict is False and settings.key_mode == "passphrase"


def test_unknown_keys_and_the_owners_bad_values_are_kept_on_save(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"future_option": {"a": 1}, "keep_backups": "five", "api_port": 9001}))
    settings = Settings.load(path)
    settings.api_enabled = True
    settings.save(path)
    saved = json.loads(path.read_text())
    assert saved["future_option"] == {"a": 1}
    assert saved["keep_backups"] == "five", "the owner's value stays for them to fix"
    assert saved["api_enabled"] is True and saved["api_port"] == 9001
    again = Settings.load(path)
    assert again.api_enabled is True and again.extra == {"future_option": {"a": 1}}


def test_a_value_the_app_sets_replaces_a_bad_one(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"api_enabled": "on"}))
    settings = Settings.load(path)
    settings.api_enabled = True
    settings.save(path)
    assert json.loads(path.read_text())["api_enabled"] is True


def test_not_json_is_set_aside_and_defaults_used(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text("{keep_backups: 3")
    assert Settings.load(path) == Settings()
    assert not path.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith("settings.json.broken-")]


def test_missing_file_is_the_defaults(tmp_path: Path) -> None:
    assert Settings.load(tmp_path / "none.json") == Settings()
