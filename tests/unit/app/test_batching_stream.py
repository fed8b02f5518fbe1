"""An agent's batch window opens with its first event, and an idle agent is never woken."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import faust
import pytest

from streams.batching import BatchingStream

WINDOW_S = 0.1


def probe_app() -> faust.App:
    return faust.App(
        "batching-probe", broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False, Stream=BatchingStream
    )


def batching_agent(app: faust.App, max_: int, batches: list[tuple[float, list[Any]]]) -> Any:
    async def take(stream: Any) -> None:
        async for events in stream.take_events(max_, within=WINDOW_S):
            batches.append((time.monotonic(), [event.value for event in events]))

    return app.agent(name="take")(take)


async def wait_for(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110  # the agent offers nothing to wait on but its results
            await asyncio.sleep(0.005)


async def test_the_events_that_arrive_within_the_window_of_the_first_are_one_batch() -> None:
    batches: list[tuple[float, list[Any]]] = []
    agent = batching_agent(probe_app(), 100, batches)
    async with agent.test_context() as tested:
        first = time.monotonic()
        await tested.put(1)
        await asyncio.sleep(WINDOW_S / 4)
        await tested.put(2)
        await wait_for(lambda: len(batches) == 1)
        await asyncio.sleep(WINDOW_S)  # nothing else comes out of the window
        assert [values for _, values in batches] == [[1, 2]]
        assert batches[0][0] - first >= WINDOW_S * 0.9, "the window runs from the first event"
        await tested.put(3)
        await wait_for(lambda: len(batches) == 2)
        assert batches[1][1] == [3]


async def test_a_batch_never_holds_more_than_max_events() -> None:
    batches: list[tuple[float, list[Any]]] = []
    agent = batching_agent(probe_app(), 3, batches)
    async with agent.test_context() as tested:
        for value in range(7):
            await tested.put(value)
        await wait_for(lambda: sum(len(values) for _, values in batches) == 7)
        assert [values for _, values in batches] == [[0, 1, 2], [3, 4, 5], [6]]


async def test_an_idle_agent_is_not_woken(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float | None] = []
    wait_for_stopped = BatchingStream.wait_for_stopped

    async def counted(self: BatchingStream, *coros: Any, timeout: Any = None) -> bool:  # noqa: ASYNC109  # Faust's signature
        waits.append(timeout)
        return await wait_for_stopped(self, *coros, timeout=timeout)

    monkeypatch.setattr(BatchingStream, "wait_for_stopped", counted)
    batches: list[tuple[float, list[Any]]] = []
    agent = batching_agent(probe_app(), 100, batches)
    async with agent.test_context() as tested:
        await asyncio.sleep(WINDOW_S * 5)  # five windows without an event
        assert batches == [] and waits == [None], "one wait, without a timeout, for the first event"
        await tested.put("x")
        await wait_for(lambda: len(batches) == 1)
        assert waits[:3] == [None, WINDOW_S, None], "the window, then the next wait for a first event"
