"""The catch-all: any event without a handler gets an ``invalid`` ack (the connection stays up)."""

from __future__ import annotations

from typing import Any

import socketio

from api.socket.acks import Ack, AckError
from api.socket.events import EventContext, EventRunner


def register(sio: socketio.AsyncServer, runner: EventRunner) -> None:
    async def refuse(ctx: EventContext, raw: dict[str, Any]) -> dict[str, Any]:
        raise AckError("invalid", "unknown event")

    async def catch_all(event: Any, sid: str, *args: Any) -> Ack:
        name = event if isinstance(event, str) else repr(event)
        return await runner.run(name[:200], sid, args, refuse, kind="unknown")

    sio.on("*", catch_all)
