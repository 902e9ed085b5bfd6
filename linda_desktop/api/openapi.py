"""The bot API's OpenAPI 3.1 document (served at /v1/openapi.json) and a plain docs page (/docs)."""

from __future__ import annotations

import html
from typing import Any

from linda_desktop import __version__

_ERROR = {"$ref": "#/components/schemas/Error"}


def _err(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def document(port: int | None = None) -> dict[str, Any]:
    server = f"http://127.0.0.1:{port}" if port else "http://127.0.0.1:8723"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Linda Desktop bot API",
            "version": __version__,
            "description": (
                "Lets a bot on this computer use the WhatsApp session Linda Desktop keeps alive. "
                "Loopback only; every /v1 path except this document needs "
                "`Authorization: Bearer <token>` or `X-Api-Key: <token>` (the token is in Diagnostics, or "
                "`linda-desktop api token`). Errors are JSON: {error, message}. Every inbound message, "
                "ack and state change is stored first (deduplicated by WhatsApp's message id) and then "
                "delivered: messages that arrived while the app was away come once, with backfilled: true. "
                "Webhooks: each event below is also POSTed to `webhook_url` (settings), in order, at least "
                "once, across restarts, with X-Linda-Event, X-Linda-Delivery (the event id) and "
                "X-Linda-Signature: sha256=HMAC-SHA256(token, body); or, with webhook_format \"waha\", "
                "WAHA's envelope signed with X-Webhook-Hmac (HMAC-SHA512). The WAHA-compatible routes "
                "(/api/sessions, /api/{session}/auth/qr, /api/{session}/auth/request-code, /api/sendText, "
                "/api/{session}/chats, /ping, /health; one session, default) follow WAHA's own OpenAPI."),
        },
        "servers": [{"url": server}],
        "security": [{"bearer": []}, {"api_key": []}],
        "paths": {
            "/v1/status": {"get": {
                "summary": "Session state and account",
                "responses": {"200": {"description": "state", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Status"}}}},
                    "401": _err("missing or wrong token")}}},
            "/v1/qr": {"get": {
                "summary": "The QR payload while the computer waits to be linked",
                "description": "Render `qr` as a QR code and scan it with WhatsApp → Linked devices. "
                               "`qr` is null when no code is shown (e.g. connected).",
                "responses": {"200": {"description": "QR", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["state", "qr"],
                    "properties": {"state": {"type": "string"}, "qr": {"type": ["string", "null"]}}}}}},
                    "401": _err("missing or wrong token")}}},
            "/v1/messages": {"post": {
                "summary": "Send a text message",
                "description": "Answers once WhatsApp accepted the message (ack 1); ack events follow. "
                               "While not connected: 503, or 202 {queued, queue_id} with \"queue\": true "
                               "(sent in order once connected; a sent or send_failed event follows).",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/SendRequest"}}}},
                "responses": {
                    "200": {"description": "accepted by WhatsApp", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/SendResult"}}}},
                    "202": {"description": "queued until WhatsApp is connected (queue: true)"},
                    "400": _err("bad body: not JSON, unknown or missing field, bad number, empty text"),
                    "401": _err("missing or wrong token"),
                    "413": _err("body larger than 512 KiB"),
                    "415": _err("Content-Type is not application/json"),
                    "502": _err("WhatsApp refused the message (send_failed)"),
                    "503": _err("not connected / bridge not ready; retry after Retry-After seconds"),
                    "504": _err("no confirmation in time (timeout)")}}},
            "/v1/events": {"get": {
                "summary": "Server-Sent Events: incoming messages and state changes",
                "description": "text/event-stream. Each stored event has `id:` (its number in the event "
                               "log), `event:` (message, ack, state, liveness, bridge, sent, send_failed; "
                               "qr is live only, without id) and `data:` (one JSON object with event_id). "
                               "Send Last-Event-ID to get everything after it, also after the app "
                               "restarted; without it the first event is the current state. A comment "
                               "line is sent every 15 s.",
                "responses": {"200": {"description": "stream", "content": {"text/event-stream": {
                    "schema": {"$ref": "#/components/schemas/Event"}}}},
                    "401": _err("missing or wrong token"),
                    "503": _err("too many event streams")}}},
            "/v1/dead-letters/retry": {"post": {
                "summary": "Put the webhook dead letters back in the queue",
                "responses": {"200": {"description": "{requeued: n}"}, "401": _err("missing or wrong token")}}},
            "/v1/openapi.json": {"get": {"summary": "This document", "security": [],
                                          "responses": {"200": {"description": "OpenAPI 3.1"}}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "api_key": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "message"],
                          "properties": {"error": {"type": "string"}, "message": {"type": "string"}}},
                "Status": {"type": "object", "required": ["state", "connected", "ready_to_send"], "properties": {
                    "state": {"type": "string", "enum": ["starting", "restoring", "connected", "needs_link",
                                                         "logged_out", "conflict", "offline",
                                                         "browser_crashed", "error"]},
                    "reason": {"type": ["string", "null"]},
                    "account": {"type": ["string", "null"], "description": "the linked phone number"},
                    "connected": {"type": "boolean"},
                    "ready_to_send": {"type": "boolean", "description":
                                      "connected, and WhatsApp Web has loaded far enough to send"},
                    "messaging": {"type": "object", "description": "the in-page bridge (api, version, ready)"},
                    "webhook": {"type": ["object", "null"]},
                    "app_version": {"type": "string"}}},
                "SendRequest": {"type": "object", "required": ["to", "text"], "additionalProperties": False,
                                "properties": {
                                    "to": {"type": "string", "description":
                                           "phone number with country code (\"+1 555 123 4567\") or a chat "
                                           "id (\"15551234567@c.us\", \"…@g.us\", \"…@lid\")"},
                                    "text": {"type": "string", "minLength": 1, "maxLength": 65536},
                                    "queue": {"type": "boolean", "default": False,
                                              "description": "keep it until WhatsApp is connected"}}},
                "SendResult": {"type": "object", "properties": {
                    "id": {"type": ["string", "null"]}, "to": {"type": "string"},
                    "ack": {"type": ["integer", "null"]}}},
                "Event": {"oneOf": [
                    {"type": "object", "title": "message", "properties": {
                        "event": {"const": "message"}, "id": {"type": "string"},
                        "chat_id": {"type": "string"},
                        "from": {"type": ["string", "null"], "description": "sender's number when known"},
                        "sender_name": {"type": ["string", "null"]},
                        "author": {"type": ["string", "null"], "description": "group member id"},
                        "type": {"type": "string", "description": "chat for text; image, audio, …"},
                        "text": {"type": ["string", "null"]},
                        "timestamp": {"type": ["integer", "null"]}, "group": {"type": "boolean"},
                        "backfilled": {"type": "boolean", "description": "arrived while the session was away"},
                        "page_time": {"type": ["number", "null"], "description": "when the page saw it (epoch s)"},
                        "event_id": {"type": "string"}}},
                    {"type": "object", "title": "ack", "properties": {
                        "event": {"const": "ack"}, "id": {"type": "string"}, "chat_id": {"type": "string"},
                        "ack": {"type": "integer", "description": "1 sent, 2 delivered, 3 read, 4 played, -1 failed"},
                        "event_id": {"type": "string"}}},
                    {"type": "object", "title": "state", "properties": {
                        "event": {"const": "state"}, "state": {"type": "string"},
                        "reason": {"type": "string"}, "account": {"type": "string"}}},
                    {"type": "object", "title": "qr", "properties": {
                        "event": {"const": "qr"}, "data": {"type": "string"}, "idle": {"type": "boolean"}}},
                ]},
            },
        },
    }


def docs_html(port: int | None = None) -> str:
    """A readable page listing the endpoints (no scripts, no external assets)."""
    doc = document(port)
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            rows.append(f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                        f"<td>{html.escape(op.get('summary', ''))}<br><small>{html.escape(op.get('description', ''))}"
                        f"</small></td></tr>")
    return ("<!doctype html><html lang=en><meta charset=utf-8><title>Linda Desktop bot API</title>"
            "<style>body{font:15px system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
            "td{border-top:1px solid #ddd;padding:.4rem;vertical-align:top}</style>"
            f"<h1>{html.escape(doc['info']['title'])} {html.escape(doc['info']['version'])}</h1>"
            f"<p>{html.escape(doc['info']['description'])}</p><table>{''.join(rows)}</table>"
            "<p>Machine-readable: <a href=/v1/openapi.json>/v1/openapi.json</a></p></html>")
