"""`linda-desktop api update-bridge` against a local npm-registry stand-in: a small HTTP server that
serves a package document and tarballs with their published ``dist.integrity`` (sha512). Covers
a bad hash, a good update (the previous build kept), and a build that never becomes ready
(marked bad: the previous one is used again)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from linda_desktop.api.bridge_update import BridgeUpdateError, check_integrity, update_bridge
from linda_desktop.browser import bridge_files
from linda_desktop.browser.messaging import find_wajs, version_supported


def tarball(version: str, *, name: str = "@wppconnect/wa-js") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, data in (("package/package.json", json.dumps({"name": name, "version": version}).encode()),
                           ("package/dist/wppconnect-wa.js",
                            f"/*! wppconnect-team/wa-js v{version} */\nwindow.__fake_wajs = '{version}';\n".encode())):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


class Registry:
    """``versions``: version → (tarball bytes, published integrity)."""

    def __init__(self) -> None:
        self.versions: dict[str, tuple[bytes, str]] = {}
        self.requests: list[str] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                registry.requests.append(self.path)
                if self.path.lower() == "/@wppconnect%2fwa-js":
                    doc = {"name": "@wppconnect/wa-js", "versions": {
                        v: {"version": v, "dist": {"tarball": f"{registry.url}/t/{v}.tgz", "integrity": i}}
                        for v, (_, i) in registry.versions.items()}}
                    body, ctype = json.dumps(doc).encode(), "application/json"
                elif self.path.startswith("/t/"):
                    body, ctype = registry.versions[self.path[3:-4]][0], "application/octet-stream"
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def publish(self, version: str, *, bad_hash: bool = False, name: str = "@wppconnect/wa-js") -> None:
        data = tarball(version, name=name)
        self.versions[version] = (data, integrity(data + b"x") if bad_hash else integrity(data))


@pytest.fixture
def registry() -> Iterator[Registry]:
    r = Registry()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_range_not_one_exact_build() -> None:
    assert version_supported("4.6.0") and version_supported("4.9.12")
    assert not version_supported("4.5.9") and not version_supported("5.0.0")
    assert not version_supported("4.8.4-rc.0") and not version_supported(None)


def test_a_bad_hash_installs_nothing(registry: Registry, tmp_path: Path) -> None:
    registry.publish("4.6.0")
    registry.publish("4.7.1", bad_hash=True)
    with pytest.raises(BridgeUpdateError, match="integrity"):
        update_bridge(tmp_path / "bridge", registry.url)
    assert not (tmp_path / "bridge" / "4.7.1").exists()
    assert bridge_files.read_state(tmp_path / "bridge") == {}
    with pytest.raises(BridgeUpdateError):
        check_integrity(b"abc", "sha1-AAAA")


def test_metadata_that_does_not_match_installs_nothing(registry: Registry, tmp_path: Path) -> None:
    registry.publish("4.7.1", name="@someone/else")
    with pytest.raises(BridgeUpdateError, match="metadata"):
        update_bridge(tmp_path / "bridge", registry.url)


def test_good_update_keeps_the_previous_and_the_newest_in_range_is_used(registry: Registry, tmp_path: Path) -> None:
    bridge = tmp_path / "bridge"
    registry.publish("4.7.0")
    registry.publish("5.0.1")      # outside the range: never taken
    registry.publish("4.9.0-rc.1")  # a pre-release: never taken
    assert update_bridge(bridge, registry.url) == {"version": "4.7.0", "previous": None, "installed": True}
    registry.publish("4.8.2")
    assert update_bridge(bridge, registry.url) == {"version": "4.8.2", "previous": "4.7.0", "installed": True}
    assert update_bridge(bridge, registry.url)["installed"] is False  # already current
    assert sorted(p.name for p in bridge.iterdir() if p.is_dir()) == ["4.7.0", "4.8.2"]
    found = find_wajs(bridge)
    assert found is not None and found.version == "4.8.2" and found.source == "update"
    # A third update drops the oldest: current and previous only.
    registry.publish("4.9.0")
    update_bridge(bridge, registry.url)
    assert sorted(p.name for p in bridge.iterdir() if p.is_dir()) == ["4.8.2", "4.9.0"]


def test_a_bridge_that_never_becomes_ready_is_rolled_back(registry: Registry, tmp_path: Path) -> None:
    bridge = tmp_path / "bridge"
    registry.publish("4.7.0")
    update_bridge(bridge, registry.url)
    registry.publish("4.8.0")
    update_bridge(bridge, registry.url)
    assert find_wajs(bridge).version == "4.8.0"  # type: ignore[union-attr]
    # What BotLink does when the bridge was not ready within bridge_ready_seconds:
    assert bridge_files.mark_bad(bridge, "4.8.0") is True
    assert bridge_files.mark_bad(bridge, "4.8.0") is False
    found = find_wajs(bridge)
    assert found is not None and found.version == "4.7.0" and found.source == "update"
    # Both bad: back to the build npm installed with the app (or none), never a bad one.
    bridge_files.mark_bad(bridge, "4.7.0")
    last = find_wajs(bridge)
    assert last is None or last.source == "npm"
    # A fixed re-publication of the same version becomes usable again after an update.
    registry.publish("4.9.0")
    update_bridge(bridge, registry.url)
    assert find_wajs(bridge).version == "4.9.0"  # type: ignore[union-attr]


def test_cli_update_bridge(registry: Registry, tmp_path: Path) -> None:
    import subprocess
    import sys

    registry.publish("4.7.3")
    out = subprocess.run([sys.executable, "-m", "linda_desktop", "--data-dir", str(tmp_path / "data"), "api",
                          "update-bridge", "--registry", registry.url], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "wa-js 4.7.3 installed" in out.stdout
    assert (tmp_path / "data" / "bridge" / "4.7.3" / "wppconnect-wa.js").is_file()
    bad = subprocess.run([sys.executable, "-m", "linda_desktop.api", "update-bridge", "--registry", "http://127.0.0.1:9",
                          "--data-dir", str(tmp_path / "data")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "npm registry" in bad.stderr


def test_the_bot_link_rolls_back_a_bridge_not_ready_in_time(registry: Registry, tmp_path: Path) -> None:
    """BotLink's own check (run while connected): past ``bridge_ready_seconds`` without a
    bridge_ready from the page, a build from update-bridge is marked bad and recorded."""
    import time

    from linda_desktop.base.paths import resolve_paths
    from linda_desktop.base.settings import Settings
    from linda_desktop.browser.messaging import MessageBridge
    from linda_desktop.service.session_service import SessionService

    service = SessionService(resolve_paths(tmp_path / "data"), Settings(), wa_url="http://127.0.0.1:9/",
                             browser=None, on_event=lambda event: None)
    events: list[Any] = []
    service.subscribe(events.append)
    bridge = service.bot.bridge_dir
    registry.publish("4.7.0")
    update_bridge(bridge, registry.url)
    registry.publish("4.8.0")
    update_bridge(bridge, registry.url)
    link = service.bot
    link.bridge = MessageBridge(lambda kind, data: None, find_wajs(bridge))
    assert link.bridge.wajs.version == "4.8.0"
    link._ready_deadline = time.monotonic() - 1  # the page never said bridge_ready
    link._check_bridge_ready()
    assert find_wajs(bridge).version == "4.7.0"  # type: ignore[union-attr]
    sent = [e.to_json() for e in events if getattr(e, "kind", None) == "bridge"]
    assert sent == [{"event": "bridge", "state": "not_ready", "version": "4.8.0", "rolled_back": True}]
    history = service.meta.snapshot().get("history", [])
    assert any(h.get("event") == "bridge_not_ready" and h["details"]["rolled_back"] for h in history), history
    # A bridge that did become ready is never rolled back.
    link._ready_deadline = time.monotonic() - 1
    link.ready = True
    link._check_bridge_ready()
    assert find_wajs(bridge).version == "4.7.0"  # type: ignore[union-attr]
