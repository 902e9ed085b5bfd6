"""`linda-desktop api …` (DESIGN §3) as a real subprocess; `python -m linda_desktop.api` is the same."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "linda_desktop", *args], capture_output=True, text=True, timeout=60)


def test_api_commands_edit_settings_and_print_the_document(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    out = cli("--data-dir", data, "api", "set-webhook", "http://127.0.0.1:3000/hook", "--format", "waha")
    assert out.returncode == 0, out.stderr
    settings = json.loads((tmp_path / "data" / "settings.json").read_text())
    assert settings["webhook_url"] == "http://127.0.0.1:3000/hook" and settings["webhook_format"] == "waha"
    assert cli("--data-dir", data, "api", "enable").returncode == 0
    assert json.loads((tmp_path / "data" / "settings.json").read_text())["api_enabled"] is True
    assert cli("api", "disable", "--data-dir", data).returncode == 0
    assert json.loads((tmp_path / "data" / "settings.json").read_text())["api_enabled"] is False
    refused = cli("--data-dir", data, "api", "set-webhook", "http://example.com/hook")
    assert refused.returncode == 1 and "not on this computer" in refused.stderr
    doc = json.loads(cli("api", "openapi").stdout)
    assert "/v1/messages" in doc["paths"] and "api_key" in doc["components"]["securitySchemes"]
    helped = cli("api", "--help")
    assert helped.returncode == 0 and "update-bridge" in helped.stdout
    alias = subprocess.run([sys.executable, "-m", "linda_desktop.api", "--help"], capture_output=True, text=True,
                           timeout=60)
    assert alias.returncode == 0 and "update-bridge" in alias.stdout
    assert cli("status", "--bogus").returncode == 2  # other commands still refuse unknown options
