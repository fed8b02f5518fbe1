"""A bare python-socketio ASGI server that acks ``message:send`` at once and pushes it to the partner.

The limit of the client code and of Socket.IO over loopback on this machine, with no platform
behind it: the same client, the same N x W window, a handler that does nothing else.

    python -m uvicorn bench.load.echo:app --host 127.0.0.1 --port P --ws wsproto

A client connects with ``auth={"token": NAME}`` and joins the room NAME; ``conversation:create``
answers with a conversation id naming both users; ``message:send`` emits ``message:new`` to the
room of the other user of that conversation, then acks.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import socketio

sio = socketio.AsyncServer(async_mode="asgi", logger=False, engineio_logger=False)
app = socketio.ASGIApp(sio, socketio_path="socket.io")
_seq = itertools.count(1)
SEPARATOR = "~"


async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
    name = auth.get("token") if isinstance(auth, dict) else None
    if not isinstance(name, str) or not name:
        return False
    await sio.save_session(sid, {"name": name})
    await sio.enter_room(sid, name)
    return True


async def _name(sid: str) -> str:
    session = await sio.get_session(sid)
    return str(session["name"])


async def conversation_create(sid: str, data: Any) -> dict[str, Any]:
    me = await _name(sid)
    partner = str(data["participant_ids"][0])
    return {"ok": True, "data": {"conversation_id": f"{me}{SEPARATOR}{partner}", "version": 1}}


async def message_send(sid: str, data: Any) -> dict[str, Any]:
    me = await _name(sid)
    conversation_id = str(data["conversation_id"])
    a, _, b = conversation_id.partition(SEPARATOR)
    partner = b if a == me else a
    seq = next(_seq)
    message_id = f"m{seq}"
    sent_at = time.time()
    await sio.emit(
        "message:new",
        {
            "conversation_id": conversation_id,
            "message_id": message_id,
            "seq": seq,
            "sender_id": me,
            "body": data.get("body"),
            "sent_at": sent_at,
        },
        room=partner,
    )
    return {"ok": True, "data": {"message_id": message_id, "seq": seq, "sent_at": sent_at, "version": seq}}


sio.on("connect", connect)
sio.on("conversation:create", conversation_create)
sio.on("message:send", message_send)
