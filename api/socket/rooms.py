"""Socket.IO rooms and the Redis channel shared by every gateway and the worker's pushes.

Every authenticated socket joins ``user_room(user_id)``; a push to that room reaches all of
the user's sockets on every gateway, through the Redis manager on ``socket_channel(settings)``.
The names are defined next to the worker's pusher (``infra.push``) so both sides agree.
"""

from __future__ import annotations

from infra.push import socket_channel, user_room

__all__ = ["socket_channel", "user_room"]
