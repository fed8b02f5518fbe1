"""Search latency over real sockets, with the cache cold and warm (figures, never a timed test).

    python -m bench.search                          # its own throwaway `parley up` (temp data dir, free port)
    python -m bench.search --messages 5000 --queries 300
    python -m bench.search --data-dir .parley       # a running `parley up --data-dir .parley` (its limits apply)

N messages are sent (and so indexed: an ack vouches for the index) into C group conversations of two
users, with bodies of random words from a vocabulary. Then Q different one- and two-word queries are
timed as `search:messages` round trips (emit to ack) by one participant: cold, every query for the first
time (a cache miss: read model, index, cache write); then warm, the same queries again with nothing
written in between (cache hits: read model and cache read). The same for `search:conversations`
(titles) and `search:users` (20 more users, found by whole username and by prefix). Prints
p50/p99 (and mean) per phase as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import string
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from bench.clients import connect, ok, percentile, user
from bench.load.servers import BENCH_RATE_LIMITS as PLATFORM_RATE_LIMITS
from bench.load.servers import UNREACHED, StartError, start_platform

# Its own platform runs with limits no bench reaches (the default `search` limit is 60 a minute).
# Its default `search` limit is 60 a minute; the bench runs over it.
BENCH_RATE_LIMITS = {**PLATFORM_RATE_LIMITS, "search": UNREACHED}
SEND_CONCURRENCY = 16
USERS = 20  # users registered for the search:users phase


def _summary(samples_ms: list[float], hits: list[int]) -> dict[str, Any]:
    return {
        "queries": len(samples_ms),
        "p50_ms": round(percentile(samples_ms, 0.5), 2),
        "p99_ms": round(percentile(samples_ms, 0.99), 2),
        "mean_ms": round(statistics.fmean(samples_ms), 2),
        "mean_hits": round(statistics.fmean(hits), 1),
    }


async def _timed(call: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]], payloads: list[dict[str, Any]]) -> Any:
    samples: list[float] = []
    hits: list[int] = []
    for payload in payloads:
        t0 = time.perf_counter()
        data = await call(payload)
        samples.append((time.perf_counter() - t0) * 1000)
        hits.append(len(data["hits"]))
    return _summary(samples, hits)


async def run(url: str, messages: int, conversations: int, queries: int, vocabulary: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    tag = uuid.uuid4().hex[:8]
    words = ["".join(rng.choice(string.ascii_lowercase) for _ in range(7)) for _ in range(vocabulary)]
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        _, alice_token = await user(http, f"bench_sa_{tag}", f"bench_sa_{tag}")
        bob_id, bob_token = await user(http, f"bench_sb_{tag}", f"bench_sb_{tag}")
        others = [f"bench_su{i}_{tag}" for i in range(USERS)]
        for name in others:  # more users to find: by username prefix, by exact username
            await user(http, name, name)
    alice, bob = await connect(url, alice_token), await connect(url, bob_token)
    try:
        conv_ids = []
        for i in range(conversations):
            title = f"{words[i % len(words)]} room {i}"
            created = await ok(
                alice, "conversation:create", {"kind": "group", "participant_ids": [bob_id], "title": title}
            )
            conv_ids.append(created["conversation_id"])
        t0 = time.perf_counter()
        pending = asyncio.Semaphore(SEND_CONCURRENCY)

        async def send(i: int) -> None:
            body = " ".join(rng.choice(words) for _ in range(8))
            async with pending:
                await ok(alice, "message:send", {"conversation_id": conv_ids[i % conversations], "body": body})

        await asyncio.gather(*(send(i) for i in range(messages)))
        indexing_s = time.perf_counter() - t0

        message_queries = [{"query": f"{rng.choice(words)} {rng.choice(words)}"} for _ in range(queries // 2)]
        message_queries += [{"query": rng.choice(words)} for _ in range(queries - len(message_queries))]
        message_queries = list({q["query"]: q for q in message_queries}.values())  # each one new when cold
        few = max(10, queries // 5)
        conversation_queries = list({w: {"query": w} for w in words[:few]}.values())
        user_queries = [{"query": name} for name in others] + [{"query": f"bench_su{i}"} for i in range(USERS)]

        def on(event: str) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
            return lambda payload: ok(bob, event, payload)

        report: dict[str, Any] = {
            "messages": messages,
            "conversations": conversations,
            "indexing_s": round(indexing_s, 1),
            "sent_per_s": round(messages / indexing_s, 1) if indexing_s > 0 else None,
        }
        for event, payloads in (
            ("search:messages", message_queries),
            ("search:conversations", conversation_queries),
            ("search:users", user_queries),
        ):
            cold = await _timed(on(event), payloads)
            warm = await _timed(on(event), payloads)
            report[event] = {"cold": cold, "warm": warm}
        return report
    finally:
        await alice.disconnect()
        await bob.disconnect()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", default=None, help="gateway URL of a running platform")
    parser.add_argument("--data-dir", type=Path, default=None, help="a running `parley up --data-dir`")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--vocabulary", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    sizes = (args.messages, args.conversations, args.queries, args.vocabulary, args.seed)
    url = args.url
    if url is None and args.data_dir is not None:
        run_file = args.data_dir / "run.json"
        if not run_file.exists():
            print(f"bench.search: no running platform at {args.data_dir}", file=sys.stderr)
            return 2
        url = json.loads(run_file.read_text())["gateway_url"]
    if url is not None:
        print(json.dumps(asyncio.run(run(url, *sizes)), indent=2))
        return 0
    with tempfile.TemporaryDirectory(prefix="parley-bench-search-") as tmp:
        log_path = Path(tmp) / "up.log"
        print("bench.search: starting its own platform ...", file=sys.stderr)
        try:
            child, url = start_platform(Path(tmp) / "data", log_path, BENCH_RATE_LIMITS)
        except StartError as exc:
            print(f"bench.search: {exc}", file=sys.stderr)
            return 1
        try:
            report = asyncio.run(run(url, *sizes))
        finally:
            code = child.stop()
            if code != 0:
                print(f"bench.search: parley up exited with {code}", file=sys.stderr)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
