"""The Socket.IO packet decoder, bounded: JSON nested deeper than ``MAX_JSON_DEPTH`` (or that the
decoder cannot read at all) becomes an ``UndecodablePayload`` the event runner acks as ``invalid``.

python-socketio decodes a text packet's JSON last, after its type, namespace and ack id; when
``json.loads`` raises (a RecursionError for ~1,000 levels of nesting) the packet is dropped with
no ack and nothing logged. Here the type, namespace and id are kept, the event name is read from
the front of the text when it can be, and the payload is replaced by the marker, so the client
gets its ack. Binary packets keep the library's behaviour.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from socketio import packet as sio_packet

log = logging.getLogger("parley.gateway.socket")

# Real payloads nest 4 levels at most (keys:publish); the event list adds one.
MAX_JSON_DEPTH = 32
MAX_EVENT_NAME = 200
TOO_DEEP = f"payload nested deeper than {MAX_JSON_DEPTH} levels"

_EVENT_NAME = re.compile(r'\s*\[\s*("(?:[^"\\]|\\.){0,200}")')


@dataclass(frozen=True)
class UndecodablePayload:
    """Stands in for the arguments of an event whose JSON was refused."""

    reason: str


class UndecodableJson(ValueError):
    def __init__(self, reason: str, event: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event = event


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` levels in ``value`` (walked without
    recursion, so the check itself cannot overflow the stack)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _event_name(text: str) -> str:
    match = _EVENT_NAME.match(text)
    if match is None:
        return ""
    try:
        name = json.loads(match.group(1))
    except ValueError:
        return ""
    return name[:MAX_EVENT_NAME] if isinstance(name, str) else ""


class BoundedJson:
    """The ``json`` of ``BoundedPacket``: the standard module's, with a depth bound on loads."""

    @staticmethod
    def dumps(obj: Any, **kwargs: Any) -> str:
        return json.dumps(obj, **kwargs)

    @staticmethod
    def loads(text: str | bytes, **kwargs: Any) -> Any:
        s = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        try:
            value = json.loads(s, **kwargs)
        except RecursionError:  # the C decoder's own bound, around 1,000 levels
            raise UndecodableJson(TOO_DEEP, _event_name(s)) from None
        except ValueError:
            raise UndecodableJson("payload is not valid JSON", _event_name(s)) from None
        # Fewer brackets than the bound cannot nest deeper than it: skip the walk (counting is cheap).
        if s.count("[") + s.count("{") > MAX_JSON_DEPTH and nested_deeper_than(value, MAX_JSON_DEPTH):
            name = value[0] if isinstance(value, list) and value and isinstance(value[0], str) else ""
            raise UndecodableJson(TOO_DEEP, name[:MAX_EVENT_NAME])
        return value


class BoundedPacket(sio_packet.Packet):  # type: ignore[misc]
    json = BoundedJson
    data: Any

    def decode(self, encoded_packet: Any) -> int:
        try:
            count: int = super().decode(encoded_packet)
        except UndecodableJson as exc:
            # Type, namespace and id were read before the JSON; only the data is missing.
            if self.packet_type == sio_packet.EVENT:
                self.data = [exc.event, UndecodablePayload(exc.reason)]
            elif self.packet_type == sio_packet.CONNECT:
                self.data = None  # no auth: the connection is refused as unauthorized
            else:
                raise
            log.warning("socket packet refused: %s (event %r, ack id %s)", exc.reason, exc.event[:64], self.id)
            return 0
        if self.packet_type == sio_packet.EVENT and not (
            isinstance(self.data, list) and self.data and isinstance(self.data[0], str)
        ):
            # The library would fail on data[0] and drop the packet; route it to the catch-all.
            self.data = ["", UndecodablePayload("an event must be a list starting with its name")]
        return count
