"""The catch-all: any event without a handler gets an ``invalid`` ack (the connection stays up)."""

from __future__ import annotations

from typing import Any

import socketio

from api.socket.acks import Ack, AckError
from api.socket.events import EventContext, EventRunner


def register(sio: socketio.AsyncServer, runner: EventRunner) -> None:
    async def refuse(ctx: EventContext, raw: dict[str, Any]) -> dict[str, Any]:
        raise AckError("invalid", "unknown event")

    async def catch_all(*args: Any) -> Ack:
        # Called as (event, sid, *data); but an event literally named "*" arrives as (sid, *data).
        if len(args) >= 2 and isinstance(args[1], str) and sio.manager.is_connected(args[1], "/"):
            event, sid, data = args[0], args[1], args[2:]
        else:
            event, sid, data = "*", args[0], args[1:]
        name = event if isinstance(event, str) else repr(event)
        return await runner.run(name[:200], sid, data, refuse, kind="unknown")

    sio.on("*", catch_all)
