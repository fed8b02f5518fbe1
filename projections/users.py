"""The users read model: one document per registered user (login, user lookups, search later)."""

from __future__ import annotations

from typing import Any

from domain.envelope import EventEnvelope, iso
from domain.personal import ERASED, erased_username
from projections.base import Doc, IndexSpec


class UsersProjection:
    name: str = "users"
    indexes: tuple[IndexSpec, ...] = (IndexSpec((("username_normalised", 1),), unique=True, name="by_username"),)
    creating_events: frozenset[str] = frozenset({"UserRegistered"})

    def doc_ids(self, event: EventEnvelope) -> list[str]:
        if event.type == "UserRegistered":
            return [str(event.payload["user_id"])]
        return []

    def apply(self, doc: Doc | None, doc_id: str, event: EventEnvelope) -> Doc | None:
        p = event.payload
        if event.type == "UserRegistered":
            return {
                "user_id": doc_id,
                "username": p["username"],
                # An erased name is unique too (the index), and matches no login: no valid name has "[".
                "username_normalised": erased_username(doc_id) if p["normalised"] == ERASED else p["normalised"],
                "display_name": p["display_name"],
                "password_hash": p["password_hash"],
                "registered_at": iso(event.occurred_at),
            }
        return doc

    def holding(self, user_id: str) -> dict[str, Any] | None:
        return {"user_id": user_id}

    def redact(self, doc: Doc, user_id: str) -> Doc:
        if doc.get("user_id") != user_id:
            return doc
        return {
            **doc,
            "username": ERASED,
            "username_normalised": erased_username(user_id),
            "display_name": ERASED,
            "password_hash": ERASED,
        }


def is_erased(doc: Doc) -> bool:
    """Whether a users document is an erased user's."""
    return doc.get("username") == ERASED
