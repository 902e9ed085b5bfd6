"""TrayController: the tray icon, its menu, and what each menu item does.

It keeps one :class:`TrayView` (the single source of truth for the menu and the StatusWindow),
updates it from the bridge's signals, and turns clicks into bridge commands. It never waits on
the service.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from PySide6.QtCore import QObject, QPoint, QUrl, Signal, Slot
from PySide6.QtGui import QAction, QDesktopServices, QGuiApplication, QIcon, QPalette
from PySide6.QtWidgets import QMenu, QMessageBox, QSystemTrayIcon, QWidget

from linda_desktop import APP_NAME
from linda_desktop.base.errors import LindaError
from linda_desktop.base.events import Command, SessionState, StateChanged
from linda_desktop.base.paths import AppPaths
from linda_desktop.ui import bridge as cmd
from linda_desktop.ui import menu_model as mm
from linda_desktop.ui import qt_compat  # noqa: F401 - must load before any emit
from linda_desktop.ui.about import AboutDialog
from linda_desktop.ui.bot_api import BotApi
from linda_desktop.ui.bridge import ServiceBridge
from linda_desktop.ui.diagnostics import DiagnosticsDialog, ReportSource, format_report
from linda_desktop.ui.icons import app_icon, tray_icon
from linda_desktop.ui.notifications import CRITICAL, INFO, WARNING, Message, Notifier
from linda_desktop.ui.qr_window import QrWindow
from linda_desktop.ui.status_window import StatusWindow

log = logging.getLogger(__name__)

ConfirmFn = Callable[[str, str, str], bool]  # (title, text, ok button label) -> accepted?

_FAILED_TITLES = {  # by Command value: commandFailed carries plain str
    Command.BACKUP.value: "Backup failed",
    Command.RESTORE.value: "Restore failed",
    Command.RELINK.value: "Re-link failed",
    Command.NEW_QR.value: "Could not get a new code",
    Command.FINISH_LINK.value: "Could not show the WhatsApp window",
    Command.PAIRING_CODE.value: "Could not get a pairing code",
}


class Autostart(Protocol):
    """linda_desktop.system.autostart's strategy objects."""

    def enable(self) -> Any: ...
    def disable(self) -> Any: ...
    def is_enabled(self) -> bool: ...
    def describe(self) -> str: ...


def default_autostart(paths: AppPaths | None = None) -> Autostart | None:
    """This OS's autostart entry; it carries ``--data-dir`` when the app runs with one."""
    try:
        from linda_desktop.service.diagnostics import data_dir_override
        from linda_desktop.system.autostart import autostart_for_platform
        return autostart_for_platform(data_dir=data_dir_override(paths) if paths else None)
    except Exception as exc:  # noqa: BLE001 - no autostart is a disabled menu item, not a crash
        log.info("start at login is not available: %s", exc)
        return None


def message_box_confirm(parent: QWidget | None = None) -> ConfirmFn:
    def confirm(title: str, text: str, ok_label: str) -> bool:
        box = QMessageBox(parent)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle(title)
        box.setText(text)
        ok = box.addButton(ok_label, QMessageBox.ButtonRole.AcceptRole)
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(cancel)
        box.setWindowIcon(app_icon())
        box.exec()
        return box.clickedButton() is ok
    return confirm


def populate_menu(menu: QMenu, items: list[mm.MenuItem], on_trigger: Callable[[str, bool], None],
                  icons: dict[str, QIcon] | None = None) -> None:
    """Fill ``menu`` with QActions for ``items`` (object names are the item ids)."""
    menu.clear()
    icons = icons or {}
    for item in items:
        if item.separator:
            menu.addSeparator()
            continue
        if item.children:
            sub = menu.addMenu(item.label)
            sub.setObjectName(item.id)
            sub.menuAction().setObjectName(item.id)
            sub.setEnabled(item.enabled)
            populate_menu(sub, list(item.children), on_trigger)
            continue
        action = QAction(item.label, menu)
        action.setObjectName(item.id)
        if item.id in icons:
            action.setIcon(icons[item.id])
            action.setIconVisibleInMenu(True)
        action.setEnabled(item.enabled)
        if item.checkable:
            action.setCheckable(True)
            action.setChecked(item.checked)
        action.triggered.connect(lambda checked=False, i=item.id: on_trigger(i, checked))
        menu.addAction(action)


# Seconds after the owner switched the bot API on during which the server's own "api_unavailable"
# notice is not shown: the owner hears why in a message box instead (once, not twice).
_API_NOTICE_QUIET = 15.0


class TrayController(QObject):
    quitRequested = Signal()   # the owner chose Quit; emitted after the clean shutdown finished
    viewChanged = Signal()     # the TrayView changed (tests, the preview)
    tokenCopied = Signal()     # Bot API ▸ Copy token put the token on the clipboard (tests)

    _apiChanged = Signal()            # BotApi listener, from any thread → GUI thread
    _tokenLoaded = Signal(str, str)   # token, error (one of them empty); never log the token

    def __init__(self, bridge: ServiceBridge, *, paths: AppPaths, qr_window: QrWindow | None = None,
                 status_window: StatusWindow | None = None, autostart: Autostart | str | None = "default",
                 diagnostics: ReportSource | None = None, confirm: ConfirmFn | None = None,
                 tray_available: bool | None = None, auto_show_link_window: bool = True,
                 bot_api: BotApi | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.paths = paths
        self.bot_api = bot_api
        self._api_owner_waiting = False   # the owner switched it on; say how that went
        self._api_quiet_until = 0.0
        self.qr_window = qr_window or QrWindow()
        self.status_window = status_window or StatusWindow()
        self.autostart: Autostart | None = default_autostart(paths) if isinstance(autostart, str) else autostart
        self._diagnostics = diagnostics
        self._confirm = confirm or message_box_confirm()
        self.auto_show_link_window = auto_show_link_window
        self._dialogs: list[QWidget] = []
        self._quitting = False
        self.view = mm.TrayView(autostart_available=self.autostart is not None,
                                autostart_enabled=self._autostart_enabled(), **self._api_view())

        available = QSystemTrayIcon.isSystemTrayAvailable() if tray_available is None else tray_available
        self.tray: QSystemTrayIcon | None = None
        self.menu = QMenu()
        self.menu.setObjectName("trayMenu")
        self.menu.aboutToShow.connect(self.rebuild_menu)
        if available:
            self.tray = QSystemTrayIcon(self)
            self.tray.setContextMenu(self.menu)
            self.tray.activated.connect(self._on_activated)
            self.tray.messageClicked.connect(self._on_message_clicked)
        else:
            self.status_window.minimize_on_close = True
        self.notifier = Notifier(self._show_message, parent=self)
        self.status_window.actionTriggered.connect(self.trigger)

        bridge.stateChanged.connect(self._on_state)
        bridge.qrChanged.connect(self._on_qr)
        bridge.backupMade.connect(self._on_backup)
        bridge.restored.connect(self._on_restored)
        bridge.notice.connect(self._on_notice)
        bridge.commandDone.connect(self._on_command_done)
        bridge.commandFailed.connect(self._on_command_failed)
        bridge.busyChanged.connect(self._on_busy)
        bridge.started.connect(self.bridge.list_backups)
        self._apiChanged.connect(self._on_api_changed)
        self._tokenLoaded.connect(self._on_token_loaded)
        if bot_api is not None:
            bot_api.subscribe(self._api_changed_elsewhere)
            bridge.started.connect(self._attach_api)
        self.qr_window.showNewQrRequested.connect(bridge.show_new_qr)
        self.qr_window.finishLinkRequested.connect(bridge.finish_link)
        self.qr_window.pairingCodeRequested.connect(bridge.request_pairing_code)
        bridge.pairingCode.connect(self._on_pairing_code)

        hints = QGuiApplication.styleHints()
        if hasattr(hints, "colorSchemeChanged"):
            hints.colorSchemeChanged.connect(lambda *_: self._refresh())
        self._refresh()

    # ---- showing -----------------------------------------------------------------------------

    def show(self) -> None:
        """Show the tray icon, or the StatusWindow when the desktop has no tray."""
        if self.tray is not None:
            self.tray.show()
        else:
            self.status_window.bring_forward()

    @property
    def has_tray(self) -> bool:
        return self.tray is not None

    def items(self, now: datetime | None = None) -> list[mm.MenuItem]:
        return mm.build_menu(self.view, now)

    @Slot()
    def rebuild_menu(self) -> None:
        if self.bot_api is not None:  # the API server may have stopped since (its thread failed)
            self.view = dataclasses.replace(self.view, **self._api_view())
        populate_menu(self.menu, self.items(), self.trigger, self._menu_icons())

    def _menu_icons(self) -> dict[str, QIcon]:
        dark_menu = self.menu.palette().color(QPalette.ColorRole.Window).lightness() < 128
        return {mm.STATUS: tray_icon(self.view.state, dark_panel=dark_menu)}

    def _refresh(self) -> None:
        items = self.items()
        words = mm.status_label(self.view)
        if self.tray is not None:
            self.tray.setIcon(tray_icon(self.view.state))
            self.tray.setToolTip(f"{APP_NAME} — {words}\n{mm.last_backup_label(self.view)}")
        if not self.menu.isVisible():
            populate_menu(self.menu, items, self.trigger, self._menu_icons())
        self.status_window.render_items(self.view.state, items)
        self.viewChanged.emit()

    def _update(self, **changes: Any) -> None:
        self.view = dataclasses.replace(self.view, **changes)
        self._refresh()

    def open_window(self) -> None:
        """What a click on the icon (or a second launch) does: linking needs the QR window,
        anything else the StatusWindow."""
        if self.view.state in mm.NEEDS_OWNER or self.qr_window.isVisible():
            self.qr_window.bring_forward()
        else:
            self.status_window.bring_forward()

    @Slot(QSystemTrayIcon.ActivationReason)
    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if sys.platform == "darwin":
            return  # macOS opens the menu on click, as menu-bar items do
        if reason in (QSystemTrayIcon.ActivationReason.Trigger,
                      QSystemTrayIcon.ActivationReason.DoubleClick):
            self.open_window()

    def _on_message_clicked(self) -> None:
        self.open_window()

    def _show_message(self, title: str, body: str, level: str) -> None:
        if self.tray is not None and self.tray.isVisible() and QSystemTrayIcon.supportsMessages():
            icon = {INFO: QSystemTrayIcon.MessageIcon.Information,
                    WARNING: QSystemTrayIcon.MessageIcon.Warning,
                    CRITICAL: QSystemTrayIcon.MessageIcon.Critical}.get(level, QSystemTrayIcon.MessageIcon.Information)
            self.tray.showMessage(title, body, icon, 8000)
        else:
            self.status_window.show_banner(title, body, level)

    # ---- from the service -------------------------------------------------------------------

    @Slot(object)
    def _on_state(self, event: StateChanged) -> None:
        previous = self.view.state
        # Keep the last known account across offline/restarts; forget it once the link is gone.
        account = None if event.state in mm.NEEDS_OWNER else (event.account or self.view.account)
        self.qr_window.set_state(event)
        self.notifier.on_state(event)
        self._update(state=event.state, reason=event.reason, code=event.code, stage=mm.link_stage(event),
                     account=account)
        if event.state in mm.NEEDS_OWNER and previous not in mm.NEEDS_OWNER and self.auto_show_link_window \
                and not self._quitting:
            self.qr_window.bring_forward()
        if event.state in (SessionState.CONNECTED, SessionState.LOGGED_OUT):
            self.bridge.list_backups()

    @Slot(str, bool)
    def _on_qr(self, payload: str, idle: bool) -> None:
        self.qr_window.set_qr(payload, idle)

    @Slot(str)
    def _on_pairing_code(self, code: str) -> None:
        self.qr_window.set_pairing_code(code)
        if not self._quitting:
            self.qr_window.bring_forward()

    @Slot(object)
    def _on_backup(self, info: dict) -> None:
        self._update(last_backup=info.get("created_at") or datetime.now().astimezone())
        self.bridge.list_backups()

    @Slot(object)
    def _on_restored(self, info: dict) -> None:
        self.notifier.on_restored(info)
        self.bridge.list_backups()

    @Slot()
    def _on_busy(self) -> None:
        self._update(backing_up=self.bridge.busy(Command.BACKUP), restoring=self.bridge.busy(Command.RESTORE),
                     relinking=self.bridge.busy(Command.RELINK))

    @Slot(str, object)
    def _on_command_done(self, name: str, result: object) -> None:
        if name == cmd.LIST_BACKUPS and isinstance(result, (list, tuple)):
            self.set_backups(result)
        elif name == Command.BACKUP:
            self.notifier.notify(Message(f"backup_done:{datetime.now().timestamp()}", "Backup saved",
                                         "Your WhatsApp session is backed up (encrypted)."))

    @Slot(str, str)
    def _on_notice(self, kind: str, message: str) -> None:
        if kind == "api_unavailable" and time.monotonic() < self._api_quiet_until:
            return  # the owner just switched it on: the message box says why
        self.notifier.on_notice(kind, message)

    @Slot(str, str)
    def _on_command_failed(self, name: str, message: str) -> None:
        if name == cmd.LIST_BACKUPS:
            return
        if name == Command.FINISH_LINK:
            self.qr_window.finish_failed(message)
        elif name == Command.PAIRING_CODE:
            self.qr_window.pairing_failed(message)  # said in the window, next to the number
            return
        title = _FAILED_TITLES.get(name, "Something went wrong")
        self.notifier.notify(Message(f"failed:{name}:{message}", title, message, WARNING))

    def set_backups(self, raw: list | tuple) -> None:
        entries = mm.parse_backups(raw)
        newest = max((b.created_at for b in entries), key=lambda d: d.timestamp(), default=None)
        last = self.view.last_backup
        if newest is not None and (last is None or newest.timestamp() > last.timestamp()):
            last = newest
        self._update(backups=tuple(entries), last_backup=last)

    # ---- from the owner ---------------------------------------------------------------------

    @Slot(str, bool)
    def trigger(self, item_id: str, checked: bool = False) -> None:
        """Run the menu item ``item_id`` (menu and StatusWindow both end up here)."""
        if self._quitting:
            return
        if item_id.startswith(mm.RESTORE_PREFIX):
            self._restore(item_id[len(mm.RESTORE_PREFIX):])
        elif item_id == mm.BACKUP_NOW:
            self.bridge.backup_now()
        elif item_id == mm.SHOW_WINDOW:
            self.qr_window.bring_forward()
        elif item_id == mm.STATUS:
            self.open_window()
        elif item_id == mm.RELINK:
            self._relink()
        elif item_id == mm.AUTOSTART:
            self._toggle_autostart(checked)
        elif item_id == mm.API_ENABLED:
            self.set_api_enabled(checked)
        elif item_id == mm.API_COPY_TOKEN:
            self.copy_api_token()
        elif item_id == mm.API_DOCS:
            self.open_api_docs()
        elif item_id == mm.OPEN_DATA:
            self.open_data_folder()
        elif item_id == mm.DIAGNOSTICS:
            self.show_diagnostics()
        elif item_id == mm.ABOUT:
            self._keep(AboutDialog(self.paths.data, self.paths.log_file)).show()
        elif item_id == mm.QUIT:
            self.quit()
        else:
            log.warning("unknown menu item %s", item_id)

    def _restore(self, backup_id: str) -> None:
        entry = next((b for b in mm.parse_backups(self.view.backups) if b.id == backup_id), None)
        when = mm.format_when(entry.created_at) if entry else "the chosen time"
        if not self._confirm("Restore from backup",
                             f"Go back to the session saved at {when}?\n\nWhatsApp restarts with that "
                             "copy. The current session is set aside, not deleted.", "Restore"):
            return
        self.bridge.restore(backup_id)

    def _relink(self) -> None:
        if not self._confirm("Re-link device",
                             "Link this computer to WhatsApp again?\n\nThe current session is set aside "
                             "(your backups are kept) and a new QR code appears. You need your phone "
                             "to scan it.", "Re-link"):
            return
        self.qr_window.begin_relink()
        self.bridge.relink()

    def _autostart_enabled(self) -> bool:
        if self.autostart is None:
            return False
        try:
            return bool(self.autostart.is_enabled())
        except Exception:
            log.exception("could not read the start-at-login setting")
            return False

    def _toggle_autostart(self, checked: bool) -> None:
        if self.autostart is None:
            return
        try:
            if checked:
                self.autostart.enable()
            else:
                self.autostart.disable()
        except Exception as exc:  # noqa: BLE001 - show it, keep the real state in the menu
            self.notifier.notify(Message(f"autostart:{exc}", "Could not change Start at login",
                                         str(exc), WARNING))
        self._update(autostart_enabled=self._autostart_enabled())

    # ---- Bot API ▸ ----------------------------------------------------------------------------

    def _api_view(self) -> dict[str, Any]:
        if self.bot_api is None:
            return {"api_available": False}
        status = self.bot_api.status()
        return {"api_available": True, "api_enabled": status.enabled, "api_state": status.state,
                "api_url": status.url,
                "api_problem": status.problem.message if status.problem is not None else None}

    def _api_changed_elsewhere(self) -> None:
        """BotApi listener (any thread): hand the news to the GUI thread."""
        try:
            self._apiChanged.emit()
        except RuntimeError:  # the controller is gone (the app is exiting)
            pass

    @Slot()
    def _attach_api(self) -> None:
        if self.bot_api is not None and self.bridge.service is not None:
            self.bot_api.attach(self.bridge.service)

    @Slot()
    def _on_api_changed(self) -> None:
        if self.bot_api is None:
            return
        self._update(**self._api_view())
        status = self.bot_api.status()
        if not self._api_owner_waiting or status.state == mm.API_STARTING:
            return
        self._api_owner_waiting = False
        if status.state == mm.API_PROBLEM and status.problem is not None:
            self._api_quiet_until = time.monotonic() + _API_NOTICE_QUIET
            self._warn("The bot API could not start", status.problem.message, status.problem.fix)

    def set_api_enabled(self, enabled: bool) -> None:
        """Bot API ▸ Enabled: save the choice and start or stop the server now."""
        if self.bot_api is None:
            return
        if enabled:
            self._api_owner_waiting = True
            self._api_quiet_until = time.monotonic() + _API_NOTICE_QUIET
        try:
            self.bot_api.set_enabled(enabled)
        except OSError as exc:
            self._api_owner_waiting = False
            self._warn("Could not change the bot API setting", f"settings.json could not be written: "
                       f"{exc.strerror or exc}", "check that the data folder is writable")
        self._on_api_changed()

    def copy_api_token(self) -> None:
        """Bot API ▸ Copy token: read it from the keyring off the GUI thread, then copy it."""
        bot_api = self.bot_api
        if bot_api is None:
            return

        def load() -> None:
            try:
                token, error = bot_api.token(), ""
            except LindaError as exc:
                token, error = "", str(exc)
            except Exception as exc:  # noqa: BLE001 - a D-Bus error must become a message
                token, error = "", f"The system keyring failed: {type(exc).__name__}"
            try:
                self._tokenLoaded.emit(token, error)
            except RuntimeError:  # the controller is gone (app exit)
                pass

        threading.Thread(target=load, name="linda-api-token", daemon=True).start()

    @Slot(str, str)
    def _on_token_loaded(self, token: str, error: str) -> None:
        if not token:
            self.notifier.notify(Message("api_token_failed", "Could not copy the token",
                                         error or "The system keyring gave no token.", WARNING), repeat=True)
            return
        QGuiApplication.clipboard().setText(token)
        self.notifier.notify(Message("api_token_copied", "Bot API token copied",
                                     "Paste it into your bot as “Authorization: Bearer <token>”. "
                                     "Keep it secret: it gives access to your WhatsApp."), repeat=True)
        self.tokenCopied.emit()

    def open_api_docs(self) -> bool:
        status = self.bot_api.status() if self.bot_api is not None else None
        if status is None or status.docs_url is None:
            return False
        return QDesktopServices.openUrl(QUrl(status.docs_url))

    def _warn(self, title: str, text: str, fix: str | None = None) -> QMessageBox:
        """A non-modal warning box (the owner just did something that did not work)."""
        box = QMessageBox(QMessageBox.Icon.Warning, title, text)
        box.setObjectName("warningBox")
        box.setWindowIcon(app_icon())
        if fix:
            box.setInformativeText(fix[:1].upper() + fix[1:] + ("" if fix.endswith(".") else "."))
        self._keep(box).show()
        return box

    def open_data_folder(self) -> bool:
        self.paths.ensure(self.paths.data)
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.paths.data)))

    def show_diagnostics(self) -> DiagnosticsDialog:
        token = self.bot_api.token if self.bot_api is not None else None
        dialog = DiagnosticsDialog(self._diagnostics_source(), self.paths.log_file, token=token)
        self._keep(dialog).show()
        return dialog

    def _diagnostics_source(self) -> ReportSource:
        ui = {
            "state": mm.state_words(self.view.state, self.view.reason, self.view.code, self.view.stage),
            "account": self.view.account,
            "last backup": mm.format_when(self.view.last_backup) if self.view.last_backup else "none yet",
            "backups": len(self.view.backups),
            "system tray": "available" if self.tray is not None else "not available (status window)",
            "start at login": self._describe_autostart(),
            "bot API": mm.api_status_label(self.view) if self.bot_api is not None else "not available",
            "data folder": str(self.paths.data),
        }
        extra = self._diagnostics

        def report() -> str:
            text = format_report({"Linda Desktop": ui})
            if extra is None:
                return text
            more = extra() if callable(extra) else extra
            return text + "\n" + format_report(more)

        return report

    def _describe_autostart(self) -> str:
        if self.autostart is None:
            return "not available"
        try:
            return self.autostart.describe()
        except Exception as exc:  # noqa: BLE001
            return f"unknown ({exc})"

    def _keep(self, widget: QWidget) -> QWidget:
        """Keep a non-modal dialog alive until it closes."""
        self._dialogs = [d for d in self._dialogs if d.isVisible()]
        self._dialogs.append(widget)
        return widget

    def quit(self, timeout: float = 90.0) -> None:
        """Clean exit: the service backs up and closes the browser, then the app quits."""
        if self._quitting:
            return
        self._quitting = True
        self.view = dataclasses.replace(self.view, quitting=True)
        self._refresh()
        self.qr_window.hide()
        if self.bot_api is not None:
            self.bot_api.close()  # bots lose the API first; the service then backs up and stops
        self.bridge.shutdown(timeout)
        if self.tray is not None:
            self.tray.hide()
        self.status_window.hide()
        self.quitRequested.emit()  # the app object ends the event loop

    def popup_menu(self, at: QPoint) -> None:
        """Open the tray menu at ``at`` (the screenshot preview uses it)."""
        self.rebuild_menu()
        self.menu.popup(at)
