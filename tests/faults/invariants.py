"""What must hold after any fault, once the load has stopped and the worker has caught up.

- every command acked ok is in the log exactly once (one event, whatever the records' copies),
  with the message id and seq its ack gave, and in history exactly once;
- in every conversation, seqs run 1..n with no gap and no message has two;
- a retry of an acked command with its command id returns the original ack;
- every read model equals a clean fold of the log;
- the audit trail verifies.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from bench.clients import connect, ok
from bench.steady import Acked, LoadReport, SenderSpec
from domain.envelope import EventEnvelope
from infra.kafka.log_reader import LogReader
from infra.mongo.client import mongo_client, mongo_db
from infra.mongo.documents import ProjectionRegistry
from infra.mongo.key_store import key_ring
from infra.rebuild import decode_upcast_event, projection_status
from projections.base import fold
from projections.catalog import DOCUMENT_PROJECTIONS
from tests.conftest import REPO_ROOT, Platform

CATCH_UP_WITHIN_S = 120.0


async def caught_up(platform: Platform) -> None:
    """Until every projection (and the trail) has applied the whole log."""
    deadline = time.monotonic() + CATCH_UP_WITHIN_S
    while True:
        try:
            statuses = await projection_status(platform.settings, search=False)
            lagging: dict[str, object] = {s.name: s.lag for s in statuses if s.lag}
        except Exception as exc:  # a server still coming back
            lagging = {"?": repr(exc)}
        if not lagging:
            return
        assert time.monotonic() < deadline, f"projections still behind the log: {lagging}"
        await asyncio.sleep(0.5)


async def read_events(platform: Platform) -> list[EventEnvelope]:
    events: list[EventEnvelope] = []
    async with LogReader(platform.settings, platform.settings.events_topic) as reader:
        async for batch in reader.batches(decode_upcast_event):
            events += [entry.value for entry in batch]
    return events


async def history(url: str, spec: SenderSpec) -> list[dict[str, Any]]:
    """Every message of the conversation, oldest first, paging back through message:history."""
    client = await connect(url, spec.token)
    try:
        messages: list[dict[str, Any]] = []
        before: int | None = None
        while True:
            query: dict[str, Any] = {"conversation_id": spec.conversation_id, "limit": 100}
            if before is not None:
                query["before_seq"] = before
            page = await ok(client, "message:history", query)
            messages += page["messages"]
            if not page["has_more"] or not page["messages"]:
                return sorted(messages, key=lambda m: int(m["seq"]))
            before = min(int(m["seq"]) for m in page["messages"])
    finally:
        await client.disconnect()


async def retries_return_the_original_ack(url: str, specs: Sequence[SenderSpec], acked: Sequence[Acked]) -> None:
    by_user = {s.user_id: s for s in specs}
    for a in acked[:: max(1, len(acked) // 5)][:5]:
        spec = by_user[a.user_id]
        client = await connect(url, spec.token)
        try:
            payload = {"conversation_id": a.conversation_id, "body": a.body, "command_id": a.command_id}
            again = await ok(client, "message:send", payload)
        finally:
            await client.disconnect()
        assert (again["message_id"], again["seq"]) == (a.message_id, a.seq), a


async def check_invariants(platform: Platform, report: LoadReport, specs: Sequence[SenderSpec]) -> None:
    assert report.acked, "the load acked nothing"
    assert not report.errors, f"commands refused for good: {dict(report.errors)}"
    assert not report.given_up, f"{len(report.given_up)} commands never acked"
    await caught_up(platform)
    events = await read_events(platform)

    # A record appended twice (a retried batch) is the same event: a command decided again
    # decides the same, so every copy of an event id is identical.
    copies: dict[str, EventEnvelope] = {}
    for event in events:
        first = copies.setdefault(event.event_id, event)
        assert first == event, f"two different events share the id {event.event_id}:\n{first}\n{event}"

    # Exactly once in the log: one MessageSent event (by id) per acked command, as acked.
    sent: dict[str, dict[str, EventEnvelope]] = defaultdict(dict)  # command id -> event id -> event
    for event in events:
        if event.type == "MessageSent":
            sent[event.causation_id][event.event_id] = event
    for a in report.acked:
        found = sent.get(a.command_id, {})
        assert len(found) == 1, f"acked command {a.command_id} has {len(found)} MessageSent events in the log"
        (event,) = found.values()
        assert (event.payload["message_id"], event.payload["seq"]) == (a.message_id, a.seq), (a, event.payload)

    # Gap-free seqs, one seq per message, every acked message once in history.
    conversations = {s.conversation_id: s for s in specs}
    for conversation_id, spec in conversations.items():
        in_log = {
            e.payload["message_id"]: e.payload["seq"]
            for by_id in sent.values()
            for e in by_id.values()
            if e.stream_id.endswith(conversation_id)
        }
        shown = await history(platform.base_url, spec)
        seqs = [int(m["seq"]) for m in shown]
        log_seqs = sorted(in_log.values())
        assert log_seqs == list(range(1, len(log_seqs) + 1)), f"seqs of {conversation_id} in the log: {log_seqs}"
        assert seqs == list(range(1, len(shown) + 1)), f"seqs of {conversation_id} have gaps or repeats: {seqs}"
        ids = [m["message_id"] for m in shown]
        assert len(set(ids)) == len(ids), f"a message appears twice in the history of {conversation_id}"
        assert {m["message_id"]: int(m["seq"]) for m in shown} == in_log
        for a in report.acked:
            if a.conversation_id == conversation_id:
                assert ids.count(a.message_id) == 1 and seqs[ids.index(a.message_id)] == a.seq, a

    await retries_return_the_original_ack(platform.base_url, specs, report.acked)

    # Every read model equals a clean fold of the log.
    client = mongo_client(platform.settings)
    try:
        db = mongo_db(client, platform.settings)
        registry = ProjectionRegistry(db, cache_seconds=0)
        keys = key_ring(platform.settings, client)
        opened_with = await keys.keys_for(events)
        opened = [keys.open(event, opened_with) for event in events]  # as the projections read them
        for name, projection in DOCUMENT_PROJECTIONS.items():
            folded = fold(projection, {}, opened)
            expected = {k: v for k, v in folded.docs.items() if v is not None}
            live = await registry.live_collection(name)
            actual = {str(doc["_id"]): doc async for doc in db[live].find({})}
            assert actual == expected, (
                f"read model {name} differs from a fold of the log: {differences(actual, expected)}"
            )
    finally:
        await client.close()

    verified = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "api.cli.main", "audit", "verify", "--data-dir", str(platform.data_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert verified.returncode == 0, f"audit verify failed:\n{verified.stdout}\n{verified.stderr}"


def differences(actual: dict[str, Any], expected: dict[str, Any], most: int = 3) -> str:
    """What a read model and the fold of the log disagree on, briefly (ids, then first documents)."""
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    changed = sorted(k for k in set(actual) & set(expected) if actual[k] != expected[k])
    shown = [f"{k}: live {actual[k]!r} != folded {expected[k]!r}" for k in changed[:most]]
    return (
        f"missing {missing[:most]} ({len(missing)}), extra {extra[:most]} ({len(extra)}), "
        f"differ {shown} ({len(changed)})"
    )
