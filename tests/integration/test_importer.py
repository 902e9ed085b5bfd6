"""session/importer.py with LocalAuth folders built from real Chromium profiles.

The profiles are written by a real Chromium on the real WhatsApp origin: Playwright answers
``https://web.whatsapp.com/`` with the test page (no network), so the store really is
``Default/IndexedDB/https_web.whatsapp.com_0.indexeddb.leveldb`` as in a whatsapp-web.js folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from linda_desktop.base.errors import ImportSourceInvalid, ProfileInUse
from linda_desktop.base.paths import resolve_paths
from linda_desktop.session.importer import import_session
from linda_desktop.session.profile import origin_storage_key, session_files, validate_profile
from tests.helpers.chromium_profile import ARGS, CHROMIUM, PAGE, free_port, make_real_profile, read_data, write_data

WA = "https://web.whatsapp.com/"
WA_STORE = "Default/IndexedDB/https_web.whatsapp.com_0.indexeddb.leveldb"


@contextlib.contextmanager
def wa_page(profile_dir: Path) -> Iterator:
    """A real Chromium on ``profile_dir`` showing the test page at https://web.whatsapp.com/."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile_dir), executable_path=CHROMIUM, headless=True, args=ARGS
        )
        try:
            context.route(
                "https://web.whatsapp.com/**",
                lambda route: route.fulfill(status=200, content_type="text/html", body=PAGE),
            )
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(WA)
            page.wait_for_function("typeof writeAll === 'function'")
            yield page
        finally:
            context.close()


def make_wa_profile(profile_dir: Path, payload_mb: float = 0.5) -> dict:
    with wa_page(profile_dir) as page:
        written = write_data(page, payload_mb=payload_mb)
        time.sleep(0.5)
    return written


@pytest.fixture(scope="module")
def wa_profiles(tmp_path_factory):
    """Two real profiles on the WhatsApp origin, with different sessions (tokens)."""
    root = tmp_path_factory.mktemp("wa")
    first, second = root / "first", root / "second"
    return {"first": (first, make_wa_profile(first)), "second": (second, make_wa_profile(second))}


def localauth(project: Path, profile: Path, client_id: str | None = "mybot") -> Path:
    """A whatsapp-web.js project folder: .wwebjs_auth/session-<id>/ is the bot's whole Chromium
    profile (caches included), next to the siblings whatsapp-web.js also leaves there."""
    auth = project / ".wwebjs_auth"
    session = auth / (f"session-{client_id}" if client_id else "session")
    shutil.copytree(profile, session, symlinks=True)
    (session / "Default" / "Cache" / "Cache_Data").mkdir(parents=True, exist_ok=True)
    (session / "Default" / "Cache" / "Cache_Data" / "data_1").write_bytes(os.urandom(4096))
    (session / "Default" / "Service Worker" / "CacheStorage").mkdir(parents=True, exist_ok=True)
    (auth / "wwebjs_temp_session_mybot" / "Default").mkdir(parents=True)
    (project / ".wwebjs_cache").mkdir()
    (project / ".wwebjs_cache" / "2.3000.html").write_text("<html></html>")
    return auth


def digest(root: Path) -> dict[str, tuple]:
    """Every file and link under ``root`` with size, mtime and content hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_file():
                out[rel] = (st.st_size, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                out[rel] = ("dir",)
    return out


def store_bytes(profile: Path) -> dict[str, bytes]:
    return {f: (profile / f).read_bytes() for f in session_files(profile, WA) if f.startswith(WA_STORE)}


@pytest.fixture
def paths(tmp_path):
    return resolve_paths(tmp_path / "data")


# --- the real thing ------------------------------------------------------------------------


@pytest.mark.browser
def test_import_localauth_and_relaunch_logged_in(wa_profiles, tmp_path, paths):
    profile, written = wa_profiles["first"]
    auth = localauth(tmp_path / "bot", profile)
    before = digest(tmp_path / "bot")

    result = import_session(auth, paths, origin_url=WA, backup_current=None)

    assert result.source_kind == "localauth" and result.aside_path is None
    assert result.source_dir == auth / "session-mybot"
    assert result.files == len(session_files(paths.profile, WA)) and result.bytes > 0
    assert digest(tmp_path / "bot") == before  # the source is only read
    assert validate_profile(paths.profile, WA).ok
    assert not (paths.profile / "Default" / "Cache").exists()
    assert not (paths.profile / "Default" / "Service Worker").exists()
    assert list(paths.work.iterdir()) == []  # scratch cleaned up
    with wa_page(paths.profile) as page:
        data = read_data(page)
    assert data["token"] == written["token"]  # localStorage came along
    assert [r["token"] for r in data["records"]] == [written["token"]] * 5  # IndexedDB too
    assert data["payload_records"] == written["payload_records"]


@pytest.mark.browser
@pytest.mark.parametrize("form", ["project", "auth", "session", "bare-session"])
def test_accepted_source_forms(wa_profiles, tmp_path, paths, form):
    profile, _ = wa_profiles["first"]
    auth = localauth(tmp_path / "bot", profile, client_id=None if form == "bare-session" else "mybot")
    source = {
        "project": tmp_path / "bot",
        "auth": auth,
        "session": auth / "session-mybot",
        "bare-session": auth / "session",
    }[form]
    result = import_session(source, paths, origin_url=WA, backup_current=None)
    assert result.source_kind == "localauth"
    assert store_bytes(paths.profile) == store_bytes(profile)


@pytest.mark.browser
def test_plain_chromium_user_data_dir(wa_profiles, paths):
    profile, _ = wa_profiles["second"]
    before = digest(profile)
    result = import_session(profile, paths, origin_url=WA, backup_current=None)
    assert result.source_kind == "chromium"
    assert store_bytes(paths.profile) == store_bytes(profile)
    assert digest(profile) == before


@pytest.mark.browser
def test_current_session_is_backed_up_first_and_kept_aside(wa_profiles, tmp_path, paths):
    old_profile, _ = wa_profiles["first"]
    new_profile, _ = wa_profiles["second"]
    import_session(old_profile, paths, origin_url=WA, backup_current=None)
    old_store = store_bytes(paths.profile)
    calls = []

    def backup_current():
        # A real copy of what is live at the moment of the call: it must still be the old session.
        dest = tmp_path / f"backup-{len(calls)}"
        shutil.copytree(paths.profile, dest, symlinks=True)
        calls.append(dest)
        return dest

    result = import_session(localauth(tmp_path / "bot", new_profile), paths, origin_url=WA,
                            backup_current=backup_current)
    assert len(calls) == 1
    assert store_bytes(calls[0]) == old_store and validate_profile(calls[0], WA).ok
    assert store_bytes(paths.profile) == store_bytes(new_profile)
    assert result.aside_path is not None and result.aside_path.parent == paths.quarantine
    assert store_bytes(result.aside_path) == old_store  # never deleted
    assert "imported" in (result.aside_path / "reason.json").read_text()


@pytest.mark.browser
def test_failed_backup_aborts_and_leaves_everything(wa_profiles, tmp_path, paths):
    old_profile, _ = wa_profiles["first"]
    import_session(old_profile, paths, origin_url=WA, backup_current=None)
    live_before = digest(paths.profile)

    def broken_backup():
        raise OSError("disk full")

    with pytest.raises(OSError):
        import_session(localauth(tmp_path / "bot", wa_profiles["second"][0]), paths, origin_url=WA,
                       backup_current=broken_backup)
    assert digest(paths.profile) == live_before
    assert list(paths.work.iterdir()) == []


@pytest.mark.browser
def test_no_backup_when_live_profile_has_no_session(wa_profiles, paths):
    (paths.profile / "Default").mkdir(parents=True)
    called = []
    result = import_session(wa_profiles["first"][0], paths, origin_url=WA,
                            backup_current=lambda: called.append(1))
    assert called == [] and result.aside_path is not None  # the empty profile still kept aside


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.browser
def test_several_sessions_are_refused(wa_profiles, tmp_path, paths):
    auth = localauth(tmp_path / "bot", wa_profiles["first"][0], "alpha")
    shutil.copytree(wa_profiles["second"][0], auth / "session-beta", symlinks=True)
    with pytest.raises(ImportSourceInvalid) as info:
        import_session(auth, paths, origin_url=WA, backup_current=None)
    assert "session-alpha" in str(info.value) and "session-beta" in str(info.value)
    assert "one of them" in str(info.value)
    assert not paths.profile.exists()


def test_folder_without_session_is_refused(tmp_path, paths):
    (tmp_path / "empty" / ".wwebjs_auth" / "RemoteAuth-x").mkdir(parents=True)
    with pytest.raises(ImportSourceInvalid, match=r"No whatsapp-web\.js session"):
        import_session(tmp_path / "empty", paths, origin_url=WA, backup_current=None)
    with pytest.raises(ImportSourceInvalid, match="not a folder"):
        import_session(tmp_path / "missing", paths, origin_url=WA, backup_current=None)
    (tmp_path / "prof" / "Default").mkdir(parents=True)
    with pytest.raises(ImportSourceInvalid, match="No WhatsApp session"):
        import_session(tmp_path / "prof", paths, origin_url=WA, backup_current=None)


@pytest.mark.browser
def test_other_origin_session_is_refused(wa_profiles, paths):
    with pytest.raises(ImportSourceInvalid, match=re.escape("https://web.whatsapp.com")):
        import_session(wa_profiles["first"][0], paths, origin_url="http://127.0.0.1:8765/", backup_current=None)


@pytest.mark.browser
def test_damaged_source_is_refused_and_live_kept(wa_profiles, tmp_path, paths):
    import_session(wa_profiles["first"][0], paths, origin_url=WA, backup_current=None)
    live_before = digest(paths.profile)
    auth = localauth(tmp_path / "bot", wa_profiles["second"][0])
    (auth / "session-mybot" / WA_STORE / "CURRENT").unlink()
    with pytest.raises(ImportSourceInvalid, match=r"damaged.*CURRENT is missing"):
        import_session(auth, paths, origin_url=WA, backup_current=lambda: pytest.fail("no backup"))
    assert digest(paths.profile) == live_before
    assert list(paths.work.iterdir()) == []


@pytest.mark.browser
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_source_with_running_browser_is_refused(wa_profiles, tmp_path, paths):
    auth = localauth(tmp_path / "bot", wa_profiles["first"][0])
    session = auth / "session-mybot"
    bot = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--no-first-run", f"--user-data-dir={session}",
         "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not (session / "SingletonLock").is_symlink() and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(ImportSourceInvalid) as info:
            import_session(auth, paths, origin_url=WA, backup_current=None)
        assert "Stop the bot first" in str(info.value) and str(bot.pid) in str(info.value)
        assert not paths.profile.exists()
    finally:
        os.killpg(bot.pid, 9)
        bot.wait(10)


@pytest.mark.browser
@pytest.mark.skipif(os.name != "posix", reason="fcntl locks")
def test_source_with_held_leveldb_lock_is_refused(wa_profiles, tmp_path, paths):
    """No Singleton lock (e.g. a bot's browser on another user-data path layout), but the
    IndexedDB store's LevelDB LOCK is held by a live process: refused."""
    auth = localauth(tmp_path / "bot", wa_profiles["first"][0])
    lock = auth / "session-mybot" / WA_STORE / "LOCK"
    lock.touch()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl,os,sys,time; fd=os.open(sys.argv[1], os.O_RDWR); "
         "fcntl.lockf(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(30)", str(lock)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ImportSourceInvalid, match="Stop the bot first"):
            import_session(auth, paths, origin_url=WA, backup_current=None)
    finally:
        holder.kill()
        holder.wait()
    # Once the bot is gone the same folder imports fine.
    assert import_session(auth, paths, origin_url=WA, backup_current=None).files > 0


# --- simulator origin ----------------------------------------------------------------------


@pytest.mark.browser
def test_session_of_the_configured_local_origin(tmp_path, paths):
    """With --wa-url pointing at the simulator, the simulator origin's store is imported."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}/"
    profile = tmp_path / "sim-profile"
    make_real_profile(profile, port=port)
    auth = localauth(tmp_path / "bot", profile)
    import_session(auth, paths, origin_url=origin, backup_current=None)
    key = origin_storage_key(origin)
    assert (paths.profile / "Default" / "IndexedDB" / f"{key}.indexeddb.leveldb" / "CURRENT").is_file()
    assert validate_profile(paths.profile, origin).ok


@pytest.mark.browser
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_live_profile_in_use_is_not_replaced(wa_profiles, paths):
    import_session(wa_profiles["first"][0], paths, origin_url=WA, backup_current=None)
    app_browser = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--no-first-run", f"--user-data-dir={paths.profile}",
         "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not (paths.profile / "SingletonLock").is_symlink() and time.monotonic() < deadline:
            time.sleep(0.05)
        before = store_bytes(paths.profile)
        with pytest.raises(ProfileInUse):
            import_session(wa_profiles["second"][0], paths, origin_url=WA, backup_current=None)
        assert store_bytes(paths.profile) == before
        assert not paths.quarantine.exists() or list(paths.quarantine.iterdir()) == []
    finally:
        os.killpg(app_browser.pid, 9)
        app_browser.wait(10)
