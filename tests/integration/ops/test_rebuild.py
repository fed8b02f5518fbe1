"""Rebuilding read models from the log: equivalence, while serving, interrupted, missing stores."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from domain.envelope import EventEnvelope
from domain.upcasting import upcast
from infra.mongo.documents import ProjectionRegistry
from infra.rebuild import rebuild_missing, rebuild_projection
from projections.base import Doc, DocumentProjection, IndexSpec, fold
from projections.catalog import DOCUMENT_PROJECTIONS
from tests.integration.ops.conftest import REPO_ROOT, OpsEnv
from tests.integration.ops.live import LiveAgent, documents
from tests.unit.ops.events import LogBuilder, chat_log


class MessageCounts:
    """A tiny test-only projection: messages per conversation (one document per stream)."""

    name: str = "message_counts"
    indexes: tuple[IndexSpec, ...] = (IndexSpec((("count", -1),), name="by_count"),)
    creating_events: frozenset[str] = frozenset()

    def doc_ids(self, event: EventEnvelope) -> list[str]:
        return [event.stream_id] if event.type in ("ConversationCreated", "MessageSent") else []

    def apply(self, doc: Doc | None, doc_id: str, event: EventEnvelope) -> Doc | None:
        count = 0 if doc is None else int(doc["count"])
        return {"count": count + (event.type == "MessageSent")}

    def holding(self, user_id: str) -> dict[str, Any] | None:
        return None  # counts hold nobody's personal data

    def redact(self, doc: Doc, user_id: str) -> Doc:
        return doc


class Fragile(MessageCounts):
    """Raises on some events, as a projection with a bug would: the live agent parks those."""

    name: str = "fragile"

    def apply(self, doc: Doc | None, doc_id: str, event: EventEnvelope) -> Doc | None:
        if "boom" in str(event.payload.get("body", "")):
            raise KeyError("boom")
        return super().apply(doc, doc_id, event)


def expected_docs(projection: DocumentProjection, events: list[EventEnvelope]) -> dict[str, Doc | None]:
    """The read model as a pure fold of the whole log, in log order."""
    folded = fold(projection, {}, [upcast(e) for e in events])
    return {k: v for k, v in folded.docs.items() if v is not None}


async def test_rebuild_reproduces_every_read_model_exactly(ops: OpsEnv) -> None:
    await ops.create_topics(events=3)
    log = chat_log(seed=31, users=6, conversations=5, messages=120, v1_every=7)
    await ops.produce(log.events)
    await ops.produce(log.events[20:30])  # repeated copies
    projections: dict[str, DocumentProjection] = {**DOCUMENT_PROJECTIONS, "message_counts": MessageCounts()}
    agent = LiveAgent(ops.settings, ops.db, projections, audit=False, batch_size=3)
    await agent.step()
    registry = ProjectionRegistry(ops.db)
    for name, projection in projections.items():
        live = await registry.live_collection(name)
        before = await documents(ops.db, live)
        assert before, name
        assert before == expected_docs(projection, log.events), name
        report = await rebuild_projection(ops.settings, name, projections=projections, settle_s=0.1)
        assert (report.previous, report.collection) == (live, f"rm_{name}_g2")
        assert await registry.entry(name) is not None
        assert (await registry.entry(name) or {})["collection"] == f"rm_{name}_g2"
        assert await documents(ops.db, report.collection) == before, name
        assert live not in await ops.db.list_collection_names()
        index_names = {i["name"] async for i in await ops.db[report.collection].list_indexes()}
        assert {spec.name for spec in projection.indexes} <= index_names


async def test_rebuild_cli_swaps_in_a_fresh_copy_and_saves_positions(ops: OpsEnv) -> None:
    await ops.create_topics(events=3)
    log = chat_log(seed=32, messages=60)
    await ops.produce(log.events)
    agent = LiveAgent(ops.settings, ops.db, DOCUMENT_PROJECTIONS, audit=False, batch_size=10)
    await agent.step()
    before = await documents(ops.db, "rm_messages_g1")
    result = ops.cli("projections", "rebuild", "messages")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("rebuilt messages into rm_messages_g2 (generation 2): ")
    assert f"{len(log.events)} log records folded in " in result.stdout and "; set-up " in result.stdout
    assert "rebuild messages" in result.stderr  # the progress line (stderr is not a terminal here)
    assert await documents(ops.db, "rm_messages_g2") == before

    status = ops.cli("projections", "status", "--json")
    assert status.returncode == 0, status.stderr
    rows = {row["name"]: row for row in json.loads(status.stdout)}
    assert set(rows) == {"users", "conversations", "messages", "keys", "media", "audit"}
    assert rows["messages"]["collection"] == "rm_messages_g2" and rows["messages"]["generation"] == 2
    assert rows["messages"]["lag"] == 0 and rows["messages"]["position"] == len(log.events)
    assert rows["audit"]["lag"] == len(log.events)  # no trail was built in this test
    sources = {src["topic"]: src for src in rows["audit"]["sources"]}
    assert list(sources) == [ops.settings.events_topic, *ops.settings.rejection_topics]
    assert sources[ops.settings.events_topic]["lag"] == len(log.events)
    assert [src["topic"] for src in rows["messages"]["sources"]] == [ops.settings.events_topic]

    await ops.produce(chat_log(seed=33, messages=4).events)
    table = ops.cli("projections", "status")
    assert table.returncode == 0, table.stderr
    header, *body = table.stdout.splitlines()
    assert header.split() == ["NAME", "COLLECTION", "GEN", "DOCUMENTS", "SOURCE", "POSITION", "LAG"]
    # The audit trail reads three topics: a row for each, and their total.
    audit_at = next(i for i, line in enumerate(body) if line.startswith("audit"))
    assert [line.split()[-3] for line in body[audit_at : audit_at + 3]] == [
        ops.settings.events_topic,
        *ops.settings.rejection_topics,
    ]
    assert "(all sources)" in body[audit_at + 3]
    messages = next(line.split() for line in body if line.startswith("messages"))
    assert messages[1] == "rm_messages_g2" and int(messages[-1].replace(",", "")) == len(
        chat_log(seed=33, messages=4).events
    )


async def test_rebuild_while_serving_ends_with_every_live_write(ops: OpsEnv) -> None:
    await ops.create_topics(events=3)
    log = chat_log(seed=34, users=8, conversations=20, messages=3000)
    await ops.produce(log.events)
    projection = DOCUMENT_PROJECTIONS["messages"]
    agent = LiveAgent(ops.settings, ops.db, {"messages": projection}, audit=False, batch_size=500)
    await agent.step()

    more = LogBuilder(seed=35, start=log.now)
    users = [more.user(f"late{i}") for i in range(3)]
    conversation = more.conversation(users[0], users[1:])
    stop = asyncio.Event()

    enough_live_writes = asyncio.Event()

    async def writer() -> None:  # users keep chatting during the rebuild
        n = 0
        while not stop.is_set():
            await ops.produce([more.message(conversation, users[n % 3], f"live {n}")])
            n += 1
            if n > 20:
                enough_live_writes.set()
            await asyncio.sleep(0.005)

    async def serving() -> None:  # the worker keeps applying them to whatever is live
        while not stop.is_set():
            await agent.step()
            await asyncio.sleep(0.02)

    tasks = [asyncio.create_task(writer()), asyncio.create_task(serving())]
    try:
        report = await rebuild_projection(ops.settings, "messages", batch_size=500)
        await asyncio.wait_for(enough_live_writes.wait(), 60)  # keep serving a little after the swap
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    await agent.step()
    assert report.collection == "rm_messages_g2"
    live_writes = [e for e in more.events if e.type == "MessageSent"]
    assert len(live_writes) > 20
    rebuilt = await documents(ops.db, "rm_messages_g2")
    assert rebuilt == expected_docs(projection, log.events + more.events)


def _start_rebuild(ops: OpsEnv, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli.main", "projections", "rebuild", name],
        cwd=REPO_ROOT,
        env=ops.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _collection_uuid(ops: OpsEnv, collection: str) -> Any:
    async for info in await ops.db.list_collections(filter={"name": collection}):
        return info.get("info", {}).get("uuid")
    return None


async def _wait_for_docs(
    ops: OpsEnv, collection: str, proc: subprocess.Popen[str], minimum: int, leftover: Any = None
) -> None:
    """Until the rebuild has written ``minimum`` documents into ``collection`` (a fresh one when
    a leftover of that name, identified by its uuid, existed before)."""
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the rebuild never started writing"
        fresh = leftover is None or await _collection_uuid(ops, collection) not in (None, leftover)
        if fresh and await ops.db[collection].estimated_document_count() >= minimum:
            return
        await asyncio.sleep(0.01)


async def test_interrupted_rebuild_leaves_the_live_projection_untouched_and_reruns_clean(ops: OpsEnv) -> None:
    await ops.create_topics(events=3)
    log = chat_log(seed=36, users=10, conversations=50, messages=40_000)
    await ops.produce(log.events)
    first = await rebuild_projection(ops.settings, "messages", settle_s=0.1)
    assert first.collection == "rm_messages_g2"
    registry = ProjectionRegistry(ops.db)
    entry_before = await registry.entry("messages")
    live_before = await documents(ops.db, "rm_messages_g2")

    for sig in (signal.SIGKILL, signal.SIGINT):
        leftover = await _collection_uuid(ops, "rm_messages_g3")
        proc = _start_rebuild(ops, "messages")
        await _wait_for_docs(ops, "rm_messages_g3", proc, 100, leftover)
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
        if sig == signal.SIGINT:
            assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
        assert await registry.entry("messages") == entry_before
        assert await documents(ops.db, "rm_messages_g2") == live_before

    rerun = ops.cli("projections", "rebuild", "messages")
    assert rerun.returncode == 0, rerun.stderr
    assert "rm_messages_g3" in rerun.stdout
    assert await documents(ops.db, "rm_messages_g3") == live_before
    assert "rm_messages_g2" not in await ops.db.list_collection_names()


async def test_a_second_rebuild_of_the_same_projection_is_refused(ops: OpsEnv) -> None:
    await ops.create_topics(events=3)
    await ops.produce(chat_log(seed=37, conversations=20, messages=30_000).events)
    proc = _start_rebuild(ops, "messages")
    try:
        await _wait_for_docs(ops, "rm_messages_g2", proc, 1)
        second = ops.cli("projections", "rebuild", "messages")
        assert second.returncode == 1
        assert second.stderr.startswith("parley projections rebuild: a rebuild of messages is already running")
    finally:
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err


async def test_a_dropped_store_is_rebuilt_and_an_idle_one_is_left_alone(ops: OpsEnv) -> None:
    await ops.create_topics(events=3)
    only_users = LogBuilder(seed=38)
    for i in range(5):
        only_users.user(f"solo{i}")
    await ops.produce(only_users.events)
    agent = LiveAgent(ops.settings, ops.db, DOCUMENT_PROJECTIONS, batch_size=10)
    await agent.step()
    for name in DOCUMENT_PROJECTIONS:  # what provisioning does before the worker starts
        await ops.db[await ProjectionRegistry(ops.db).live_collection(name)].create_index("_sv")
    # Messages and conversations are empty because the log has none of their events: left alone.
    assert await rebuild_missing(ops.settings) == []

    users_before = await documents(ops.db, "rm_users_g1")
    trail_before = await documents(ops.db, "rm_audit_g1")
    await ops.db.drop_collection("rm_users_g1")
    await ops.db.drop_collection("rm_audit_g1")
    assert sorted(await rebuild_missing(ops.settings)) == ["audit", "users"]
    assert await documents(ops.db, "rm_users_g2") == users_before
    assert await documents(ops.db, "rm_audit_g2") == trail_before


async def test_rebuild_bad_input_and_unavailable_servers(ops: OpsEnv, tmp_path: Path) -> None:
    unknown = ops.cli("projections", "rebuild", "nope")
    assert unknown.returncode == 2
    assert unknown.stderr == (
        "parley projections rebuild: unknown projection 'nope' "
        "(valid: conversations, keys, media, messages, users, audit, search)\n"
    )
    from infra.localstack.ports import free_port

    await ops.create_topics()
    mongo_down = {**ops.env(), "PARLEY_MONGO_URL": f"mongodb://127.0.0.1:{free_port()}/"}
    kafka_down = {**ops.env(), "PARLEY_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    unconfigured = {k: v for k, v in ops.env().items() if k not in ("PARLEY_KAFKA_BOOTSTRAP", "PARLEY_MONGO_URL")}
    unconfigured["PARLEY_DATA_DIR"] = str(tmp_path / "nothing-runs-here")  # not a ./.parley that may be running
    runs: list[tuple[list[str], dict[str, str], int, str]] = [
        *(
            (args, mongo_down, 1, "MongoDB unavailable at 127.0.0.1:")
            for args in (["projections", "status"], ["projections", "rebuild", "users"], ["audit", "verify"])
        ),
        *(
            (args, kafka_down, 1, "Kafka unavailable at 127.0.0.1:")
            for args in (["projections", "status", "--json"], ["projections", "rebuild", "users"], ["audit", "verify"])
        ),
        (["projections", "status"], unconfigured, 2, "no servers configured"),
    ]
    with ThreadPoolExecutor(len(runs)) as pool:  # each waits for its timeout: run them side by side
        results = list(pool.map(lambda run: ops.cli(*run[0], env=run[1], timeout=60), runs))
    for (args, _, status, words), result in zip(runs, results, strict=True):
        assert result.returncode == status, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and words in result.stderr, (args, result.stderr)
        assert result.stderr.startswith(f"parley {' '.join(args[:2])}: ")
        assert "Traceback" not in result.stderr and result.stdout == ""


async def test_events_the_projection_cannot_apply_are_left_out_like_the_live_agent_does(ops: OpsEnv) -> None:
    await ops.create_topics(events=2)
    log = LogBuilder(seed=39)
    users = [log.user(f"u{i}") for i in range(3)]
    conversations = [log.conversation(users[0], users[1:]) for _ in range(4)]
    for n in range(200):
        log.message(conversations[n % 4], users[n % 3], "boom" if n % 37 == 5 else f"fine {n}")
    await ops.produce(log.events)
    report = await rebuild_projection(ops.settings, "fragile", projections={"fragile": Fragile()}, settle_s=0.0)
    healthy = [e for e in log.events if "boom" not in str(e.payload.get("body", ""))]
    assert await documents(ops.db, report.collection) == expected_docs(MessageCounts(), healthy)
