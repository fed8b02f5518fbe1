"""The AuthzCache contract (api/media.py), run against every adapter of it."""

from __future__ import annotations

import asyncio
import uuid

from api.media import AuthzCache
from infra.authz_cache import AccessDecision, Generations


def ids() -> tuple[str, str, str]:
    return f"u-{uuid.uuid4().hex}", f"m-{uuid.uuid4().hex}", f"c-{uuid.uuid4().hex}"


async def generations(cache: AuthzCache, media_id: str, conversation_id: str) -> Generations:
    return Generations(await cache.conversation_generation(conversation_id), await cache.media_generation(media_id))


class AuthzCacheContract:
    """Subclasses provide a ``cache`` fixture."""

    async def test_nothing_remembered_is_none(self, cache: AuthzCache) -> None:
        user, media, _ = ids()
        assert await cache.decision(user, media) is None

    async def test_a_decision_is_remembered_per_user_and_media(self, cache: AuthzCache) -> None:
        user, media, conv = ids()
        allowed = AccessDecision(True, conv, "media/key", "a.png")
        await cache.remember(user, media, allowed, await generations(cache, media, conv), 30)
        assert await cache.decision(user, media) == allowed
        assert await cache.decision(f"{user}-other", media) is None
        assert await cache.decision(user, f"{media}-other") is None

    async def test_a_departure_ends_the_decisions_of_its_conversation(self, cache: AuthzCache) -> None:
        user, media, conv = ids()
        other_user, other_media, other_conv = ids()
        await cache.remember(
            user, media, AccessDecision(True, conv, "k", "f"), await generations(cache, media, conv), 30
        )
        elsewhere = AccessDecision(True, other_conv, "k2", "g")
        await cache.remember(other_user, other_media, elsewhere, await generations(cache, other_media, other_conv), 30)
        await cache.forget_conversation(conv)
        assert await cache.decision(user, media) is None
        assert await cache.decision(other_user, other_media) == elsewhere, "other conversations keep theirs"

    async def test_a_change_of_the_media_ends_its_decisions_denials_included(self, cache: AuthzCache) -> None:
        user, media, conv = ids()
        await cache.remember(user, media, AccessDecision(False, conv), await generations(cache, media, conv), 30)
        missing = AccessDecision(False)
        await cache.remember(f"{user}-2", media, missing, Generations(0, await cache.media_generation(media)), 30)
        await cache.forget_media(media)
        assert await cache.decision(user, media) is None
        assert await cache.decision(f"{user}-2", media) is None

    async def test_a_decision_made_before_a_change_is_never_served_after_it(self, cache: AuthzCache) -> None:
        """Generations are read before the read models: a change in between makes the entry stale."""
        user, media, conv = ids()
        before = await generations(cache, media, conv)
        await cache.forget_conversation(conv)  # the worker's bump lands while the gateway decides
        await cache.remember(user, media, AccessDecision(True, conv, "k", "f"), before, 30)
        assert await cache.decision(user, media) is None

    async def test_a_decision_expires(self, cache: AuthzCache) -> None:
        user, media, conv = ids()
        await cache.remember(
            user, media, AccessDecision(True, conv, "k", "f"), await generations(cache, media, conv), 0.2
        )
        await asyncio.sleep(0.3)
        assert await cache.decision(user, media) is None
