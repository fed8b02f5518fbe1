"""Ack and push latency of messages through a running platform (figures, never a timed test).

    python -m bench.latency --data-dir .parley        # a running `parley up --data-dir .parley`
    python -m bench.latency --url http://127.0.0.1:8000 --messages 200

Two users, one direct conversation; each message is sent by one and awaited as an ack by it
(ack latency) and as a `message:new` push by the other (push latency), one at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.clients import connect, percentile, user


async def run(url: str, messages: int) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        _alice_id, alice_token = await user(http, f"bench_a_{tag}")
        bob_id, bob_token = await user(http, f"bench_b_{tag}")
    alice, bob = await connect(url, alice_token), await connect(url, bob_token)
    pushed: dict[str, float] = {}
    waiters: dict[str, asyncio.Future[float]] = {}

    async def on_new(data: dict[str, Any]) -> None:
        now = time.perf_counter()
        body = str(data.get("body"))
        pushed[body] = now
        fut = waiters.pop(body, None)
        if fut is not None and not fut.done():
            fut.set_result(now)

    bob.on("message:new", on_new)
    try:
        created = await alice.call("conversation:create", {"kind": "direct", "participant_ids": [bob_id]}, timeout=30)
        if not created.get("ok"):
            raise RuntimeError(f"conversation:create failed: {created}")
        conv = created["data"]["conversation_id"]
        acks: list[float] = []
        pushes: list[float] = []
        loop = asyncio.get_running_loop()
        for i in range(messages):
            body = f"bench {tag} {i}"
            fut: asyncio.Future[float] = loop.create_future()
            waiters[body] = fut
            t0 = time.perf_counter()
            ack = await alice.call("message:send", {"conversation_id": conv, "body": body}, timeout=30)
            t_ack = time.perf_counter()
            if not ack.get("ok"):
                raise RuntimeError(f"message:send failed: {ack}")
            early = pushed.get(body)
            t_push = early if early is not None else await asyncio.wait_for(fut, timeout=30)
            acks.append((t_ack - t0) * 1000)
            pushes.append((t_push - t0) * 1000)
        return {
            "messages": messages,
            "first_message": {"ack_ms": round(acks[0], 1), "push_ms": round(pushes[0], 1)},
            "ack_ms": {
                "p50": round(statistics.median(acks), 1),
                "p95": round(percentile(acks, 0.95), 1),
                "p99": round(percentile(acks, 0.99), 1),
            },
            "push_ms": {
                "p50": round(statistics.median(pushes), 1),
                "p95": round(percentile(pushes, 0.95), 1),
                "p99": round(percentile(pushes, 0.99), 1),
            },
        }
    finally:
        await alice.disconnect()
        await bob.disconnect()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="gateway URL (default: from --data-dir, else 127.0.0.1:8000)")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--messages", type=int, default=100)
    args = parser.parse_args()
    url = args.url
    if url is None and args.data_dir is not None:
        run_file = args.data_dir / "run.json"
        if not run_file.exists():
            print(f"bench: no running platform at {args.data_dir}", file=sys.stderr)
            return 2
        url = json.loads(run_file.read_text())["gateway_url"]
    report = asyncio.run(run(url or "http://127.0.0.1:8000", args.messages))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
