"""Sending a record through the worker's Faust app costs no turn of the event loop once the
producer runs (Faust's own ``maybe_start_producer`` yields three times per record)."""

from __future__ import annotations

import asyncio
from typing import Any

import faust

from streams.idempotent import ParleyApp


class StartedProducer:
    started = True

    async def maybe_start(self) -> bool:
        return False


async def turns_taken(call: Any) -> int:
    """How many times other tasks ran while ``call`` was awaited."""
    turns = 0
    stop = False

    async def count() -> None:
        nonlocal turns
        while not stop:
            turns += 1
            await asyncio.sleep(0)

    counter = asyncio.create_task(count())
    await asyncio.sleep(0)
    before = turns
    await call()
    taken = turns - before
    stop = True
    await counter
    return taken


def test_a_running_producer_is_returned_without_yielding() -> None:
    app = ParleyApp("turns", broker="kafka://127.0.0.1:9")
    producer = StartedProducer()
    app._producer = producer  # type: ignore[assignment]  # what ``app.producer`` returns once created

    async def scenario() -> tuple[Any, int]:
        got = await app.maybe_start_producer()
        return got, await turns_taken(app.maybe_start_producer)

    got, taken = asyncio.run(scenario())
    assert got is producer
    assert taken == 0


def test_faust_own_guard_does_yield_which_is_why_it_is_bypassed() -> None:
    app = faust.App("turns-faust", broker="kafka://127.0.0.1:9")
    app._producer = StartedProducer()  # type: ignore[assignment]
    taken = asyncio.run(turns_taken(app.maybe_start_producer))
    assert taken >= 3
