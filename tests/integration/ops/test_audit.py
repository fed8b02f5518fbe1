"""The compliance trail against real servers: appends, `parley audit verify`, tampering."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime

from domain.envelope import EventEnvelope
from infra.mongo.audit_trail import AuditTrail, VerifyReport, live_trail_collection, verify_trail
from infra.rebuild import rebuild_projection
from projections.audit import GENESIS, AuditRecord, record_hash
from tests.integration.ops.conftest import OpsEnv
from tests.integration.ops.live import LiveAgent, documents
from tests.unit.ops.events import LogBuilder, chat_log


async def _live_trail(ops: OpsEnv, seed: int = 21, messages: int = 40) -> LiveAgent:
    await ops.create_topics(events=3, rejections=2)
    log = chat_log(seed=seed, messages=messages, v1_every=6)
    await ops.produce(log.events, log.rejections)
    await ops.produce(log.events[5:12])  # repeated copies: recorded once
    agent = LiveAgent(ops.settings, ops.db, {}, batch_size=4)
    await agent.step()
    return agent


async def test_trail_has_one_chain_per_partition_and_redelivery_adds_nothing(ops: OpsEnv) -> None:
    agent = await _live_trail(ops)
    coll = ops.db[await live_trail_collection(ops.db)]
    records = [AuditRecord.from_doc(d) async for d in coll.find({}).sort([("chain", 1), ("seq", 1)])]
    log = chat_log(seed=21, messages=40, v1_every=6)
    assert len(records) == len(log.events) + len(log.rejections)
    chains = {r.chain for r in records}
    assert chains <= {f"{ops.settings.events_topic}:{p}" for p in range(3)} | {
        f"{ops.settings.rejections_topic}:{p}" for p in range(2)
    }
    for chain in chains:
        seqs = [r.seq for r in records if r.chain == chain]
        assert seqs == list(range(1, len(seqs) + 1))
    first = next(r for r in records if r.seq == 1)
    assert first.prev_hash == GENESIS and first.hash == record_hash(first.hashed_fields())
    assert {r.outcome for r in records if r.kind == "rejection"} == {"refused:forbidden"}
    # Redelivery of everything: nothing new.
    agent.positions.clear()
    await agent.step()
    assert await coll.count_documents({}) == len(records)

    result = ops.cli("audit", "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == (
        f"audit trail verified: {len(records)} records in {len(chains)} chains, 0 log records pending"
    )


async def test_pending_counts_the_log_tail_not_yet_recorded(ops: OpsEnv) -> None:
    await _live_trail(ops)
    extra = chat_log(seed=22, messages=6)
    await ops.produce(extra.events)
    report = await verify_trail(ops.settings, ops.db)
    assert report.ok, report.summary()
    assert report.pending == len(extra.events)


async def _tampered(ops: OpsEnv) -> tuple[str, list[AuditRecord]]:
    await _live_trail(ops)
    name = await live_trail_collection(ops.db)
    chain = f"{ops.settings.events_topic}:1"
    records = [AuditRecord.from_doc(d) async for d in ops.db[name].find({"chain": chain}).sort("seq", 1)]
    assert len(records) > 6
    return name, records


async def test_a_changed_field_is_named(ops: OpsEnv) -> None:
    name, records = await _tampered(ops)
    victim = records[3]
    await ops.db[name].update_one({"_id": victim._id}, {"$set": {"actor_id": "someone-else"}})
    result = ops.cli("audit", "verify")
    assert result.returncode == 1
    assert result.stdout.strip() == (
        f"audit trail broken: chain {victim.chain} seq {victim.seq} record {victim._id}: hash mismatch: "
        "the record's fields do not match its hash"
    )


async def test_a_changed_field_with_recomputed_hashes_differs_from_the_log(ops: OpsEnv) -> None:
    name, records = await _tampered(ops)
    # A careful forger rewrites the record and re-links the rest of the chain.
    prev = records[2].hash
    for i, record in enumerate(records[3:], start=3):
        fields = record.hashed_fields()
        if i == 3:
            fields["outcome"] = "refused:forbidden"
        fields["prev_hash"] = prev
        new_hash = record_hash(fields)
        await ops.db[name].replace_one({"_id": record._id}, {**fields, "hash": new_hash})
        prev = new_hash
    report = await verify_trail(ops.settings, ops.db)
    assert not report.ok and report.first_break is not None
    assert (report.first_break.seq, report.first_break.record_id) == (records[3].seq, records[3]._id)
    assert report.first_break.problem == "differs from log"


async def test_a_deleted_record_is_named(ops: OpsEnv) -> None:
    name, records = await _tampered(ops)
    await ops.db[name].delete_one({"_id": records[4]._id})
    result = ops.cli("audit", "verify")
    assert result.returncode == 1
    assert result.stdout.strip() == (
        f"audit trail broken: chain {records[5].chain} seq {records[5].seq} record {records[5]._id}: "
        f"missing record: seq {records[4].seq} not in the trail"
    )


async def test_a_deleted_last_record_is_named(ops: OpsEnv) -> None:
    name, records = await _tampered(ops)
    await ops.db[name].delete_one({"_id": records[-1]._id})
    report = await verify_trail(ops.settings, ops.db)
    assert report.first_break is not None
    assert report.first_break.problem == "missing record"
    assert records[-1]._id in report.first_break.detail


async def test_an_inserted_forged_record_is_named(ops: OpsEnv) -> None:
    name, records = await _tampered(ops)
    last = records[-1]
    forged = {
        **last.hashed_fields(),
        "_id": "f0f0f0f0-0000-4000-8000-000000000000",
        "seq": last.seq + 1,
        "log_offset": last.log_offset + 1,
        "actor_id": "mallory",
        "digest": hashlib.sha256(b"nothing on the log").hexdigest(),
        "prev_hash": last.hash,
    }
    forged["hash"] = record_hash(forged)
    await ops.db[name].insert_one(forged)
    result = ops.cli("audit", "verify")
    assert result.returncode == 1
    assert result.stdout.startswith(
        f"audit trail broken: chain {last.chain} seq {last.seq + 1} record {forged['_id']}: inserted record"
    ), result.stdout


async def test_a_forged_chain_is_named(ops: OpsEnv) -> None:
    name, records = await _tampered(ops)
    fields = {**records[0].hashed_fields(), "_id": "forged", "chain": f"{ops.settings.events_topic}:9"}
    await ops.db[name].insert_one({**fields, "hash": record_hash(fields)})
    report = await verify_trail(ops.settings, ops.db)
    assert report.first_break is not None
    assert (report.first_break.record_id, report.first_break.problem) == ("forged", "inserted record")


async def test_audit_rebuild_reproduces_the_live_trail_exactly(ops: OpsEnv) -> None:
    agent = await _live_trail(ops)
    live = await live_trail_collection(ops.db)
    before = await documents(ops.db, live)
    result = ops.cli("projections", "rebuild", "audit")
    assert result.returncode == 0, result.stderr
    assert "into rm_audit_g2" in result.stdout
    assert await live_trail_collection(ops.db) == "rm_audit_g2"
    assert await documents(ops.db, "rm_audit_g2") == before
    assert live not in await ops.db.list_collection_names()
    # The rebuilt trail keeps growing live, and stays whole.
    more = chat_log(seed=23, messages=5)
    await ops.produce(more.events)
    await agent.step()
    report = await verify_trail(ops.settings, ops.db)
    assert report.ok, report.summary()
    assert (report.records, report.pending) == (len(before) + len(more.events), 0)
    # Rebuilding again gives the same trail again, the live-appended part included.
    grown = await documents(ops.db, "rm_audit_g2")
    again = await rebuild_projection(ops.settings, "audit", settle_s=0.1)
    assert again.collection == "rm_audit_g3"
    assert await documents(ops.db, again.collection) == grown


async def test_verify_while_the_trail_keeps_growing_raises_no_false_alarm(ops: OpsEnv) -> None:
    agent = await _live_trail(ops, messages=400)
    more = LogBuilder(seed=24, start=datetime(2025, 6, 1, tzinfo=UTC))
    users = [more.user(f"live{i}") for i in range(3)]
    conversations = [more.conversation(users[i % 3], [users[(i + 1) % 3]]) for i in range(6)]
    await ops.produce(more.events)
    await agent.step()
    stop = asyncio.Event()

    warmed_up = asyncio.Event()

    async def platform() -> None:  # users keep chatting, the worker keeps recording
        n = 0
        while not stop.is_set():
            await ops.produce([more.message(conversations[n % 6], users[n % 3], f"live {n}") for _ in range(3)])
            await agent.step()
            n += 1
            if n >= 5:
                warmed_up.set()

    before = await ops.db[await live_trail_collection(ops.db)].count_documents({})
    task = asyncio.create_task(platform())
    try:
        await asyncio.wait_for(warmed_up.wait(), 60)  # >= 15 records recorded, and it goes on
        report = await verify_trail(ops.settings, ops.db)
    finally:
        stop.set()
        await task
    assert report.ok, report.summary()
    assert report.records > before + 10  # records written after the log's end was first read


async def _trail_of(ops: OpsEnv, recorded: list[tuple[tuple[int, int], EventEnvelope]]) -> VerifyReport:
    trail = AuditTrail(ops.db)
    for (partition, offset), event in recorded:  # one batch each, in the order two writers got there
        await trail.append(ops.settings.events_topic, [(partition, offset, event)])
    return await verify_trail(ops.settings, ops.db)


async def test_a_copy_recorded_at_a_later_offset_accounts_for_the_earlier_one(ops: OpsEnv) -> None:
    # A partition changing hands: the new owner records an event's later copy (a command decided
    # again) while the old one still holds its first copy, which it then finds recorded and skips.
    await ops.create_topics(events=1, rejections=1)
    events = chat_log(seed=23, messages=4).events[:4]
    placed = await ops.produce(events)
    (later,) = await ops.produce(events[3:])
    recorded = [*zip(placed[:3], events[:3], strict=True), (later, events[3]), (placed[3], events[3])]
    report = await _trail_of(ops, recorded)
    assert report.ok, report.summary()
    assert report.records == 4


async def test_a_record_at_another_offset_with_the_same_id_but_other_content_accounts_for_nothing(
    ops: OpsEnv,
) -> None:
    await ops.create_topics(events=1, rejections=1)
    events = chat_log(seed=24, messages=3).events[:3]
    placed = await ops.produce(events)
    forged = events[2].model_copy(update={"correlation_id": "not-the-one-sent"})
    (later,) = await ops.produce([forged])
    report = await _trail_of(ops, [*zip(placed[:2], events[:2], strict=True), (later, forged)])
    assert report.first_break is not None
    assert report.first_break.problem == "missing record"
    assert f"@{placed[2][1]} ({events[2].event_id}) has no trail record" in report.first_break.detail
