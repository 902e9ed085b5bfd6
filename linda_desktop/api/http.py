"""A small, strict HTTP/1.1 reader and writer on asyncio streams (stdlib only).

Only what a local JSON API needs: request line, headers, a Content-Length body, keep-alive.
Everything else is refused with a status and a reason, never an exception that escapes:
header block > 16 KiB → 431, body > MAX_BODY → 413 (judged from Content-Length, before
reading), chunked bodies → 411, slow clients → the connection is dropped.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 100
MAX_BODY = 512 * 1024
HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 30.0
IDLE_TIMEOUT = 75.0
REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
           403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
           411: "Length Required", 413: "Content Too Large", 415: "Unsupported Media Type",
           421: "Misdirected Request", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
           503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported"}


class HttpError(Exception):
    """Refuse the request with ``status`` and a JSON body {"error": code, "message": message}."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.close = close


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]          # lower-case names; repeated headers joined with ", "
    body: bytes = b""
    path: str = ""
    query: dict[str, str] = field(default_factory=dict)

    @property
    def keep_alive(self) -> bool:
        conn = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn

    def json(self) -> Any:
        ctype = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise HttpError(415, "unsupported_media_type", "send the body as Content-Type: application/json")
        if not self.body:
            raise HttpError(400, "bad_json", "the body is empty; send a JSON object")
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError:
            raise HttpError(400, "bad_json", "the body is not UTF-8") from None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise HttpError(400, "bad_json", f"the body is not valid JSON: {exc.msg} at line {exc.lineno} "
                                             f"column {exc.colno}") from None
        except RecursionError:
            raise HttpError(400, "bad_json", "the body nests too deeply") from None


async def read_request(reader: asyncio.StreamReader, *, first_timeout: float = IDLE_TIMEOUT,
                       max_body: int = MAX_BODY) -> Request | None:
    """The next request on the connection; None when the client closed it cleanly."""
    try:
        head = await asyncio.wait_for(_read_head(reader), first_timeout)
    except asyncio.TimeoutError:
        return None
    if head is None:
        return None
    request = _parse_head(head)
    length_header = request.headers.get("content-length")
    if "transfer-encoding" in request.headers:
        raise HttpError(411, "length_required", "chunked bodies are not supported; send Content-Length",
                        close=True)
    if length_header is not None:
        if not length_header.isdigit():
            raise HttpError(400, "bad_request", "Content-Length is not a number", close=True)
        length = int(length_header)
        if length > max_body:
            raise HttpError(413, "body_too_large", f"the body is {length} bytes; the limit is {max_body}",
                            close=True)
        if length:
            try:
                request.body = await asyncio.wait_for(reader.readexactly(length), BODY_TIMEOUT)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError):
                raise HttpError(408, "timeout", "the body did not arrive", close=True) from None
    elif request.method in ("POST", "PUT", "PATCH"):
        raise HttpError(411, "length_required", "send Content-Length with the body", close=True)
    return request


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    """Bytes up to the blank line; None on a clean EOF before any byte."""
    first = True
    data = bytearray()
    while True:
        try:
            line = await reader.readuntil(b"\n") if not first else await _first_line(reader)
        except asyncio.LimitOverrunError:
            raise HttpError(431, "headers_too_large", "the request head is too large", close=True) from None
        except asyncio.IncompleteReadError as exc:
            if not data and not exc.partial:
                return None
            raise HttpError(400, "bad_request", "the request ended early", close=True) from None
        if line is None:
            return None
        first = False
        data += line
        if len(data) > MAX_HEADER_BYTES:
            raise HttpError(431, "headers_too_large", "the request head is too large", close=True)
        if line in (b"\r\n", b"\n"):
            return bytes(data)


async def _first_line(reader: asyncio.StreamReader) -> bytes | None:
    # Tolerate the empty lines some clients send between requests (RFC 9112 §2.2).
    for _ in range(4):
        line = await reader.readuntil(b"\n")
        if line not in (b"\r\n", b"\n"):
            return line
    raise HttpError(400, "bad_request", "empty request", close=True)


def _parse_head(head: bytes) -> Request:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # latin-1 decodes every byte; kept for clarity
        raise HttpError(400, "bad_request", "unreadable request head", close=True) from None
    lines = text.split("\n")
    parts = lines[0].strip().split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[0].isupper():
        raise HttpError(400, "bad_request", "malformed request line", close=True)
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HttpError(505, "http_version", "only HTTP/1.1 is served", close=True)
    if not target.startswith("/"):
        raise HttpError(400, "bad_request", "the request target must be a path", close=True)
    headers: dict[str, str] = {}
    count = 0
    for raw in lines[1:]:
        line = raw.rstrip("\r")
        if not line:
            break
        count += 1  # noqa: SIM113 - counts header lines, not loop turns (a blank line ends it)
        if count > MAX_HEADERS:
            raise HttpError(431, "headers_too_large", "too many headers", close=True)
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or any(c in name for c in " \t"):
            raise HttpError(400, "bad_request", "malformed header line", close=True)
        key = name.lower()
        value = value.strip()
        if key in headers:
            if key in ("content-length", "host", "authorization"):
                raise HttpError(400, "bad_request", f"repeated {name} header", close=True)
            headers[key] += ", " + value
        else:
            headers[key] = value
    url = urlsplit(target)
    query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
    return Request(method, target, version, headers, path=url.path, query=query)


def response_bytes(status: int, body: bytes, *, content_type: str = "application/json",
                   headers: dict[str, str] | None = None, close: bool = False) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}",
             f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}",
             "Cache-Control: no-store",
             "X-Content-Type-Options: nosniff",
             f"Connection: {'close' if close else 'keep-alive'}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def json_bytes(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def error_body(code: str, message: str) -> bytes:
    return json_bytes({"error": code, "message": message})
