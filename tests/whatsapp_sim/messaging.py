"""The simulator's messaging extras for the bot API (issue 14), wired into server.py by two lines.

What the real WhatsApp does and the bridge must cope with:

* **acks**: the other party's phone receives (2) and reads (3) what the linked device sent;
  ``POST /_sim/phone/ack {id, ack}`` is that phone; the page learns it from
  ``GET /_sim/msg/poll`` and fires wa-js's ``chat.msg_ack_change``;
* **ciphertext**: ``POST /_sim/phone/message_ex {…, ciphertext: true}``: the page first adds the
  message as a ``ciphertext`` placeholder (no text), then, 300 ms later, the same id decrypted;
  ``chat.new_message`` fires for both (whatsapp-web-reference.md §5);
* **@lid senders**: ``{…, lid: "123456789012345"}`` writes from ``<lid>@lid``; WhatsApp knows the
  phone number behind it unless ``hide_phone: true`` (``GET /_sim/msg/lid?lid=``, which the
  stand-in's ``WPP.contact.getPnLidEntry`` asks);
* **a silent socket**: while the simulator is frozen (``POST /_sim/faults {frozen: true}``), a
  round trip to the server (``WPP.contact.queryExists`` → ``GET /_sim/msg/query_exists``) never
  comes back, as on a socket that stopped carrying frames; the chat list stays on screen. The
  freeze is the server's: a reloaded page (or a new browser) logs in, shows its chats and is
  silent again until it is lifted, so a reload does not cure it (the liveness escalation test).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

FROZEN_HANG_SECONDS = 30.0


class Extras:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acks: list[dict[str, Any]] = []      # {seq, id, chat_id, ack}
        self.flags: dict[str, dict[str, Any]] = {}
        self.lids: dict[str, str | None] = {}


def extras(engine: Any) -> Extras:
    found = getattr(engine, "msg_extras", None)
    if found is None:
        found = engine.msg_extras = Extras()
    return found


def handles(path: str) -> bool:
    return path.startswith("/_sim/msg/") or path in ("/_sim/phone/ack", "/_sim/phone/message_ex")


def get(engine: Any, path: str, query: dict[str, str]) -> tuple[dict[str, Any], int]:
    ex = extras(engine)
    if path == "/_sim/msg/poll":
        since = int(query.get("since", "0") or 0) if str(query.get("since", "0")).isdigit() else 0
        with ex.lock:
            acks = [a for a in ex.acks if a["seq"] > since]
        return {"acks": [] if engine.frozen else acks}, 200
    if path == "/_sim/msg/flags":
        ids = [i for i in query.get("ids", "").split(",") if i]
        with ex.lock:
            return {"flags": {i: ex.flags[i] for i in ids if i in ex.flags}}, 200
    if path == "/_sim/msg/lid":
        lid = query.get("lid", "").split("@")[0]
        with ex.lock:
            phone = ex.lids.get(lid)
        return ({"lid": f"{lid}@lid", "phoneNumber": f"{phone}@c.us"} if phone else {"lid": f"{lid}@lid"}), 200
    if path == "/_sim/msg/query_exists":
        if engine.frozen:
            deadline = time.monotonic() + FROZEN_HANG_SECONDS
            while engine.frozen and time.monotonic() < deadline:
                time.sleep(0.2)
            if engine.frozen:
                return {"error": "timeout"}, 504
        return {"exists": True, "wid": query.get("wid")}, 200
    return {"error": "not_found"}, 404


def post_routes(engine: Any, body: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    ex = extras(engine)

    def ack() -> dict[str, Any]:
        sent = {m["id"]: m for m in engine.messages_view("out")}
        msg = sent.get(str(body.get("id")))
        if msg is None:
            return {"error": "unknown_message"}
        value = int(body.get("ack", 2))
        with ex.lock:
            entry = {"seq": len(ex.acks) + 1, "id": msg["id"], "chat_id": msg["chat_id"], "ack": value}
            ex.acks.append(entry)
        return entry

    def message_ex() -> dict[str, Any]:
        lid = str(body.get("lid") or "")
        chat_id = body.get("chat_id") or (f"{lid}@lid" if lid else None)
        result = engine.phone_message(body["from"], body["text"], body.get("name"), body.get("account"), chat_id)
        with ex.lock:
            ex.flags[result["id"]] = {"ciphertext": bool(body.get("ciphertext"))}
            if lid:
                ex.lids[lid] = None if body.get("hide_phone") else str(body["from"]).lstrip("+")
        return result

    return {"/_sim/phone/ack": ack, "/_sim/phone/message_ex": message_ex}
