"""Logging set-up: one rotating file, one line per event with a timestamp.

A redaction filter keeps QR payloads, keys and tokens out of the file even if a caller slips;
paths and ordinary words stay readable. Message text is never passed to the log at all.

When the log file cannot be written (read-only data folder, full disk) logging falls back to
stderr (warnings and errors) instead of printing "Logging error" tracebacks, and the file is
tried again every few seconds.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
import time
from itertools import pairwise
from pathlib import Path

from linda_desktop.base.paths import AppPaths

# A WhatsApp QR payload: "2@<ref>,<b64>,<b64>,<b64>[,<platform>]".
_QR_PAYLOAD = re.compile(r"\b\d@[A-Za-z0-9+/=_\-]{6,}(?:,[A-Za-z0-9+/=_\-]+){2,}")
# Candidates for a secret: long runs of base64 / URL-safe characters (a 32-byte key is 43-44).
_CANDIDATE = re.compile(r"[A-Za-z0-9+/=_\-]{32,}")
_MIN_SECRET = 32
_ALWAYS_SECRET = 44  # a run this long with no "/" is redacted whatever it looks like (base64 of 32 bytes)
# Random text switches between upper case, lower case and digits at about 6 of 10 characters;
# words, dates and paths do so rarely. Above this share a run counts as a secret.
_RANDOM_SWITCHES = 0.25
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
FALLBACK_LEVEL = logging.WARNING
RETRY_SECONDS = 5.0


def _looks_random(run: str, minimum: int = _MIN_SECRET - 4) -> bool:
    classes = ["u" if c.isupper() else "l" if c.islower() else "d" for c in run if c.isascii() and c.isalnum()]
    if len(classes) < max(minimum, 2):
        return False
    switches = sum(a != b for a, b in pairwise(classes))
    return switches / (len(classes) - 1) >= _RANDOM_SWITCHES


def _redact_run(match: re.Match[str]) -> str:
    run = match.group(0)
    if "/" not in run:
        return "<redacted>" if len(run) >= _ALWAYS_SECRET or _looks_random(run) else run
    # A path: its secret segments go (…/token/<secret>/…), and random-looking pieces beside them;
    # what is left must read like words, or the whole run goes (a base64 key holds "/" too).
    parts = run.split("/")
    secret = [len(p) >= _MIN_SECRET and _looks_random(p) for p in parts]
    for i, part in enumerate(parts):
        beside = (i > 0 and secret[i - 1]) or (i + 1 < len(parts) and secret[i + 1])
        if not secret[i] and beside and _looks_random(part, 8):
            secret[i] = True
    rest = "/".join(p for p, s in zip(parts, secret, strict=True) if not s)
    if _looks_random(rest):
        return "<redacted>"
    return "/".join("<redacted>" if s else p for p, s in zip(parts, secret, strict=True))


def redact(text: str) -> str:
    text = _QR_PAYLOAD.sub("<qr payload>", text)
    return _CANDIDATE.sub(_redact_run, text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


class FallbackFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file that, when a write fails with an OSError, hands records to
    ``fallback`` (stderr) and tries the file again after ``RETRY_SECONDS``."""

    def __init__(self, path: Path, fallback: logging.Handler, **kwargs: object) -> None:
        super().__init__(path, delay=True, **kwargs)  # type: ignore[arg-type]
        self.fallback = fallback
        self.failed_at: float | None = None
        self.failure: OSError | None = None
        self._failed_now = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.failed_at is not None and time.monotonic() - self.failed_at < RETRY_SECONDS:
            self._to_fallback(record)
            return
        self._failed_now = False
        super().emit(record)
        if not self._failed_now and self.failed_at is not None:
            self.failed_at, self.failure = None, None

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handleError(record)
            return
        self._failed_now = True
        first = self.failed_at is None
        self.failed_at, self.failure = time.monotonic(), exc
        stream, self.stream = self.stream, None
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass
        if first:
            notice = logging.makeLogRecord({
                "name": __name__, "levelno": logging.WARNING, "levelname": "WARNING",
                "msg": "the log file %s cannot be written (%s); logging to stderr until it can",
                "args": (self.baseFilename, exc.strerror or exc)})
            self._to_fallback(notice)
        self._to_fallback(record)

    def _to_fallback(self, record: logging.LogRecord) -> None:
        if record.levelno >= self.fallback.level:
            self.fallback.handle(record)


class _Below(logging.Filter):
    """Lets through records below ``level`` (the console already shows the rest)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


def _stderr_handler(level: int) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("linda-desktop: %(levelname)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    handler._linda = True  # type: ignore[attr-defined]
    return handler


# Why the log file could not be opened at start (None when it could): `doctor` reports it.
log_file_error: OSError | None = None


def setup_logging(paths: AppPaths, *, verbose: bool = False, stderr: bool = True,
                  fallback_level: int = FALLBACK_LEVEL) -> Path | None:
    """Log to ``paths.log_file`` (rotating, 1 MiB x 5) and, for errors, to stderr (every
    failure a command reports also reaches stderr as its one-line reason).

    Returns the log file, or None when it cannot be written: logging then goes to stderr from
    ``fallback_level`` up (one-shot commands pass ERROR, so that a failure stays one line);
    ``log_file_error`` says why."""
    global log_file_error
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_linda", False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    console_level = logging.DEBUG if verbose else logging.ERROR
    fallback = _stderr_handler(min(console_level, fallback_level))
    if stderr:
        fallback.addFilter(_Below(console_level))
    log_file: Path | None = paths.log_file
    try:
        paths.ensure(paths.logs)
        with open(paths.log_file, "a", encoding="utf-8"):
            pass
        log_file_error = None
    except OSError as exc:
        log_file_error, log_file = exc, None
    if log_file is not None:
        file_handler: logging.Handler = FallbackFileHandler(
            paths.log_file, fallback, maxBytes=1_000_000, backupCount=5, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
        file_handler.addFilter(RedactingFilter())
        file_handler._linda = True  # type: ignore[attr-defined]
        root.addHandler(file_handler)
        try:
            paths.log_file.chmod(0o600)
        except OSError:
            pass
    else:
        fallback._linda = True  # type: ignore[attr-defined]
        root.addHandler(fallback)
    if stderr:
        root.addHandler(_stderr_handler(console_level))
    for noisy in ("asyncio", "urllib3", "keyring"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return log_file


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
