"""Connect (token check, session, personal room) and disconnect."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import socketio
from pymongo.errors import PyMongoError

from api.http.correlation import correlation_id_or_new
from api.services import GatewayServices
from api.socket.acks import Ack, error_ack
from api.socket.rooms import user_room
from infra.security.tokens import InvalidToken

log = logging.getLogger("parley.gateway.socket")

NAMESPACE = "/"
UNAUTHORIZED = "unauthorized"
UNAVAILABLE = "unavailable"


def register(sio: socketio.AsyncServer, services: GatewayServices) -> None:
    def reserved_event(sid: str, payload: Any) -> Ack | None:
        # A connected client emitting "connect"/"disconnect" as an ordinary event reaches these
        # handlers too; a real (dis)connection is never "connected" while they run.
        if sio.manager.is_connected(sid, NAMESPACE):
            cid = correlation_id_or_new(payload.get("correlation_id") if isinstance(payload, dict) else None)
            return error_ack("invalid", "reserved event name", cid)
        return None

    async def connect(sid: str, environ: Any = None, auth: Any = None) -> Ack | None:
        refused = reserved_event(sid, environ)
        if refused is not None:
            return refused
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str):
            raise socketio.exceptions.ConnectionRefusedError(UNAUTHORIZED)
        try:
            claims = services.tokens.verify(token, "access")
        except InvalidToken:
            raise socketio.exceptions.ConnectionRefusedError(UNAUTHORIZED) from None
        # A validly signed token whose user is not (or no longer) registered is refused, as
        # /auth/refresh does; asked every time (no cache), so it can never admit such a user.
        try:
            async with asyncio.timeout(services.settings.query_timeout_s):
                exists = await services.read_models.user_exists(claims.sub)
        except (TimeoutError, PyMongoError) as exc:
            log.warning("socket connect: the users read model is unavailable: %r", exc, extra={"sid": sid})
            raise socketio.exceptions.ConnectionRefusedError(UNAVAILABLE) from None
        if not exists:
            log.info("socket refused: token of an unknown user", extra={"sid": sid, "user_id": claims.sub})
            raise socketio.exceptions.ConnectionRefusedError(UNAUTHORIZED)
        await sio.save_session(sid, {"user_id": claims.sub})
        await sio.enter_room(sid, user_room(claims.sub))
        services.metrics.connected_sockets.inc()
        log.info("socket connected", extra={"sid": sid, "user_id": claims.sub})
        return None

    async def disconnect(sid: str, reason: Any = None) -> Ack | None:
        refused = reserved_event(sid, reason)
        if refused is not None:
            return refused
        try:
            session = await sio.get_session(sid)
        except KeyError:
            return None
        if isinstance(session, dict) and "user_id" in session:
            services.metrics.connected_sockets.dec()
            log.info("socket disconnected (%s)", reason, extra={"sid": sid, "user_id": session["user_id"]})
        return None

    sio.on("connect", connect)
    sio.on("disconnect", disconnect)


def disconnect_erased(sio: socketio.AsyncServer, services: GatewayServices) -> None:
    """An erased user's sockets on this gateway are disconnected as soon as the worker says so."""
    tasks: set[asyncio.Task[None]] = set()

    async def disconnect_all(user_id: str) -> None:
        sids = [sid for sid, _ in sio.manager.get_participants(NAMESPACE, user_room(user_id))]
        for sid in sids:
            await sio.disconnect(sid, namespace=NAMESPACE)
        log.info("erased user: %d sockets disconnected", len(sids), extra={"user_id": user_id})

    def erased(user_id: str) -> None:
        task = asyncio.create_task(disconnect_all(user_id))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    services.erased_users.on_erased = erased
