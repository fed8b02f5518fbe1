"""Read-your-writes waits end on notifications, with one query as the fallback."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from api.read_your_writes import AppliedVersionsFeed, OnApplied, ReadYourWrites
from infra.applied_versions import decode_versions, encode_versions


class InMemoryFeed:
    """The notification source as the worker's publisher would drive it, without Redis."""

    def __init__(self, on_applied: OnApplied) -> None:
        self._on_applied = on_applied
        self.running = False

    async def start(self) -> None:
        self.running = True

    async def stop(self) -> None:
        self.running = False

    def announce(self, versions: Mapping[str, int]) -> None:
        if self.running:  # a stopped (or not yet started) feed misses what is published
            self._on_applied(versions)


class Checks:
    """A fallback query that counts its calls."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.calls = 0

    async def __call__(self) -> bool:
        self.calls += 1
        return self.answer


async def started() -> tuple[ReadYourWrites, InMemoryFeed]:
    ryw = ReadYourWrites()
    feed = InMemoryFeed(ryw.applied)
    _: AppliedVersionsFeed = feed  # the port GatewayServices starts and stops
    await feed.start()
    return ryw, feed


async def test_a_notification_ends_the_wait() -> None:
    ryw, feed = await started()
    check = Checks(False)
    waiting = asyncio.create_task(ryw.wait("conversation:c", 3, 5.0, check))
    await asyncio.sleep(0)
    assert ryw.waiting == 1
    feed.announce({"conversation:c": 2})
    await asyncio.sleep(0)
    assert not waiting.done()  # version 2 is not enough
    feed.announce({"conversation:other": 9})
    await asyncio.sleep(0)
    assert not waiting.done()  # another stream's version says nothing about this one
    feed.announce({"conversation:c": 4})
    assert await waiting is True
    assert check.calls == 0 and ryw.waiting == 0


async def test_a_version_already_applied_needs_no_wait() -> None:
    ryw, feed = await started()
    feed.announce({"conversation:c": 7})  # the notification came before the ack
    check = Checks(False)
    assert await ryw.wait("conversation:c", 7, 5.0, check) is True
    assert await ryw.wait("conversation:c", 5, 5.0, check) is True
    assert check.calls == 0 and ryw.waiting == 0


async def test_one_notification_releases_every_waiter_it_covers() -> None:
    ryw, feed = await started()
    check = Checks(False)
    tasks = [asyncio.create_task(ryw.wait("conversation:c", v, 5.0, check)) for v in range(1, 1001)]
    await asyncio.sleep(0)
    assert ryw.waiting == 1000
    feed.announce({"conversation:c": 600})
    await asyncio.sleep(0)
    assert sum(t.done() for t in tasks) == 600 and ryw.waiting == 400
    feed.announce({"conversation:c": 1000, "conversation:other": 1})
    assert all(await asyncio.gather(*tasks))
    assert check.calls == 0 and ryw.waiting == 0


async def test_a_missed_notification_costs_one_query_after_the_bound() -> None:
    ryw, feed = await started()
    await feed.stop()  # e.g. the subscription's connection dropped: what is published is missed
    caught_up = Checks(True)
    waiting = asyncio.create_task(ryw.wait("conversation:c", 1, 0.05, caught_up))
    await asyncio.sleep(0)
    feed.announce({"conversation:c": 1})
    assert await waiting is True
    behind = Checks(False)
    assert await ryw.wait("conversation:c", 1, 0.05, behind) is False
    assert caught_up.calls == 1 and behind.calls == 1 and ryw.waiting == 0


async def test_a_failing_fallback_is_a_late_ack_not_an_error() -> None:
    async def broken() -> bool:
        raise ConnectionError("mongo down")

    assert await ReadYourWrites().wait("conversation:c", 1, 0.01, broken) is False


async def test_a_hanging_fallback_is_bounded_too() -> None:
    async def hangs() -> bool:
        await asyncio.sleep(60)
        return True

    async with asyncio.timeout(1.0):
        assert await ReadYourWrites().wait("conversation:c", 1, 0.02, hangs) is False


async def test_a_cancelled_wait_leaves_no_waiter_behind() -> None:
    ryw, _ = await started()
    waiting = asyncio.create_task(ryw.wait("conversation:c", 3, 5.0, Checks(True)))
    await asyncio.sleep(0)
    assert ryw.waiting == 1
    waiting.cancel()  # the client went away
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert ryw.waiting == 0


async def test_remembered_versions_are_bounded_least_recently_used_first() -> None:
    ryw = ReadYourWrites(capacity=3)
    ryw.applied({"s1": 1, "s2": 1, "s3": 1})
    ryw.applied({"s1": 2})  # s1 is now the most recent
    ryw.applied({"s4": 1})
    assert ryw.seen("s2") is None and ryw.seen("s1") == 2 and ryw.seen("s4") == 1
    ryw.applied({f"x{n}": n for n in range(100)})
    assert [ryw.seen(f"x{n}") for n in (96, 97, 98, 99)] == [None, 97, 98, 99]


async def test_a_forgotten_stream_is_one_query_not_a_wrong_answer() -> None:
    ryw = ReadYourWrites(capacity=1)
    ryw.applied({"s1": 5})
    ryw.applied({"s2": 1})  # s1 evicted
    check = Checks(True)
    assert await ryw.wait("s1", 5, 0.02, check) is True
    assert check.calls == 1


async def test_versions_never_go_back() -> None:
    ryw = ReadYourWrites()
    ryw.applied({"s": 5})
    ryw.applied({"s": 3})  # a redelivered older batch
    assert ryw.seen("s") == 5
    check = Checks(False)
    assert await ryw.wait("s", 4, 5.0, check) is True and check.calls == 0


def test_the_payload_is_a_compact_map_of_stream_versions() -> None:
    text = encode_versions({"conversation:a": 3, "username:bob": 1})
    assert text == '{"conversation:a":3,"username:bob":1}'
    assert decode_versions(text) == {"conversation:a": 3, "username:bob": 1}


@pytest.mark.parametrize("bad", ["[1]", '{"s": "3"}', '{"s": -1}', '{"s": 1.5}', '{"s": true}', "nope"])
def test_a_malformed_payload_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_versions(bad)
