"""Every document projection, by name (what `parley projections rebuild NAME` accepts, with "audit")."""

from __future__ import annotations

from projections.base import DocumentProjection
from projections.conversations import ConversationsProjection
from projections.messages import MessagesProjection
from projections.users import UsersProjection

DOCUMENT_PROJECTIONS: dict[str, DocumentProjection] = {
    p.name: p for p in (UsersProjection(), ConversationsProjection(), MessagesProjection())
}
