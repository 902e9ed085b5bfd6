"""WAHA's dialect (https://waha.devlike.pro): one session named ``default``.

Shapes follow WAHA's published OpenAPI (schemas SessionInfo, WAMessage, WAMessageAckBody,
WASessionStatusBody, WAHAWebhook*), for the subset Linda serves. WAHA runs wa-js itself (its
WPP engine), so its message fields are what wa-js gives us. Webhooks are signed the WAHA way:
``X-Webhook-Hmac`` = hex HMAC-SHA512 of the body, ``X-Webhook-Hmac-Algorithm: sha512``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from linda_desktop import __version__

SESSION = "default"
ENGINE = "WPP"
ACK_NAMES = {-1: "ERROR", 0: "PENDING", 1: "SERVER", 2: "DEVICE", 3: "READ", 4: "PLAYED"}
_STATUS = {"starting": "STARTING", "restoring": "STARTING", "connected": "WORKING", "needs_link": "SCAN_QR_CODE",
           "logged_out": "SCAN_QR_CODE", "offline": "STARTING", "browser_crashed": "STARTING",
           "conflict": "FAILED", "error": "FAILED", "stopped": "STOPPED"}


def session_status(state: str) -> str:
    """Linda's SessionState value → WAHA's STOPPED/STARTING/SCAN_QR_CODE/WORKING/FAILED."""
    return _STATUS.get(state, "FAILED")


def account_wid(account: str | None) -> str | None:
    digits = "".join(ch for ch in str(account or "") if ch.isdigit())
    return f"{digits}@c.us" if digits else None


def me_info(account: str | None) -> dict[str, Any] | None:
    wid = account_wid(account)
    return {"id": wid, "pushName": ""} if wid else None


def environment() -> dict[str, Any]:
    import platform

    return {"version": f"linda-desktop/{__version__}", "engine": ENGINE, "tier": "CORE", "browser": "chromium",
            "platform": f"{platform.system().lower()}/{platform.machine()}", "worker": {"id": "linda-desktop"}}


def session_info(state: str, account: str | None, activity: float | None = None) -> dict[str, Any]:
    return {"name": SESSION, "status": session_status(state), "me": me_info(account) if state == "connected" else None,
            "presence": {}, "timestamps": {"activity": int((activity or time.time()) * 1000)},
            "config": {"webhooks": []}, "engine": {"engine": ENGINE}}


def message(payload: dict[str, Any], account: str | None) -> dict[str, Any]:
    """A stored message event (browser/messaging._clean shape) → WAHA's WAMessage."""
    me = account_wid(account)
    from_me = bool(payload.get("from_me"))
    chat = payload.get("chat_pn") or payload.get("chat_id")
    sender = payload.get("author") or payload.get("from_id") or chat
    ack = payload.get("ack")
    ack = ack if isinstance(ack, int) else (1 if from_me else 0)
    return {
        "id": payload.get("id"),
        "timestamp": payload.get("timestamp") or int(time.time()),
        "from": me if from_me else chat,
        "fromMe": from_me,
        "source": "api" if from_me and payload.get("via_api") else "app",
        "to": chat if from_me else me,
        "participant": payload.get("author") if payload.get("group") else sender,
        "body": payload.get("text") or "",
        "hasMedia": payload.get("type") not in (None, "chat"),
        "media": None,
        "mediaUrl": "",                 # required string in WAHA's schema; no media here
        "ack": ack,
        "ackName": ACK_NAMES.get(ack, "UNKNOWN"),
        "author": payload.get("author"),
        "location": None,
        "vCards": [],
        "replyTo": None,
        "backfilled": bool(payload.get("backfilled")),
        "_data": {"type": payload.get("type"), "notifyName": payload.get("sender_name"),
                  "pageTime": payload.get("page_time"),
                  "chatId": payload.get("chat_id"), "isGroupMsg": bool(payload.get("group"))},
    }


def ack(payload: dict[str, Any], account: str | None) -> dict[str, Any]:
    me = account_wid(account)
    value = int(payload.get("ack") or 0)
    chat = payload.get("chat_id")
    return {"id": payload.get("id"), "from": me, "to": chat, "participant": chat, "fromMe": True,
            "ack": value, "ackName": ACK_NAMES.get(value, "UNKNOWN"), "_data": {}}


def envelope(event_id: str, created: float, event: str, payload: dict[str, Any],
             account: str | None) -> dict[str, Any]:
    """WAHA's webhook body: {id, timestamp (ms), event, session, payload, me, engine, environment}."""
    return {"id": event_id, "timestamp": int(created * 1000), "event": event, "session": SESSION,
            "metadata": {}, "me": me_info(account), "payload": payload, "engine": ENGINE,
            "environment": environment()}


def sign(key: str, body: bytes) -> dict[str, str]:
    return {"X-Webhook-Hmac": hmac.new(key.encode("utf-8"), body, hashlib.sha512).hexdigest(),
            "X-Webhook-Hmac-Algorithm": "sha512"}


def error(status: int, message: str) -> dict[str, Any]:
    """NestJS's error body, as WAHA answers."""
    names = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 422: "Unprocessable Entity",
             501: "Not Implemented", 503: "Service Unavailable"}
    return {"statusCode": status, "message": message, "error": names.get(status, "Error")}
