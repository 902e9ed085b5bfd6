"""Show the real tray UI fed with fixed events, without a browser (README screenshots, demos).

    python -m tests.screenshots.preview qr          # the QR window with a code
    python -m tests.screenshots.preview expired     # … the code expired
    python -m tests.screenshots.preview passkey     # … the passkey step: press Continue in the WhatsApp window
    python -m tests.screenshots.preview passkey-wait  # … waiting for the phone
    python -m tests.screenshots.preview passkey-code  # … confirm the same code in the browser and on the phone
    python -m tests.screenshots.preview link-expired  # … a step timed out or was cancelled: scan a new code
    python -m tests.screenshots.preview phone       # … "Link with phone number instead": the number
    python -m tests.screenshots.preview pairing-code  # … the pairing code to type on the phone
    python -m tests.screenshots.preview restoring   # … restoring from a backup
    python -m tests.screenshots.preview menu        # connected, with backups: the tray menu
    python -m tests.screenshots.preview status      # the status window (as without a tray)
    python -m tests.screenshots.preview diagnostics | about

Everything shown is the real UI (bridge, tray controller, windows); only the service is replaced
by ``ScriptedService``, which plays a fixed list of events. Prints one JSON line
``{"ready": true, "tray": [x, y, w, h] | null, ...}`` once the scene is up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import string
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from typing import Any

from PySide6.QtCore import QPoint, QTimer

from linda_desktop.base.events import BackupMade, Event, PairingCode, QrCode, SessionState, StateChanged, StateCode
from linda_desktop.base.paths import resolve_paths

LINK_SCENES = ("qr", "expired", "passkey", "passkey-wait", "passkey-code", "link-expired", "phone", "pairing-code",
               "restoring")
SCENES = (*LINK_SCENES, "menu", "status", "diagnostics", "about")
SAMPLE_PHONE = "31612345678"


def sample_payload(seed: int = 7) -> str:
    """A payload shaped like WhatsApp's (ref,publicKey,identityKey,advSecret) — not a real one."""
    rnd = random.Random(seed)
    b64 = string.ascii_letters + string.digits + "+/"

    def part(n: int) -> str:
        return "".join(rnd.choice(b64) for _ in range(n))

    return f"2@{part(88)},{part(43)}=,{part(43)}=,{part(43)}=,1"


def sample_backups(now: datetime) -> list[dict[str, Any]]:
    stamps = [now - timedelta(minutes=18), now - timedelta(hours=6, minutes=3),
              now - timedelta(hours=12, minutes=11), now - timedelta(days=1, hours=2),
              now - timedelta(days=2, hours=5)]
    return [{"id": f"backup-{i}", "created_at": t.isoformat(), "known_good": i == 1}
            for i, t in enumerate(stamps)]


class ScriptedService:
    """Service-shaped stand-in for previews only: plays ``events`` and answers commands."""

    def __init__(self, on_event, events: list[Event], backups: list[dict[str, Any]]) -> None:
        self.on_event = on_event
        self.events = events
        self.backups = backups
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    async def run(self) -> None:
        self._stop = asyncio.Event()
        for event in self.events:
            self.on_event(event)
            await asyncio.sleep(0.05)
        await self._stop.wait()

    def request_stop(self) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)

    def list_backups(self) -> list[dict[str, Any]]:
        return list(self.backups)

    async def backup_now(self) -> dict[str, Any]:
        await asyncio.sleep(1.0)
        self.on_event(BackupMade(id="backup-new", size=2_400_000, seconds=1.0, reason="manual"))
        return {"id": "backup-new"}

    async def restore(self, backup_id: str | None = None) -> dict[str, Any]:
        await asyncio.sleep(1.0)
        return {"id": backup_id}

    async def relink(self) -> None:
        self.on_event(StateChanged(SessionState.NEEDS_LINK))
        await asyncio.sleep(0.8)
        self.on_event(QrCode(sample_payload(11)))

    async def show_new_qr(self) -> None:
        await asyncio.sleep(0.8)
        self.on_event(QrCode(sample_payload(13)))

    async def finish_link(self) -> None:
        await asyncio.sleep(0.5)

    async def request_pairing_code(self, phone: str) -> str:
        await asyncio.sleep(0.8)
        self.on_event(StateChanged(SessionState.NEEDS_LINK, code=StateCode.PAIRING_CODE))
        self.on_event(PairingCode("K7QM-2XWP", phone=phone))
        return "K7QM-2XWP"


def scene_events(scene: str) -> list[Event]:
    link = [StateChanged(SessionState.STARTING), StateChanged(SessionState.NEEDS_LINK),
            QrCode(sample_payload())]
    if scene == "qr":
        return link
    if scene == "expired":
        return [*link, QrCode(sample_payload(), idle=True)]
    stages = {"passkey": {"stage": "prompt"}, "passkey-wait": {"stage": "waiting_for_phone"},
              "passkey-code": {"stage": "code_matching", "verification_code": "5HJX-8QRT"}}
    if scene in stages:
        return [*link, StateChanged(SessionState.NEEDS_LINK, code=StateCode.PASSKEY, step="passkey",
                                    details=stages[scene])]
    if scene == "link-expired":
        return [*link,
                StateChanged(SessionState.NEEDS_LINK, code=StateCode.PASSKEY, step="passkey",
                             details={"stage": "prompt"}),
                StateChanged(SessionState.NEEDS_LINK, code=StateCode.LINK_EXPIRED),
                QrCode(sample_payload(21))]
    if scene in ("phone", "pairing-code"):
        return link
    if scene == "restoring":
        return [StateChanged(SessionState.STARTING), StateChanged(SessionState.RESTORING)]
    return [StateChanged(SessionState.STARTING),
            StateChanged(SessionState.CONNECTED, account="+31 6 1234 5678")]


class _PreviewAutostart:
    """Start at login shown as on; toggling only changes this object (a preview must not
    write the machine's autostart entry)."""

    enabled = True

    def enable(self) -> None:
        self.enabled = True

    def disable(self) -> None:
        self.enabled = False

    def is_enabled(self) -> bool:
        return self.enabled

    def describe(self) -> str:
        return "preview (not written)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.screenshots.preview")
    parser.add_argument("scene", choices=SCENES)
    parser.add_argument("--popup", action="store_true", help="menu: open the menu by itself")
    parser.add_argument("--seconds", type=float, default=0, help="quit after this long (0: never)")
    args = parser.parse_args(argv)

    from linda_desktop.ui.bot_api import BotApi
    from linda_desktop.ui.main import TrayApp

    data = tempfile.mkdtemp(prefix="linda-preview-")
    paths = resolve_paths(data)
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    backups = sample_backups(now)
    events = scene_events(args.scene)
    tray_available = False if args.scene == "status" else None
    app = TrayApp(lambda on_event: ScriptedService(on_event, events, backups), paths=paths,
                  background=True, autostart=_PreviewAutostart(), tray_available=tray_available,
                  diagnostics=lambda: {"browser": "/usr/bin/chromium (found)",
                                       "keyring": "SecretService (unlocked)",
                                       "backups": f"{len(backups)} (newest 18 minutes ago)",
                                       "log file": str(paths.log_file)},
                  confirm=lambda *_: True, bot_api=BotApi(paths))  # off: its settings are new
    controller = app.controller
    controller.notifier.enabled = False  # no balloons over the screenshots

    def stage() -> None:
        if args.scene in LINK_SCENES:
            app.qr_window.bring_forward()
            if args.scene in ("phone", "pairing-code"):
                app.qr_window.switch_button.click()  # "Link with phone number instead"
                app.qr_window.phone_edit.setText("+31 6 1234 5678")
            if args.scene == "pairing-code":
                app.qr_window.get_code_button.click()
        elif args.scene == "status":
            app.status_window.bring_forward()
        elif args.scene == "diagnostics":
            controller.show_diagnostics()
        elif args.scene == "about":
            controller.trigger("about")
        elif args.scene == "menu" and args.popup:
            geo = controller.tray.geometry() if controller.tray else None
            at = QPoint(geo.x(), geo.y() + geo.height()) if geo and geo.isValid() else QPoint(600, 30)
            controller.popup_menu(at)
        QTimer.singleShot(400, report)

    def report() -> None:
        geo = controller.tray.geometry() if controller.tray else None
        print(json.dumps({"ready": True, "scene": args.scene,
                          "tray": [geo.x(), geo.y(), geo.width(), geo.height()] if geo else None}),
              flush=True)

    QTimer.singleShot(600, stage)
    if args.seconds:
        QTimer.singleShot(int(args.seconds * 1000), controller.quit)
    return app.exec()  # starts the service and the tray; SIGTERM/SIGINT quit cleanly


if __name__ == "__main__":
    sys.exit(main())
