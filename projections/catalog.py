"""Every document projection, by name (what `parley projections rebuild NAME` accepts, with "audit")."""

from __future__ import annotations

from projections.base import DocumentProjection
from projections.conversations import ConversationsProjection
from projections.keys import KeysProjection
from projections.media import MediaProjection
from projections.messages import MessagesProjection
from projections.users import UsersProjection

DOCUMENT_PROJECTIONS: dict[str, DocumentProjection] = {
    p.name: p
    for p in (UsersProjection(), MessagesProjection(), KeysProjection(), MediaProjection(), ConversationsProjection())
}
"""Live agents apply them in this order: conversations last, so a conversation view at version V
implies every other view has caught up with V (the gateway's read-your-writes wait relies on it)."""
