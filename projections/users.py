"""The users read model: one document per registered user (login, user lookups, search later)."""

from __future__ import annotations

from domain.envelope import EventEnvelope, iso
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
                "username_normalised": p["normalised"],
                "display_name": p["display_name"],
                "password_hash": p["password_hash"],
                "registered_at": iso(event.occurred_at),
            }
        return doc
