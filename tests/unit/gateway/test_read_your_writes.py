"""Read-your-writes waits end on notifications, with one query as the fallback."""

from __future__ import annotations

import asyncio

from api.read_your_writes import ReadYourWrites


class Checks:
    """A fallback query that counts its calls."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.calls = 0

    async def __call__(self) -> bool:
        self.calls += 1
        return self.answer


async def test_a_notification_ends_the_wait() -> None:
    ryw = ReadYourWrites()
    check = Checks(False)
    waiting = asyncio.create_task(ryw.wait("conversation:c", 3, 5.0, check))
    await asyncio.sleep(0)
    assert ryw.waiting == 1
    ryw.applied({"conversation:c": 2})
    await asyncio.sleep(0)
    assert not waiting.done()  # version 2 is not enough
    ryw.applied({"conversation:c": 4})
    assert await waiting is True
    assert check.calls == 0 and ryw.waiting == 0


async def test_a_version_already_applied_needs_no_wait() -> None:
    ryw = ReadYourWrites()
    ryw.applied({"conversation:c": 7})  # the notification came before the ack
    check = Checks(False)
    assert await ryw.wait("conversation:c", 7, 5.0, check) is True
    assert check.calls == 0


async def test_one_notification_releases_every_waiter_it_covers() -> None:
    ryw = ReadYourWrites()
    check = Checks(False)
    tasks = [asyncio.create_task(ryw.wait("conversation:c", v, 5.0, check)) for v in range(1, 101)]
    await asyncio.sleep(0)
    ryw.applied({"conversation:c": 60})
    await asyncio.sleep(0)
    assert sum(t.done() for t in tasks) == 60 and ryw.waiting == 40
    ryw.applied({"conversation:c": 100, "conversation:other": 1})
    assert all(await asyncio.gather(*tasks))
    assert check.calls == 0 and ryw.waiting == 0


async def test_a_missed_notification_costs_one_query_after_the_bound() -> None:
    ryw = ReadYourWrites()
    caught_up = Checks(True)
    assert await ryw.wait("conversation:c", 1, 0.05, caught_up) is True
    behind = Checks(False)
    assert await ryw.wait("conversation:c", 1, 0.05, behind) is False
    assert caught_up.calls == 1 and behind.calls == 1 and ryw.waiting == 0


async def test_a_failing_fallback_is_a_late_ack_not_an_error() -> None:
    async def broken() -> bool:
        raise ConnectionError("mongo down")

    assert await ReadYourWrites().wait("conversation:c", 1, 0.01, broken) is False


async def test_remembered_versions_are_bounded_least_recently_used_first() -> None:
    ryw = ReadYourWrites(capacity=3)
    ryw.applied({"s1": 1, "s2": 1, "s3": 1})
    ryw.applied({"s1": 2})  # s1 is now the most recent
    ryw.applied({"s4": 1})
    assert ryw.seen("s2") is None and ryw.seen("s1") == 2 and ryw.seen("s4") == 1


async def test_versions_never_go_back() -> None:
    ryw = ReadYourWrites()
    ryw.applied({"s": 5})
    ryw.applied({"s": 3})  # a redelivered older batch
    assert ryw.seen("s") == 5
