"""KeyStore against the real Secret Service (tests/run.sh starts one), no keyring at all, a locked
keyring, and the opt-in passphrase mode."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any, ClassVar

import keyring
import pytest

from linda_desktop.base.errors import KeyringUnavailable, WrongKey
from linda_desktop.session.backup import BackupStore
from linda_desktop.session.crypto import key_id
from linda_desktop.session.keystore import NO_KEYRING, NO_KEYRING_FIX, KeyStore
from tests.helpers.fake_profile import make_fake_profile

REPO = Path(__file__).resolve().parents[2]


def secret_service_or_skip() -> None:
    name = type(keyring.get_keyring()).__module__
    if "SecretService" not in name and "chainer" not in name:
        pytest.skip(f"no Secret Service here (backend {name}): run the tests with bash tests/run.sh")


@pytest.fixture
def service() -> str:
    """A keyring entry of our own for this test, removed afterwards."""
    name = f"linda-test-{uuid.uuid4().hex[:8]}"
    yield name
    try:
        keyring.delete_password(name, "backup-key")
    except Exception:  # noqa: BLE001 - absent or no keyring: nothing to clean
        pass


def run_keystore(tmp_path: Path, code: str, **env: str) -> dict:
    """Run ``code`` in a fresh interpreter (own keyring choice); it sets ``result``; errors are
    reported as {"error": type, "message", "fix"}."""
    script = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        from linda_desktop.base.errors import LindaError
        from linda_desktop.session.keystore import KeyStore
        from linda_desktop.session.crypto import key_id
        store = KeyStore(Path(sys.argv[1]), service=sys.argv[2])
        try:
        {body}
        except LindaError as exc:
            result = {{"error": type(exc).__name__, "message": exc.message, "fix": exc.fix}}
        result["backend"] = store.backend_name()
        print(json.dumps(result))
        """
    ).format(body=textwrap.indent(textwrap.dedent(code), "    "))
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **env}
    full_env.pop("LINDA_BACKUP_PASSPHRASE", None) if "LINDA_BACKUP_PASSPHRASE" not in env else None
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "passphrase.json"), f"linda-test-{uuid.uuid4().hex[:8]}"],
        env=full_env, capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


NO_BUS = {"DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent/bus"}


# ---- the real Secret Service -------------------------------------------------------------------


@pytest.mark.keyring
def test_secret_service_key_is_created_once_and_persists(tmp_path: Path, service: str) -> None:
    secret_service_or_skip()
    store = KeyStore(tmp_path / "passphrase.json", service=service)
    store.check()
    assert "SecretService" in store.backend_name() and not store.passphrase_mode
    key = store.load_key()
    assert len(key) == 32
    assert KeyStore(tmp_path / "passphrase.json", service=service).load_key(create=False) == key
    assert base64.b64decode(keyring.get_password(service, "backup-key")) == key
    assert not (tmp_path / "passphrase.json").exists()  # nothing about the key on disk
    # Another process (same session keyring) gets the same key.
    code = f"""
        store = KeyStore(Path(sys.argv[1]), service={service!r})
        result = {{"key_id": key_id(store.load_key(create=False)).hex()}}
    """
    assert run_keystore(tmp_path, code)["key_id"] == key_id(key).hex()


@pytest.mark.keyring
def test_no_key_yet_and_create_false_is_wrong_key(tmp_path: Path, service: str) -> None:
    secret_service_or_skip()
    with pytest.raises(WrongKey, match="no backup key"):
        KeyStore(tmp_path / "p.json", service=service).load_key(create=False)
    assert keyring.get_password(service, "backup-key") is None


@pytest.mark.keyring
def test_damaged_key_is_refused_not_replaced(tmp_path: Path, service: str) -> None:
    secret_service_or_skip()
    keyring.set_password(service, "backup-key", "not-base64-of-32-bytes!")
    with pytest.raises(KeyringUnavailable, match="damaged"):
        KeyStore(tmp_path / "p.json", service=service).load_key()
    assert keyring.get_password(service, "backup-key") == "not-base64-of-32-bytes!"


@pytest.mark.keyring
def test_a_new_keyring_key_cannot_open_old_backups_and_they_are_kept(tmp_path: Path, service: str) -> None:
    secret_service_or_skip()
    profile = tmp_path / "profile"
    origin = make_fake_profile(profile, idb_mb=0.05, caches_mb=0.01)
    old = BackupStore(tmp_path / "backups", os.urandom(32)).create(profile, origin_url=origin)
    store = BackupStore(tmp_path / "backups", KeyStore(tmp_path / "p.json", service=service).load_key())
    with pytest.raises(WrongKey, match="different key") as err:
        store.verify(old.id)
    assert err.value.fix
    assert store.rotate() == [] and old.path.is_file()


# ---- no usable keyring -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env",
    [
        {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring", **NO_BUS},
        {"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"},
        NO_BUS,
    ],
    ids=["fail-backend", "null-backend", "no-dbus"],
)
def test_no_keyring_is_a_clear_error_never_plaintext(tmp_path: Path, env: dict) -> None:
    for code in ("store.check()\nresult = {}", "key = store.load_key()\nresult = {}"):
        result = run_keystore(tmp_path, code, **env)
        assert result["error"] == "KeyringUnavailable"
        assert result["message"] == NO_KEYRING and result["fix"] == NO_KEYRING_FIX
        assert "LINDA_BACKUP_PASSPHRASE" in result["fix"]
    assert not (tmp_path / "passphrase.json").exists()


def test_locked_keyring_is_keyring_unavailable(tmp_path: Path) -> None:
    """A Secret Service that is running but locked: unlocking needs a prompt nobody can answer."""
    if not (shutil.which("dbus-run-session") and shutil.which("gnome-keyring-daemon")):
        pytest.skip("dbus-run-session or gnome-keyring-daemon is not installed")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    script = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        from linda_desktop.base.errors import LindaError
        from linda_desktop.session.keystore import KeyStore
        try:
            KeyStore(Path(sys.argv[1])).load_key()
            print(json.dumps({"error": None}))
        except LindaError as exc:
            print(json.dumps({"error": type(exc).__name__, "fix": exc.fix}))
        """
    )
    shell = (
        "gnome-keyring-daemon --start --components=secrets >/dev/null 2>&1; "
        f'exec "{sys.executable}" -c "$SCRIPT" "{tmp_path / "p.json"}"'
    )
    env = {
        **{k: v for k, v in os.environ.items()
           if k not in ("DBUS_SESSION_BUS_ADDRESS", "LINDA_BACKUP_PASSPHRASE", "DISPLAY")},
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
        "PYTHONPATH": str(REPO),
        "SCRIPT": script,
    }
    proc = subprocess.run(
        ["dbus-run-session", "--", "bash", "-c", shell], env=env, capture_output=True, text=True, timeout=60, cwd=REPO
    )
    result = json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])
    assert result == {"error": "KeyringUnavailable", "fix": NO_KEYRING_FIX}


class _PlaintextFileKeyring(keyring.backend.KeyringBackend):
    """Stands in for keyrings.alt's plaintext backend (same module path), which must be refused."""

    stored: ClassVar[dict[tuple[str, str], str]] = {}

    @keyring.compat.properties.classproperty
    def priority(cls) -> float:
        # Not viable for keyring's own selection (defining a backend class registers it).
        raise RuntimeError("test stand-in, only used through set_keyring")

    def get_password(self, service: str, username: str) -> str | None:
        return self.stored.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.stored[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.stored.pop((service, username), None)


_PlaintextFileKeyring.__module__ = "keyrings.alt.file"


def test_plaintext_and_null_backends_are_refused(tmp_path: Path) -> None:
    from keyring.backends import null

    original = keyring.get_keyring()
    try:
        for backend in (_PlaintextFileKeyring(), null.Keyring()):
            keyring.set_keyring(backend)
            store = KeyStore(tmp_path / "p.json")
            with pytest.raises(KeyringUnavailable):
                store.check()
            with pytest.raises(KeyringUnavailable):
                store.load_key()
        assert _PlaintextFileKeyring.stored == {}  # no key was ever written there
    finally:
        keyring.set_keyring(original)


# ---- passphrase mode ---------------------------------------------------------------------------


def test_passphrase_mode_works_without_a_keyring_and_a_wrong_one_is_wrong_key(tmp_path: Path) -> None:
    no_keyring = {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring", **NO_BUS}
    made = run_keystore(
        tmp_path,
        'result = {"key_id": key_id(store.load_key()).hex(), "mode": store.passphrase_mode}',
        LINDA_BACKUP_PASSPHRASE="correct horse battery staple",
        **no_keyring,
    )
    assert made["mode"] is True and made["backend"] == "passphrase"
    params = json.loads((tmp_path / "passphrase.json").read_text())
    assert set(params) == {"kdf", "n", "r", "p", "salt", "version", "key_id"}
    assert params["kdf"] == "scrypt" and params["n"] >= 2**15 and params["key_id"] == made["key_id"]
    key = KeyStore(tmp_path / "passphrase.json").load_key(passphrase="correct horse battery staple")
    assert key_id(key).hex() == made["key_id"]
    assert base64.b64encode(key).decode() not in (tmp_path / "passphrase.json").read_text()

    # Same passphrase, same key in another process; a wrong one is WrongKey.
    again = run_keystore(tmp_path, 'result = {"key_id": key_id(store.load_key()).hex()}',
                         LINDA_BACKUP_PASSPHRASE="correct horse battery staple", **no_keyring)
    assert again["key_id"] == made["key_id"]
    wrong = run_keystore(tmp_path, "store.load_key()\nresult = {}", LINDA_BACKUP_PASSPHRASE="wrong", **no_keyring)
    assert wrong["error"] == "WrongKey" and "passphrase is wrong" in wrong["message"]
    missing = run_keystore(tmp_path, "store.load_key()\nresult = {}", **no_keyring)
    assert missing["error"] == "KeyringUnavailable" and "LINDA_BACKUP_PASSPHRASE" in missing["fix"]

    # Backups made with the passphrase key open with it, and not with another passphrase's key.
    profile = tmp_path / "profile"
    origin = make_fake_profile(profile, idb_mb=0.05, caches_mb=0.01)
    backup = BackupStore(tmp_path / "backups", key).create(profile, origin_url=origin)
    BackupStore(tmp_path / "backups", key).verify(backup.id)
    other = KeyStore(tmp_path / "other.json")
    other.enable_passphrase("wrong")
    with pytest.raises(WrongKey, match="different key"):
        BackupStore(tmp_path / "backups", other.load_key(passphrase="wrong")).verify(backup.id)
    assert backup.path.is_file()


def test_passphrase_given_while_a_keyring_works_keeps_keyring_mode(tmp_path: Path, service: str) -> None:
    """Setting LINDA_BACKUP_PASSPHRASE only matters when there is no keyring (no surprise re-keying)."""
    secret_service_or_skip()
    store = KeyStore(tmp_path / "p.json", service=service)
    key = store.load_key(passphrase="unused")
    assert not store.passphrase_mode and base64.b64decode(keyring.get_password(service, "backup-key")) == key


def test_enable_passphrase_twice_checks_it(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "p.json")
    store.enable_passphrase("one")
    store.enable_passphrase("one")
    with pytest.raises(WrongKey):
        store.enable_passphrase("two")
    with pytest.raises(ValueError):
        KeyStore(tmp_path / "q.json").enable_passphrase("")


# ---- the shared wrapper (system/keyring_store.py) ------------------------------------------------


def test_a_chainer_never_writes_to_a_refused_backend(tmp_path: Path, service: str) -> None:
    """keyring's chainer may rank a plaintext backend first: the key goes to the acceptable one."""
    secret_service_or_skip()
    from keyring.backends.chainer import ChainerBackend

    from linda_desktop.system.keyring_store import KeyringEntry

    original = keyring.get_keyring()
    usable = [b for b in getattr(original, "backends", [original]) if "SecretService" in type(b).__module__]
    assert usable, f"no Secret Service backend in {original!r}"

    class Chained(ChainerBackend):
        backends: ClassVar[list[Any]] = [_PlaintextFileKeyring(), *usable]  # the refused one ranks first

    _PlaintextFileKeyring.stored.clear()
    try:
        keyring.set_keyring(Chained())
        store = KeyStore(tmp_path / "p.json", service=service)
        key = store.load_key()
        assert store.backend_name() == f"{type(usable[0]).__module__}.{type(usable[0]).__qualname__}"
        assert _PlaintextFileKeyring.stored == {}
        assert KeyringEntry(service, "backup-key").get() == base64.b64encode(key).decode("ascii")
    finally:
        keyring.set_keyring(original)
    assert keyring.get_password(service, "backup-key") == base64.b64encode(key).decode("ascii")
