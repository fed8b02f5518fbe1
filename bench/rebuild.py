"""How fast a projection rebuilds, against what the servers can do at all.

    python -m bench.rebuild [--events 100000] [--data-dir DIR]

With ``--data-dir`` it uses the servers of the ``parley up`` running on DIR; without, it
starts a throwaway local stack (Kafka, MongoDB) in a temporary dir.
Either way it writes into its own topics (prefix ``bench-<id>``) and its own database, so
the platform's data is untouched, and removes both at the end (``--keep`` keeps them).

It writes N ``MessageSent`` events spread over ~1,000 conversations, then times:
  (a) a rebuild of the ``messages`` projection from that log (infra.rebuild);
  (b) a raw read: a plain consumer reading the same records, undecoded;
  (c) a raw write: ``insert_many`` of N message-shaped documents in batches;
and prints events/s for each and the ratio rebuild / min(raw read, raw write) (goal >= 0.5).
Figures only: nothing here asserts on timing.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from domain.envelope import EventEnvelope, event_id_for, iso
from infra.kafka.log_reader import LogReader
from infra.kafka.producer import EventProducer
from infra.mongo.client import mongo_client, mongo_db
from infra.settings import Settings

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "we",
    "ship",
    "the",
    "release",
    "tonight",
    "and",
    "review",
    "the",
    "numbers",
    "tomorrow",
    "morning",
    "before",
    "standup",
    "lunch",
    "coffee",
    "deploy",
    "rollback",
    "ticket",
    "meeting",
    "design",
    "draft",
    "budget",
    "invoice",
    "holiday",
    "weekend",
    "photo",
    "link",
    "call",
    "later",
]


def synthetic_events(n: int, conversations: int, seed: int = 7) -> list[EventEnvelope]:
    """N MessageSent events (schema v2, as the domain writes them) over the conversations."""
    rng = random.Random(seed)
    conv_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(conversations)]
    members = {
        c: [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(rng.randint(2, 8))] for c in conv_ids
    }
    seqs = dict.fromkeys(conv_ids, 0)
    start = time.time() - n * 0.05
    out: list[EventEnvelope] = []
    for i in range(n):
        conv = conv_ids[rng.randrange(conversations)]
        seqs[conv] += 1
        sender = rng.choice(members[conv])
        command_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        at = _at(start + i * 0.05)
        body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40)))
        out.append(
            EventEnvelope(
                event_id=event_id_for(command_id, 0),
                type="MessageSent",
                schema_version=2,
                stream_id=f"conversation:{conv}",
                stream_version=seqs[conv] + 1,  # version 1 would be the ConversationCreated
                occurred_at=at,
                actor_id=sender,
                correlation_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                causation_id=command_id,
                payload={
                    "conversation_id": conv,
                    "message_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "seq": seqs[conv],
                    "sender_id": sender,
                    "body": body,
                    "format": "plain",
                    "sent_at": iso(at),
                },
            )
        )
    return out


def _at(ts: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC)


@asynccontextmanager
async def servers(data_dir: Path | None) -> AsyncIterator[Settings]:
    """The servers of a running `parley up`, or a throwaway local stack of our own."""
    if data_dir is not None:
        from api.cli.context import load_settings

        yield load_settings(data_dir)
        return
    from infra.localstack.datadir import DataDir
    from infra.localstack.stack import LocalStack

    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        # Only Kafka and MongoDB: the other URLs are set so that none start.
        base = Settings(
            data_dir=Path(tmp),
            redis_url="redis://127.0.0.1:1",
            elasticsearch_url="http://127.0.0.1:1",
            s3_endpoint="127.0.0.1:1",
        )
        stack = LocalStack(base, DataDir.at(Path(tmp)))
        print("starting a throwaway local stack (Kafka, MongoDB) ...", file=sys.stderr)
        try:
            yield await stack.start()
        finally:
            await stack.supervisor.stop_all()


async def write_log(settings: Settings, events: list[EventEnvelope], partitions: int) -> float:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="parley-bench")
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(settings.events_topic, partitions, 1), NewTopic(settings.rejections_topic, 1, 1)]
        )
    finally:
        await admin.close()
    t0 = time.perf_counter()
    async with EventProducer(settings, linger_ms=20) as producer:
        for i in range(0, len(events), 10_000):
            await producer.send_events(events[i : i + 10_000])
    return time.perf_counter() - t0


async def raw_read(settings: Settings, batch_size: int) -> tuple[int, float]:
    async with LogReader(settings, settings.events_topic, batch_size=batch_size) as reader:
        t0 = time.perf_counter()
        n = 0
        async for records in reader.raw_batches():
            n += len(records)
        return n, time.perf_counter() - t0


async def raw_write(settings: Settings, events: list[EventEnvelope], batch_size: int) -> float:
    client = mongo_client(settings)
    try:
        coll = mongo_db(client, settings)["bench_raw_write"]
        await coll.drop()
        docs = [
            {
                "_id": e.payload["message_id"],
                **e.payload,
                "edited_at": None,
                "deleted": False,
                "reactions": {},
                "_stream": e.stream_id,
                "_sv": e.stream_version,
            }
            for e in events
        ]
        t0 = time.perf_counter()
        for i in range(0, len(docs), batch_size):
            await coll.insert_many(docs[i : i + batch_size], ordered=False)
        return time.perf_counter() - t0
    finally:
        await client.close()


async def cleanup(settings: Settings) -> None:
    client = mongo_client(settings)
    try:
        await client.drop_database(settings.mongo_db)
    finally:
        await client.close()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="parley-bench")
    await admin.start()
    try:
        await admin.delete_topics([settings.events_topic, settings.rejections_topic])
    except Exception as exc:  # the topics are the bench's own; leaving them is harmless
        print(f"(could not delete the bench topics: {exc})", file=sys.stderr)
    finally:
        await admin.close()


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


async def run(args: argparse.Namespace) -> int:
    from infra.rebuild import rebuild_projection

    async with servers(args.data_dir) as platform:
        tag = uuid.uuid4().hex[:8]
        settings = platform.model_copy(update={"topic_prefix": f"bench-{tag}", "mongo_db": f"bench_{tag}"})
        print(f"bench namespace: topics {settings.topic_prefix}.*, database {settings.mongo_db}", file=sys.stderr)
        try:
            events = synthetic_events(args.events, args.conversations)
            wrote = await write_log(settings, events, args.partitions)
            print(f"wrote {len(events):,} MessageSent events in {wrote:.1f}s", file=sys.stderr)
            del events  # like the CLI, the rebuild runs in a process that does not hold the log
            gc.collect()

            report = await rebuild_projection(settings, "messages", batch_size=args.batch_size)
            read_n, read_s = await raw_read(settings, args.batch_size)
            events = synthetic_events(args.events, args.conversations)
            write_s = await raw_write(settings, events, args.batch_size)
        finally:
            if not args.keep:
                await cleanup(settings)

    rebuild_rate = rate(report.bulk_records, report.bulk_seconds)
    whole_rate = rate(report.records, report.seconds)
    read_rate = rate(read_n, read_s)
    write_rate = rate(len(events), write_s)
    ratio = rebuild_rate / min(read_rate, write_rate)
    print()
    print(
        f"events: {len(events):,} MessageSent in {args.conversations:,} conversations, "
        f"{args.partitions} partitions, batch {args.batch_size:,}"
    )
    print(
        f"(a) rebuild messages     {rebuild_rate:>12,.0f} events/s   "
        f"({report.bulk_records:,} in {report.bulk_seconds:.2f}s)"
    )
    print(
        f"    whole rebuild command {whole_rate:>11,.0f} events/s   ({report.records:,} in {report.seconds:.2f}s, "
        "incl. catch-ups and the 1.5 s swap settle)"
    )
    print(f"(b) raw read (consumer)  {read_rate:>12,.0f} events/s   ({read_n:,} in {read_s:.2f}s)")
    print(f"(c) raw write (insert)   {write_rate:>12,.0f} events/s   ({len(events):,} in {write_s:.2f}s)")
    print(f"ratio rebuild / min(raw read, raw write) = {ratio:.2f}  (goal >= 0.5)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rebuild", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--conversations", type=int, default=1_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=2_000)
    parser.add_argument("--data-dir", type=Path, default=None, help="use the servers of `parley up --data-dir DIR`")
    parser.add_argument("--keep", action="store_true", help="keep the bench topics and database")
    args = parser.parse_args(argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
