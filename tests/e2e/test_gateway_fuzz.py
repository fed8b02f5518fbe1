"""Generated payloads through the real socket: every ack keeps the contract, the views stay sound.

One connected client is reused for every example. Payloads mix the fields the commands know,
with values drawn from real ids (so some commands go deep) and from junk of every JSON type.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Platform
from tests.e2e.conftest import Session, Users

pytestmark = pytest.mark.e2e

# Ordered so that the commands that can end the caller's membership come last.
REQUIRED: dict[str, tuple[str, ...]] = {
    "conversation:create": ("kind", "participant_ids", "title"),
    "conversation:add-participants": ("conversation_id", "user_ids"),
    "conversation:rename": ("conversation_id", "title"),
    "message:send": ("conversation_id", "body"),
    "message:edit": ("conversation_id", "message_id", "body"),
    "message:react": ("conversation_id", "message_id", "emoji", "on"),
    "message:read": ("conversation_id", "seq"),
    "message:delete": ("conversation_id", "message_id"),
    "conversation:remove-participant": ("conversation_id", "user_id"),
    "conversation:leave": ("conversation_id",),
}
COMMAND_EVENTS = tuple(REQUIRED)
ALLOWED_REFUSALS = {"invalid", "not_found", "forbidden", "conflict"}


@dataclass
class Fuzz:
    me: Session
    other: Session
    conversation_id: str
    message_id: str
    acked_versions: list[int] = field(default_factory=list)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fuzz(platform: Platform) -> AsyncIterator[Fuzz]:
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=30) as http:
        users = Users(platform.base_url, http)
        me, other = await users.new(), await users.new()
        created = await me.ok(
            "conversation:create", {"kind": "group", "title": "fuzz", "participant_ids": [other.user_id]}
        )
        sent = await me.ok("message:send", {"conversation_id": created["conversation_id"], "body": "seed"})
        try:
            yield Fuzz(me, other, created["conversation_id"], sent["message_id"])
        finally:
            await users.close()


def junk() -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=40)
        | st.just("x" * 10_001)
        | st.just(" ")
        | st.uuids().map(str)
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=8,
    )


def payloads(f: Fuzz, event: str) -> st.SearchStrategy[Any]:
    """Mostly well-formed payloads for ``event`` with one field perhaps dropped or spoiled, some
    payloads of any known fields, and some junk of any JSON type."""
    real_ids = st.sampled_from([f.conversation_id, f.message_id, f.me.user_id, f.other.user_id, str(uuid.uuid4())])
    good: dict[str, st.SearchStrategy[Any]] = {
        "conversation_id": st.just(f.conversation_id),
        "body": st.text(min_size=1, max_size=50),
        "message_id": st.just(f.message_id),
        "emoji": st.sampled_from(["👍", "🎉", "x"]),
        "on": st.booleans(),
        "seq": st.integers(min_value=0, max_value=5),
        "kind": st.sampled_from(["direct", "group"]),
        "participant_ids": st.lists(real_ids, max_size=3),
        "user_ids": st.lists(real_ids, min_size=1, max_size=3),
        "user_id": real_ids,
        "title": st.text(min_size=1, max_size=20),
    }
    control: dict[str, st.SearchStrategy[Any]] = {
        "command_id": st.uuids().map(str) | junk(),
        "expected_version": st.integers(min_value=0, max_value=50) | junk(),
        "correlation_id": st.from_regex(r"[A-Za-z0-9._:-]{1,20}", fullmatch=True) | junk(),
    }
    required = REQUIRED[event]

    @st.composite
    def shaped(draw: st.DrawFn) -> dict[str, Any]:
        payload = draw(st.fixed_dictionaries({k: good[k] for k in required}, optional=control))
        spoil = draw(st.sampled_from(["none", "none", "drop", "junk"]))
        key = draw(st.sampled_from(required))
        if spoil == "drop":
            del payload[key]
        elif spoil == "junk":
            payload[key] = draw(junk())
        payload.update(draw(st.dictionaries(st.text(max_size=12), junk(), max_size=2)))
        return payload

    anything = st.fixed_dictionaries({}, optional={**{k: v | junk() for k, v in good.items()}, **control})
    return st.one_of(shaped(), shaped(), shaped(), anything, junk())


async def check_views(f: Fuzz) -> None:
    """The caller's list and history agree with each other and with the acks so far."""
    listed = await f.me.call("conversation:list", {"limit": 100})
    assert listed["ok"] is True, listed
    conversations = listed["data"]["conversations"]
    for item in conversations:
        assert isinstance(item["unread_count"], int) and item["unread_count"] >= 0
        assert f.me.user_id in item["participant_ids"]
    mine = [c for c in conversations if c["conversation_id"] == f.conversation_id]
    history = await f.me.call("message:history", {"conversation_id": f.conversation_id, "limit": 100})
    if not mine:  # the fuzz may have left the conversation
        assert history["ok"] is False and history["error"]["code"] == "not_found"
        return
    assert history["ok"] is True, history
    assert mine[0]["version"] >= max(f.acked_versions, default=0)
    seqs = [m["seq"] for m in history["data"]["messages"]]
    assert seqs == sorted(set(seqs), reverse=True)
    for m in history["data"]["messages"]:
        assert (m["body"] is None) == m["deleted"]


@pytest.mark.parametrize("event", COMMAND_EVENTS)
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
async def test_generated_payloads_keep_the_contract(fuzz: Fuzz, event: str, data: st.DataObject) -> None:
    payload = data.draw(payloads(fuzz, event), label="payload")
    ack = await fuzz.me.call(event, payload)
    assert set(ack) in ({"ok", "data", "correlation_id"}, {"ok", "error", "correlation_id"}), ack
    assert isinstance(ack["correlation_id"], str) and ack["correlation_id"]
    if isinstance(payload, dict) and isinstance(payload.get("correlation_id"), str):
        cid = payload["correlation_id"]
        if 0 < len(cid) <= 128 and all(ch.isascii() and (ch.isalnum() or ch in "._:-") for ch in cid):
            assert ack["correlation_id"] == cid
    if ack["ok"]:
        assert isinstance(ack["data"], dict)
        if (
            isinstance(payload, dict)
            and payload.get("conversation_id") == fuzz.conversation_id
            and isinstance(ack["data"].get("version"), int)
        ):
            fuzz.acked_versions.append(ack["data"]["version"])
    else:
        assert ack["error"]["code"] in ALLOWED_REFUSALS, (event, payload, ack)
        assert isinstance(ack["error"]["message"], str)
    assert fuzz.me.socket is not None and fuzz.me.socket.connected
    await check_views(fuzz)
