"""A local download mirror for Playwright's real browser installer.

The build machines cannot reach Playwright's CDN. Playwright's installer has a documented
switch for company mirrors, ``PLAYWRIGHT_DOWNLOAD_HOST``: pointed at this server, the *real*
installer (``node cli.js install --no-shell chromium``) downloads, prints its real progress,
unpacks, writes its completion marker and exits as it would from the CDN. Only the archive
is ours: a ``chrome-linux64/chrome`` that runs the machine's real Chromium, plus padding so the
progress bar moves. ``delay`` slows every chunk (for cancel tests).
"""

from __future__ import annotations

import io
import os
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHROMIUM = os.environ.get("LINDA_BROWSER", "/usr/bin/chromium")


def _exec_entry(zf: zipfile.ZipFile, name: str, data: str) -> None:
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
    info.external_attr = 0o100755 << 16
    zf.writestr(info, data)


def chromium_zip(folder: str, padding: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        _exec_entry(zf, f"{folder}/chrome", f'#!/bin/sh\nexec "{CHROMIUM}" "$@"\n')
        zf.writestr(f"{folder}/padding.bin", os.urandom(padding))
    return buf.getvalue()


def ffmpeg_zip(name: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        _exec_entry(zf, name, "#!/bin/sh\nexit 0\n")
    return buf.getvalue()


class PlaywrightMirror:
    """``with PlaywrightMirror() as m: env["PLAYWRIGHT_DOWNLOAD_HOST"] = m.url``."""

    def __init__(self, *, padding: int = 3_000_000, delay: float = 0.0, port: int = 0) -> None:
        self.padding = padding
        self.delay = delay
        self.requests: list[str] = []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mirror.requests.append(self.path)
                name = self.path.rsplit("/", 1)[-1]
                if self.path.startswith("/missing/"):  # PLAYWRIGHT_DOWNLOAD_HOST=<url>/missing: HTTP 404
                    self.send_error(404)
                    return
                if name.startswith("chrome-linux") and name.endswith(".zip"):
                    body = chromium_zip(name[:-4], mirror.padding)
                elif name.startswith("ffmpeg-") and name.endswith(".zip"):
                    body = ffmpeg_zip(name[:-4])
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                step = 64 * 1024
                try:
                    for start in range(0, len(body), step):
                        self.wfile.write(body[start:start + step])
                        if mirror.delay:
                            time.sleep(mirror.delay)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> PlaywrightMirror:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port_url() -> str:
    """An address where nothing listens: what "offline" looks like to the installer."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def has_browser_dir(root: Path) -> bool:
    return any(p.name.startswith("chromium-") for p in root.iterdir()) if root.is_dir() else False
