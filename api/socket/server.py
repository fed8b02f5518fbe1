"""The Socket.IO server: Redis-backed so pushes and typing reach sockets on every gateway."""

from __future__ import annotations

import socketio

from api.services import GatewayServices
from api.socket import connection, conversations, keys, media, messages, search, typing_indicator, unknown
from api.socket.commands import CommandHandlers
from api.socket.events import EventRunner
from api.socket.packets import BoundedPacket
from api.socket.rooms import socket_channel
from infra.push import BatchReadingRedisManager


def create_socket_server(services: GatewayServices) -> socketio.AsyncServer:
    settings = services.settings
    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=BatchReadingRedisManager(settings.redis_url, channel=socket_channel(settings)),
        cors_allowed_origins=settings.cors_origins or [],
        # Frames over this close the connection unread (docs/PROTOCOL.md, "Frames and payload limits").
        max_http_buffer_size=settings.socket_max_frame_bytes,
        # Bounds JSON nesting: a too-deep payload is acked `invalid` instead of dropped.
        serializer=BoundedPacket,
        # Gateways sharing a port (SO_REUSEPORT) cannot follow a long-polling session from one
        # connection to the next: WebSocket only, so such a client fails at once and clearly.
        transports=["websocket"] if settings.gateway_reuse_port else ["polling", "websocket"],
        logger=False,
        engineio_logger=False,
    )
    runner = EventRunner(sio, services)
    commands = CommandHandlers(runner, services)
    connection.register(sio, services)
    conversations.register(runner, commands, services)
    messages.register(runner, commands, services)
    keys.register(runner, commands, services)
    media.register(runner, commands, services)
    typing_indicator.register(runner, services)
    search.register(runner, services)
    unknown.register(sio, runner)
    connection.disconnect_erased(sio, services)
    return sio
