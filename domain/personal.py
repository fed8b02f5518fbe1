"""Personal data in events: which fields are a user's, and what an erased field reads.

Crypto-shredding (docs/THREAT-MODEL.md) seals these fields under the data key of the user they
belong to (the *subject*) before an event is appended, and opens them when the event is read.
When the key is destroyed the fields cannot be opened again; every reader then sees ``ERASED``.
This module is the policy, pure: the sealing itself is infra's (infra/security/shredding.py).

A path names a field of the payload: ``body``, or ``attachments.*.filename`` for a field of every
element of a list. A field whose value is ``None`` (absent) holds nothing and is not sealed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from domain.envelope import CommandEnvelope

ERASED = "[erased]"
SEALED_FIELD = "sealed"  # the payload field that holds the sealed values of a sealed event


@dataclass(frozen=True)
class Personal:
    """The personal fields of one event type and the payload field naming their subject."""

    subject: str
    paths: tuple[str, ...]


POLICY: dict[str, Personal] = {
    "UserRegistered": Personal("user_id", ("username", "normalised", "display_name", "password_hash")),
    "MessageSent": Personal("sender_id", ("body", "ciphertext", "attachments.*.filename")),
    "MessageEdited": Personal("sender_id", ("body", "ciphertext")),
    "MediaUploadRequested": Personal("uploader_id", ("filename",)),
}

# Commands whose events carry their actor's personal data (user:register: the new user's).
_SEALING_COMMANDS = frozenset({"message:send", "message:edit", "media:request-upload"})


def subject_of(event_type: str, payload: dict[str, Any]) -> str | None:
    """The user whose personal data an event of this type carries; None if it carries none."""
    personal = POLICY.get(event_type)
    if personal is None:
        return None
    subject = payload.get(personal.subject)
    return subject if isinstance(subject, str) else None


def sealing_subject(command: CommandEnvelope) -> str | None:
    """The user whose data key the events of ``command`` may be sealed under (to load it first)."""
    if command.type == "user:register":
        user_id = command.payload.get("user_id")
        return user_id if isinstance(user_id, str) else None
    if command.type in _SEALING_COMMANDS:
        return command.actor_id
    return None


def _expand(payload: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(concrete path, the dict holding the field, the field name) for each field ``path`` names."""
    head, _, rest = path.partition(".*.")
    if not rest:
        yield path, payload, path
        return
    items = payload.get(head)
    if not isinstance(items, list):
        return
    for i, item in enumerate(items):
        if isinstance(item, dict):
            yield f"{head}.{i}.{rest}", item, rest


def take(event_type: str, payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``payload`` without its personal fields, and those fields by concrete path."""
    personal = POLICY.get(event_type)
    rest = _copy(payload)
    taken: dict[str, Any] = {}
    if personal is None:
        return rest, taken
    for path in personal.paths:
        for concrete, holder, name in list(_expand(rest, path)):
            if holder.get(name) is not None:
                taken[concrete] = holder.pop(name)
    return rest, taken


def put(payload: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with the fields of ``values`` (by concrete path) put back."""
    out = _copy(payload)
    for concrete, value in values.items():
        parts = concrete.split(".")
        holder: Any = out
        for part in parts[:-1]:
            holder = holder[int(part)] if isinstance(holder, list) else holder[part]
        holder[parts[-1]] = value
    return out


def erased_username(user_id: str) -> str:
    """The unique stand-in for an erased user's normalised name (no valid name looks like it)."""
    return f"{ERASED}:{user_id}"


def erased(paths: list[str]) -> dict[str, Any]:
    """What the fields at ``paths`` read once their key is destroyed."""
    return dict.fromkeys(paths, ERASED)


def _copy(payload: dict[str, Any]) -> dict[str, Any]:
    """A copy deep enough that ``take``/``put`` never change the caller's payload."""
    return {
        k: [dict(i) if isinstance(i, dict) else i for i in v] if isinstance(v, list) else v for k, v in payload.items()
    }
