"""The API token in the real Secret Service (tests/run.sh starts one), and without a keyring."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from linda_desktop.api.token import USERNAME, load_token, reset_token, token_matches

pytestmark = pytest.mark.keyring


def test_token_is_created_once_kept_in_the_keyring_and_reset() -> None:
    import keyring

    first = load_token(create=True)
    assert first and len(first) >= 43  # 32 random bytes, URL-safe base64
    assert load_token() == first
    assert keyring.get_password("linda-desktop", USERNAME) == first
    second = reset_token()
    try:
        assert second != first and load_token() == second
    finally:
        keyring.set_password("linda-desktop", USERNAME, first)  # other tests hold the first one


def test_token_comparison() -> None:
    assert token_matches("abc", "Bearer abc")
    assert token_matches("abc", "bearer  abc ")
    assert not token_matches("abc", "Bearer abd")
    assert not token_matches("abc", "Bearer ab")
    assert not token_matches("abc", "Basic abc")
    assert not token_matches("abc", None)
    assert not token_matches("abc", "")
    assert not token_matches("abc", "Bearer é")


def test_no_keyring_means_no_token_and_a_clear_reason(tmp_path) -> None:
    code = ("from linda_desktop.api.token import load_token\n"
            "from linda_desktop.base.errors import KeyringUnavailable\n"
            "try:\n    load_token()\nexcept KeyringUnavailable as e:\n    print('REFUSED', e)\n")
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.startswith("REFUSED No usable system keyring"), out.stderr


def test_cli_prints_the_same_token() -> None:
    out = subprocess.run([sys.executable, "-m", "linda_desktop.api", "token"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == load_token()
