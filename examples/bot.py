#!/usr/bin/env python3
"""Auto-reply bot for Linda Desktop's local bot API. Python 3.9+, standard library only.

    export LINDA_API_TOKEN="$(python -m linda_desktop.api token)"   # or copy it from Diagnostics
    python examples/bot.py --reply 'Thanks! We got: "{text}"'

It listens to GET /v1/events (Server-Sent Events) and answers every incoming text message with
POST /v1/messages. When Linda Desktop restarts, the stream drops: the bot reconnects by itself
(with back-off) and goes on; no new QR code, no new token.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Iterator


class Linda:
    """A tiny client: ``events()`` yields event dicts forever, ``send(to, text)`` sends."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.last_event_id: str | None = None
        # No proxies: the API is on this computer.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def send(self, to: str, text: str, attempts: int = 5) -> dict[str, Any]:
        body = json.dumps({"to": to, "text": text}).encode()
        for attempt in range(attempts):
            request = urllib.request.Request(f"{self.url}/v1/messages", data=body, method="POST",
                                             headers={**self.headers, "Content-Type": "application/json"})
            try:
                with self.opener.open(request, timeout=60) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as err:
                if err.code != 503 or attempt == attempts - 1:  # 503: not connected yet, retry
                    raise
                time.sleep(float(err.headers.get("Retry-After") or 2))
            except OSError:
                if attempt == attempts - 1:
                    raise
                time.sleep(1)
        raise RuntimeError("unreachable")

    def events(self) -> Iterator[dict[str, Any]]:
        delay = 0.5
        while True:
            headers = dict(self.headers)
            if self.last_event_id:
                headers["Last-Event-ID"] = self.last_event_id
            request = urllib.request.Request(f"{self.url}/v1/events", headers=headers)
            try:
                with self.opener.open(request, timeout=60) as stream:
                    delay = 0.5
                    print("bot: connected to the event stream", flush=True)
                    yield from self._read(stream)
            except urllib.error.HTTPError as err:
                if err.code == 401:
                    raise SystemExit("bot: the API refused the token (401); check LINDA_API_TOKEN")
                print(f"bot: event stream answered HTTP {err.code}; retrying", flush=True)
            except OSError:  # the app is restarting, or not started yet
                pass
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _read(self, stream: Any) -> Iterator[dict[str, Any]]:
        event_id, data = None, []
        for raw in stream:
            line = raw.decode("utf-8").rstrip("\r\n")
            if not line:  # end of one event
                if data:
                    if event_id:
                        self.last_event_id = event_id
                    yield json.loads("\n".join(data))
                event_id, data = None, []
            elif line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())


def main() -> int:
    parser = argparse.ArgumentParser(description="Auto-reply to WhatsApp messages through Linda Desktop.")
    parser.add_argument("--url", default=os.environ.get("LINDA_API_URL", "http://127.0.0.1:8723"))
    parser.add_argument("--reply", default='Thanks for your message! We got: "{text}"',
                        help="reply text; {text} and {name} are filled in")
    args = parser.parse_args()
    token = os.environ.get("LINDA_API_TOKEN")
    if not token:
        print("bot: set LINDA_API_TOKEN (python -m linda_desktop.api token)", file=sys.stderr)
        return 2
    linda = Linda(args.url, token)
    answered: collections.OrderedDict[str, None] = collections.OrderedDict()
    for event in linda.events():
        if event.get("event") == "state":
            print(f"bot: WhatsApp is {event.get('state')}", flush=True)
            continue
        if event.get("event") != "message" or event.get("type") != "chat" or event.get("group"):
            continue
        if event["id"] in answered:  # a message delivered twice is answered once
            continue
        answered[event["id"]] = None
        while len(answered) > 1000:
            answered.popitem(last=False)
        reply = args.reply.format(text=event.get("text") or "", name=event.get("sender_name") or "")
        try:
            result = linda.send(event["chat_id"], reply)
            print(f"bot: replied to {event['id']} with {result.get('id')}", flush=True)
        except (urllib.error.URLError, OSError) as err:
            print(f"bot: could not reply to {event['id']}: {err}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
