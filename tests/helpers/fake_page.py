"""A scripted stand-in for ``browser.protocol.Page``: no browser, every decision in milliseconds.

``FakeBrowser`` is a ``PageFactory``. Each launch gets the next script (a list of
``PageSnapshot``); ``wait_for_change`` hands out the script's readings one by one, then keeps
returning the last. Every call the service makes is recorded in ``calls`` (page and factory),
so a test can assert what was launched, shown, reloaded or taken over.

``write_sound_profile`` writes a profile that ``session.profile.validate_profile`` accepts (a
real LevelDB MANIFEST record), so the service's real backup store can back it up and restore it.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linda_desktop.base.events import LinkStep, LogoutInfo, PageSnapshot, PageState


def snap(state: PageState, **kw: Any) -> PageSnapshot:
    return PageSnapshot(state, **kw)


def qr(payload: str = "2@ref,key,key,key,WEB", **kw: Any) -> PageSnapshot:
    return PageSnapshot(PageState.QR, qr=payload, **kw)


def logged_out(reason: str | None = None, code: str | None = None, payload: str = "2@out,k,k,k,WEB") -> PageSnapshot:
    return PageSnapshot(PageState.QR, qr=payload, logout=LogoutInfo(reason=reason, code=code, post_logout=True))


def connected(synced: bool = True, account: str = "15550001234") -> PageSnapshot:
    return PageSnapshot(PageState.CONNECTED, synced=synced, account=account, source="internal")


def passkey(step: LinkStep = LinkStep.PROMPT, code: str | None = None) -> PageSnapshot:
    return PageSnapshot(PageState.PASSKEY, link_step=step, verification_code=code)


@dataclass
class FakePage:
    """One fake browser on the profile, following ``script``."""

    script: list[PageSnapshot]
    headless: bool = True
    hidden_window: bool = False
    calls: list[str] = field(default_factory=list)
    pairing_code: str = "ABCD-EFGH"
    crashed: bool = False
    browser_pid: int | None = 4242
    visible: bool = False
    page: Any = None
    _at: int = 0

    async def start(self) -> None:
        self.calls.append("start")

    async def close(self, timeout: float = 15.0) -> None:
        self.calls.append("close")

    async def snapshot(self) -> PageSnapshot:
        return self.script[min(self._at, len(self.script) - 1)]

    async def wait_for_change(self, previous: PageSnapshot | None, timeout: float) -> PageSnapshot:
        await asyncio.sleep(0)
        reading = await self.snapshot()
        if self._at < len(self.script):
            self._at += 1
        elif reading == previous:
            await asyncio.sleep(min(timeout, 0.01))
        return reading

    async def reload(self) -> None:
        self.calls.append("reload")

    async def take_over(self) -> bool:
        self.calls.append("take_over")
        return True

    async def refresh_qr(self) -> bool:
        self.calls.append("refresh_qr")
        return True

    async def flush_storage(self) -> None:
        self.calls.append("flush_storage")

    async def show_window(self) -> bool:
        self.calls.append("show_window")
        self.visible = self.hidden_window
        return self.hidden_window

    async def hide_window(self) -> None:
        self.calls.append("hide_window")
        self.visible = False

    async def request_pairing_code(self, phone: str) -> str:
        self.calls.append(f"pairing_code:{phone}")
        return self.pairing_code


@dataclass
class FakeBrowser:
    """A PageFactory: launch N gets ``scripts[N]`` (the last script again once they run out)."""

    scripts: list[list[PageSnapshot]]
    pages: list[FakePage] = field(default_factory=list)
    launches: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, profile_dir: Path, url: str, executable: str, *, headless: bool,
                 hidden_window: bool) -> FakePage:
        script = self.scripts[min(len(self.pages), len(self.scripts) - 1)]
        page = FakePage(list(script), headless=headless, hidden_window=hidden_window)
        self.pages.append(page)
        self.launches.append({"headless": headless, "hidden_window": hidden_window})
        return page


# -------------------------------------------------------------------------------- profiles

def _masked_crc(data: bytes) -> int:
    from linda_desktop.session.profile import _crc32c

    crc = _crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _manifest() -> bytes:
    comparator = b"leveldb.BytewiseComparator"
    edit = bytes([1, len(comparator)]) + comparator + bytes([2, 3, 3, 4, 4, 1])  # comparator, log 3, next 4, seq 1
    record_type = 1  # FULL
    header = struct.pack("<IHB", _masked_crc(bytes([record_type]) + edit), len(edit), record_type)
    return header + edit


def _store(folder: Path, payload: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "CURRENT").write_bytes(b"MANIFEST-000002\n")
    (folder / "MANIFEST-000002").write_bytes(_manifest())
    (folder / "000003.log").write_bytes(payload)
    (folder / "LOCK").write_bytes(b"")


def write_sound_profile(profile_dir: Path, *, port: int, generation: str = "1") -> str:
    """A profile whose session parts pass ``validate_profile``; ``generation`` marks its data
    (tests tell restored generations apart by it). Returns the origin URL."""
    default = profile_dir / "Default"
    default.mkdir(parents=True, exist_ok=True)
    (profile_dir / "Local State").write_text(json.dumps({"profile": {}}))
    (default / "Preferences").write_text(json.dumps({"profile": {"exit_type": "Normal"}}))
    _store(default / "IndexedDB" / f"http_127.0.0.1_{port}.indexeddb.leveldb",
           f"generation={generation};".encode() + os.urandom(256))
    _store(default / "Local Storage" / "leveldb", b"WAWebEncKeySalt" + os.urandom(64))
    return f"http://127.0.0.1:{port}/"


def profile_generation(profile_dir: Path, *, port: int) -> str | None:
    log = profile_dir / "Default" / "IndexedDB" / f"http_127.0.0.1_{port}.indexeddb.leveldb" / "000003.log"
    try:
        head = log.read_bytes()[:64]
    except OSError:
        return None
    if not head.startswith(b"generation="):
        return None
    return head[len(b"generation="):].split(b";", 1)[0].decode()
