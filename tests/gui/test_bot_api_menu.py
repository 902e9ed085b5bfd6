"""Bot API ▸ in the tray: the menu model for every API state (pure), and the actions for real.

The actions run against the real BotApi switch and the real API server: Enabled is proven with
HTTP requests (401 without the token, 200 /v1/status with it, connection refused once it is off),
with the REAL SessionService and the WhatsApp Web simulator behind it. Copy token and the
Diagnostics token row read the real Secret Service that tests/run.sh starts.
"""

from __future__ import annotations

import json
import logging
import socket
import urllib.error
import urllib.request

import pytest
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QApplication, QMessageBox

from linda_desktop.api.token import load_token
from linda_desktop.base.events import SessionState
from linda_desktop.base.paths import AppPaths
from linda_desktop.base.settings import Settings
from linda_desktop.ui import menu_model as mm
from linda_desktop.ui.bot_api import BotApi
from linda_desktop.ui.bridge import ServiceBridge
from linda_desktop.ui.menu_model import TrayView, build_menu, find_item
from linda_desktop.ui.tray import TrayController
from tests.e2e.harness import write_settings
from tests.gui.real_service import RealServiceFactory, Recorder, UrlCatcher, open_menu
from tests.integration.conftest import kill_browsers_under
from tests.sim_fixtures import ACCOUNT, steady_sim  # noqa: F401  (the `sim` fixture)
from tests.whatsapp_sim.control import free_port

SECOND = 1000  # qtbot timeouts are in ms
URL = "http://127.0.0.1:8723"


# ---------------------------------------------------------------------- the menu model (pure)

def api_items(view: TrayView) -> dict[str, mm.MenuItem]:
    sub = find_item(build_menu(view), mm.BOT_API)
    assert sub is not None and sub.label == "Bot API"
    return {"sub": sub, **{c.id: c for c in sub.children if not c.separator}}


# (view fields) → (status line, Enabled checked, Enabled/Copy token usable, Open API docs usable)
API_STATES = [
    (dict(api_available=True), "Off", False, True, False),
    (dict(api_available=True, api_enabled=True, api_state=mm.API_STARTING), "Starting…", True, True, False),
    (dict(api_available=True, api_enabled=True, api_state=mm.API_ON, api_url=URL),
     f"Listening on {URL}", True, True, True),
    # The owner's start failed: the setting went back off; the line says why.
    (dict(api_available=True, api_state=mm.API_PROBLEM,
          api_problem="Port 8723 on 127.0.0.1 is in use by another program"),
     "Problem: Port 8723 on 127.0.0.1 is in use by another program", False, True, False),
    # Enabled in settings.json but it could not start at launch: still ticked, with the reason.
    (dict(api_available=True, api_enabled=True, api_state=mm.API_PROBLEM,
          api_problem="The bot API needs the system keyring for its token"),
     "Problem: The bot API needs the system keyring for its token", True, True, False),
    (dict(api_available=True, api_state=mm.API_PROBLEM), "Problem: it could not start", False, True, False),
    # A tray without the switch wired in (no BotApi): everything greyed out.
    (dict(api_available=False, api_enabled=True, api_state=mm.API_ON, api_url=URL), "Not available",
     False, False, False),
]


@pytest.mark.parametrize("fields, line, checked, usable, docs", API_STATES)
@pytest.mark.parametrize("state", list(SessionState))
def test_bot_api_submenu_for_every_api_state_and_session_state(state, fields, line, checked, usable, docs):
    items = api_items(TrayView(state=state, **fields))
    assert items["sub"].enabled is fields["api_available"]
    ids = [c.id for c in items["sub"].children if not c.separator]
    assert ids == [mm.API_STATUS, mm.API_ENABLED, mm.API_COPY_TOKEN, mm.API_DOCS]
    assert items["sub"].children[1].separator  # the status line stands apart from the actions
    assert items[mm.API_STATUS].label == line and not items[mm.API_STATUS].enabled
    enabled = items[mm.API_ENABLED]
    assert (enabled.label, enabled.checkable, enabled.checked, enabled.enabled) == ("Enabled", True, checked, usable)
    assert (items[mm.API_COPY_TOKEN].label, items[mm.API_COPY_TOKEN].enabled) == ("Copy token", usable)
    assert (items[mm.API_DOCS].label, items[mm.API_DOCS].enabled) == ("Open API docs", docs)


def test_bot_api_sits_after_start_at_login_and_is_inert_while_quitting():
    view = TrayView(state=SessionState.CONNECTED, api_available=True, api_enabled=True,
                    api_state=mm.API_ON, api_url=URL)
    ids = [i.id for i in build_menu(view) if not i.separator]
    assert ids.index(mm.BOT_API) == ids.index(mm.AUTOSTART) + 1
    quitting = api_items(TrayView(**{**view.__dict__, "quitting": True}))
    assert not any(quitting[i].enabled for i in (mm.API_ENABLED, mm.API_COPY_TOKEN, mm.API_DOCS))
    assert quitting[mm.API_STATUS].label == f"Listening on {URL}"


# ---------------------------------------------------------------------- helpers



def http(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def assert_refused(port: int) -> None:
    with pytest.raises(urllib.error.URLError) as caught:
        http(f"http://127.0.0.1:{port}/v1/status")
    assert isinstance(caught.value.reason, ConnectionRefusedError), caught.value


def saved_enabled(paths: AppPaths) -> bool:
    return json.loads(paths.settings_file.read_text())["api_enabled"]


def warning_boxes() -> list[QMessageBox]:
    return [w for w in QApplication.topLevelWidgets()
            if isinstance(w, QMessageBox) and w.objectName() == "warningBox" and w.isVisible()]


def close_boxes() -> None:
    for box in warning_boxes():
        box.close()




@pytest.fixture
def no_keyring():
    """A keyring backend that refuses everything (keyring's own 'fail' backend), then the real one."""
    import keyring
    from keyring.backends import fail

    real = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        yield
    finally:
        keyring.set_keyring(real)


# ---------------------------------------------------------------------- without a browser

@pytest.fixture
def probe_tray(qtbot, probe_factory, started_bridges, paths):
    """A tray with the real BotApi switch; the ThreadingProbeService stands behind the bridge
    (these tests never reach the service: failures happen before the API subscribes to it)."""
    def make(*, start: bool = True, tray: bool | None = True) -> TrayController:
        bridge = ServiceBridge(probe_factory)
        started_bridges.append(bridge)
        controller = TrayController(bridge, paths=paths, autostart=None, confirm=lambda *_: True,
                                    tray_available=tray, bot_api=BotApi(paths))
        qtbot.addWidget(controller.qr_window)
        qtbot.addWidget(controller.status_window)
        controller.show()
        if start:
            with qtbot.waitSignal(bridge.started, timeout=5 * SECOND):
                bridge.start()
        return controller
    yield make
    close_boxes()


@pytest.mark.timeout(60)
def test_copy_token_puts_the_keyring_token_on_the_clipboard_and_never_logs_it(qtbot, probe_tray, caplog):
    caplog.set_level(logging.DEBUG)
    controller = probe_tray(start=False)
    QGuiApplication.clipboard().setText("something else")
    with qtbot.waitSignal(controller.tokenCopied, timeout=10 * SECOND):
        open_menu(qtbot, controller)[mm.API_COPY_TOKEN].trigger()
    token = load_token()
    assert QGuiApplication.clipboard().text() == token and len(token) >= 43
    said = controller.notifier.sent[-1]
    assert said.title == "Bot API token copied" and token not in said.body
    with qtbot.waitSignal(controller.tokenCopied, timeout=10 * SECOND):  # each copy is confirmed
        controller.trigger(mm.API_COPY_TOKEN)
    assert [m.title for m in controller.notifier.sent].count("Bot API token copied") == 2
    assert token not in caplog.text


@pytest.mark.timeout(60)
def test_copy_token_without_a_keyring_says_why(qtbot, probe_tray, no_keyring):
    controller = probe_tray(start=False)
    QGuiApplication.clipboard().setText("unchanged")
    controller.trigger(mm.API_COPY_TOKEN)
    qtbot.waitUntil(lambda: any(m.title == "Could not copy the token" for m in controller.notifier.sent),
                    timeout=10 * SECOND)
    assert "No usable system keyring" in controller.notifier.sent[-1].body
    assert QGuiApplication.clipboard().text() == "unchanged"


@pytest.mark.timeout(60)
def test_enable_without_a_keyring_stays_off_and_says_why_in_a_box(qtbot, probe_tray, paths, no_keyring):
    port = free_port()
    write_settings(paths.data, api_port=port)
    controller = probe_tray()
    open_menu(qtbot, controller)[mm.API_ENABLED].trigger()
    qtbot.waitUntil(lambda: bool(warning_boxes()), timeout=10 * SECOND)
    box = warning_boxes()[0]
    assert box.windowTitle() == "The bot API could not start"
    assert box.text() == "The bot API needs the system keyring for its token"
    assert "keyring" in box.informativeText().lower()
    actions = open_menu(qtbot, controller)
    assert not actions[mm.API_ENABLED].isChecked() and not actions[mm.API_DOCS].isEnabled()
    assert actions[mm.API_STATUS].text() == "Problem: The bot API needs the system keyring for its token"
    assert saved_enabled(paths) is False  # the choice went back off
    assert_refused(port)


@pytest.mark.timeout(60)
def test_enabled_at_launch_but_port_taken_keeps_the_setting_and_shows_the_problem(qtbot, probe_tray, paths):
    """Not the owner's click: no box (the service's notice tells them); the setting stays on."""
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        write_settings(paths.data, api_enabled=True, api_port=port)
        controller = probe_tray()
        qtbot.waitUntil(lambda: controller.view.api_state == mm.API_PROBLEM, timeout=10 * SECOND)
        actions = open_menu(qtbot, controller)
        assert actions[mm.API_ENABLED].isChecked()
        assert actions[mm.API_STATUS].text() == f"Problem: Port {port} on 127.0.0.1 is in use by another program"
        assert not warning_boxes() and saved_enabled(paths) is True


@pytest.mark.timeout(60)
def test_status_window_offers_the_same_switch_and_enabling_before_the_service_waits_for_it(qtbot, probe_tray, paths):
    controller = probe_tray(start=False, tray=False)  # no tray: the status window is the UI
    button = controller.status_window.widget(mm.BOT_API)
    menu = button.menu()
    by_id = {a.objectName(): a for a in menu.actions() if not a.isSeparator()}
    assert list(by_id) == [mm.API_STATUS, mm.API_ENABLED, mm.API_COPY_TOKEN, mm.API_DOCS]
    assert by_id[mm.API_STATUS].text() == "Off" and by_id[mm.API_ENABLED].isCheckable()
    by_id[mm.API_ENABLED].trigger()  # checks it: the window passes checked=True on
    assert saved_enabled(paths) is True
    assert controller.view.api_enabled and controller.view.api_state == mm.API_STARTING  # no service yet
    menu = controller.status_window.widget(mm.BOT_API).menu()
    enabled = next(a for a in menu.actions() if a.objectName() == mm.API_ENABLED)
    assert enabled.isChecked()
    enabled.trigger()
    assert saved_enabled(paths) is False and controller.view.api_state == mm.API_OFF


@pytest.mark.timeout(60)
def test_diagnostics_shows_the_token_masked_until_asked_and_keeps_it_out_of_the_report(qtbot, probe_tray):
    controller = probe_tray(start=False)
    dialog = controller.show_diagnostics()
    qtbot.addWidget(dialog)
    token = load_token()
    qtbot.waitUntil(lambda: dialog.token_edit.text() == token and dialog.copy_button.isEnabled(),
                    timeout=10 * SECOND)
    assert not dialog.token_shown and dialog.token_edit.displayText() != token
    assert "bot API: Off" in dialog.report_text
    assert token not in dialog.report_text  # the report is for support: no keys in it
    dialog.show_token_button.click()
    assert dialog.token_shown and dialog.token_edit.displayText() == token
    dialog.copy_token_button.click()
    assert QGuiApplication.clipboard().text() == token
    dialog.copy_button.click()
    assert token not in QGuiApplication.clipboard().text()


# ---------------------------------------------------------------------- the real service



@pytest.mark.browser
@pytest.mark.timeout(150)
def test_enable_disable_docs_and_quit_with_the_real_service(qtbot, paths, sim, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    port = free_port()
    write_settings(paths.data, flush_delay_seconds=1, api_enabled=True, api_port=port)
    bridge = ServiceBridge(RealServiceFactory(paths, sim.url))
    bot_api = BotApi(paths)
    controller = TrayController(bridge, paths=paths, autostart=None, confirm=lambda *_: True,
                                tray_available=True, bot_api=bot_api)
    qtbot.addWidget(controller.qr_window)
    qtbot.addWidget(controller.status_window)
    controller.show()
    base = f"http://127.0.0.1:{port}"
    token = load_token()
    catcher = UrlCatcher()
    notices = Recorder()
    bridge.notice.connect(notices.add)
    QDesktopServices.setUrlHandler("http", catcher, "open")
    try:
        # 1. Enabled in settings.json: it starts with the service and answers for real.
        with qtbot.waitSignal(bridge.started, timeout=10 * SECOND):
            bridge.start()
        qtbot.waitUntil(lambda: controller.view.api_state == mm.API_ON, timeout=15 * SECOND)
        actions = open_menu(qtbot, controller)
        assert actions[mm.API_ENABLED].isChecked() and actions[mm.API_DOCS].isEnabled()
        assert actions[mm.API_STATUS].text() == f"Listening on {base}"
        assert http(base + "/v1/status")[0] == 401
        sim.link()
        qtbot.waitUntil(lambda: controller.view.state == SessionState.CONNECTED, timeout=40 * SECOND)
        code, body = http(base + "/v1/status", token)
        assert code == 200
        status = json.loads(body)
        assert status["state"] == "connected" and status["account"] == ACCOUNT

        # 2. Open API docs: the browser gets the running server's page.
        actions[mm.API_DOCS].trigger()
        assert [u.toString() for u in catcher.urls] == [base + "/docs"]
        code, page = http(catcher.urls[0].toString())
        assert code == 200 and b"<html" in page.lower()

        # 3. Untick Enabled: saved, and the port is closed at once (no restart).
        open_menu(qtbot, controller)[mm.API_ENABLED].trigger()
        assert saved_enabled(paths) is False
        assert_refused(port)
        actions = open_menu(qtbot, controller)
        assert not actions[mm.API_ENABLED].isChecked() and not actions[mm.API_DOCS].isEnabled()
        assert actions[mm.API_STATUS].text() == "Off"
        actions[mm.API_DOCS].trigger()  # disabled: nothing opens
        assert len(catcher.urls) == 1

        # 4. Another program holds the port: Enabled says why in a box and stays unticked; the
        #    server's own notice is not shown on top of it.
        with socket.socket() as blocker:
            # SO_REUSEADDR: our earlier connections left the port in TIME_WAIT. Two listeners
            # are still refused (Linux needs SO_REUSEPORT for that), which is the point here.
            blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            blocker.bind(("127.0.0.1", port))
            blocker.listen()
            open_menu(qtbot, controller)[mm.API_ENABLED].trigger()
            qtbot.waitUntil(lambda: bool(warning_boxes()), timeout=10 * SECOND)
            box = warning_boxes()[0]
            assert box.text() == f"Port {port} on 127.0.0.1 is in use by another program"
            assert box.informativeText() == "Set another api_port in settings.json."
            actions = open_menu(qtbot, controller)
            assert not actions[mm.API_ENABLED].isChecked()
            assert actions[mm.API_STATUS].text().startswith(f"Problem: Port {port} on 127.0.0.1 is in use")
            assert saved_enabled(paths) is False
            qtbot.waitUntil(lambda: any(kind == "api_unavailable" for kind, _ in notices.items),
                            timeout=5 * SECOND)  # the server told the service, which told the tray…
            assert not any("bot API" in m.title for m in controller.notifier.sent)  # …said once, in the box
            box.close()

        # 5. Port free again: tick it, it listens at once and knows the session.
        open_menu(qtbot, controller)[mm.API_ENABLED].trigger()
        assert saved_enabled(paths) is True
        qtbot.waitUntil(lambda: controller.view.api_state == mm.API_ON, timeout=10 * SECOND)
        assert not warning_boxes()
        assert http(base + "/v1/status")[0] == 401
        code, body = http(base + "/v1/status", token)
        assert code == 200 and json.loads(body)["state"] == "connected"

        # 6. Quit: the API goes first, then the service stops cleanly; the setting stays on.
        with qtbot.waitSignal(controller.quitRequested, timeout=90 * SECOND):
            open_menu(qtbot, controller)[mm.QUIT].trigger()
        assert_refused(port)
        assert not bridge.running and bridge.failure is None
        assert Settings.load(paths.settings_file).api_enabled is True
        assert token not in caplog.text
    finally:
        QDesktopServices.unsetUrlHandler("http")
        close_boxes()
        bot_api.close()
        if bridge.running:
            bridge.shutdown(timeout=60)
        kill_browsers_under(tmp_path)
