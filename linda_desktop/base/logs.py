"""Logging set-up: one rotating file, one line per event with a timestamp.

A redaction filter keeps QR payloads and key material out of the file even if a caller slips.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
from pathlib import Path

from linda_desktop.base.paths import AppPaths

# A WhatsApp QR payload: "2@<ref>,<b64>,<b64>,<b64>[,<platform>]"; also long base64 runs.
_QR_PAYLOAD = re.compile(r"\b\d@[A-Za-z0-9+/=_\-]{6,}(?:,[A-Za-z0-9+/=_\-]+){2,}")
_LONG_SECRET = re.compile(r"[A-Za-z0-9+/=_\-]{44,}")
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def redact(text: str) -> str:
    text = _QR_PAYLOAD.sub("<qr payload>", text)
    return _LONG_SECRET.sub("<redacted>", text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def setup_logging(paths: AppPaths, *, verbose: bool = False, stderr: bool = True) -> Path:
    """Log to ``paths.log_file`` (rotating, 1 MiB x 5) and, for errors, to stderr (every
    failure a command reports also reaches stderr as its one-line reason)."""
    paths.ensure(paths.logs)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_linda", False):
            root.removeHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    file_handler = logging.handlers.RotatingFileHandler(
        paths.log_file, maxBytes=1_000_000, backupCount=5, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    file_handler.addFilter(RedactingFilter())
    file_handler._linda = True  # type: ignore[attr-defined]
    root.addHandler(file_handler)
    try:
        paths.log_file.chmod(0o600)
    except OSError:
        pass
    if stderr:
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(logging.DEBUG if verbose else logging.ERROR)
        console.setFormatter(logging.Formatter("linda-desktop: %(levelname)s: %(message)s"))
        console.addFilter(RedactingFilter())
        console._linda = True  # type: ignore[attr-defined]
        root.addHandler(console)
    for noisy in ("asyncio", "urllib3", "keyring"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return paths.log_file


def clear_logs(paths: AppPaths) -> int:
    """Delete rotated log files and empty the current one. Returns how many files were touched."""
    count = 0
    if not paths.logs.exists():
        return 0
    for path in paths.logs.glob("linda-desktop.log*"):
        if path == paths.log_file:
            path.write_text("", encoding="utf-8")
        else:
            path.unlink(missing_ok=True)
        count += 1
    return count
