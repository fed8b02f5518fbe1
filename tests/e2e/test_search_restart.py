"""The local Elasticsearch-API server keeps nothing on disk: after a restart on the same data dir
the search indexes are gone while the positions say caught up. The worker rebuilds them from the
log before it reports ready, so search answers as before the restart."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import Platform
from tests.e2e.conftest import Users, parley
from tests.e2e.test_search import group, hits, word

pytestmark = [pytest.mark.e2e, pytest.mark.restart]


async def test_search_indexes_lost_on_restart_are_rebuilt_before_ready(platform: Platform) -> None:
    w = word()
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=30) as http:
        users = Users(platform.base_url, http)
        try:
            alice, bob = await users.new(display_name=f"Alice {w}"), await users.new()
            conv = await group(alice, [bob], f"Survives {w}")
            sent = await alice.ok("message:send", {"conversation_id": conv, "body": f"durable {w}"})

            async def results() -> list[Any]:
                return [
                    await hits(bob, "search:messages", {"query": w}),
                    await hits(bob, "search:conversations", {"query": w}),
                    await hits(bob, "search:users", {"query": w}),
                ]

            before = await results()
            assert [h["message_id"] for h in before[0]] == [sent["message_id"]]
        finally:
            await users.close()
    # A rebuilt generation (N+1) is named by the registry: after the restart the server has none.
    assert parley(platform, "projections", "rebuild", "search").returncode == 0

    platform.restart()

    status = json.loads(parley(platform, "projections", "status", "--json").stdout)
    search = next(row for row in status if row["name"] == "search")
    assert search["documents"] > 0
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=30) as http:
        users = Users(platform.base_url, http)
        try:
            await users.connect(alice)
            await users.connect(bob)
            assert await results() == before  # at once: ready means rebuilt
            after = await alice.ok("message:send", {"conversation_id": conv, "body": f"after the restart {w}"})
            found = await hits(bob, "search:messages", {"query": w})
            assert {h["message_id"] for h in found} == {sent["message_id"], after["message_id"]}
        finally:
            await users.close()
