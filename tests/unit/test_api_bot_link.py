"""service/bot_link.py with a real (not running) SessionService: channel filtering, the healer hook
the service uses for "connected but dead", and the episode record. The browser side of the
bot link is covered in tests/integration/test_api_bridge.py and the e2e suites."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from linda_desktop.base.paths import resolve_paths
from linda_desktop.base.settings import Settings
from linda_desktop.service.bot_link import BotEvent, LivenessEpisode
from linda_desktop.service.session_service import SessionService


def make(tmp_path: Path, **settings: Any) -> tuple[SessionService, list[Any]]:
    service = SessionService(resolve_paths(tmp_path / "data"), Settings(**settings), wa_url="http://127.0.0.1:9/",
                             browser=None, on_event=lambda event: None)
    events: list[Any] = []
    service.subscribe(events.append)
    return service, events


def message(chat: str) -> dict[str, Any]:
    return {"id": f"false_{chat}_1", "chat_id": chat, "text": "x", "from_me": False}


def test_channels_are_left_out_unless_asked(tmp_path: Path) -> None:
    service, events = make(tmp_path)
    service.bot._on_page("message", message("120363000000000001@newsletter"))
    service.bot._on_page("message", message("15557654321@c.us"))
    assert [e.data["chat_id"] for e in events if isinstance(e, BotEvent)] == ["15557654321@c.us"]
    service.settings.bot_channels = True
    service.bot._on_page("message", message("120363000000000001@newsletter"))
    assert [e.data["chat_id"] for e in events if isinstance(e, BotEvent)][-1].endswith("@newsletter")


def test_a_healer_set_by_the_service_gets_each_episode_and_it_is_recorded(tmp_path: Path) -> None:
    service, events = make(tmp_path)
    seen: list[LivenessEpisode] = []

    async def healer(episode: LivenessEpisode) -> None:
        seen.append(episode)

    service.bot.healer = healer
    asyncio.run(service.bot._heal(LivenessEpisode("silent", "no frames or events for 130 s", 0.0)))
    assert [(e.why, e.action) for e in seen] == [("silent", "reported")]
    live = [e.to_json() for e in events if isinstance(e, BotEvent) and e.kind == "liveness"]
    assert live and live[0]["why"] == "silent" and live[0]["action"] == "reported"
    history = service.meta.snapshot().get("history", [])
    assert any(h.get("event") == "liveness" and h["details"]["why"] == "silent" for h in history), history
    assert service.bot.status()["liveness_episodes"][-1]["why"] == "silent"
