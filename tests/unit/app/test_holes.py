"""The projection runtime reads back, from the log, records its consumer skipped."""

from __future__ import annotations

from projections.runner import Record
from streams.runtime import Holes

TOPIC = "parley.events"


class Log:
    def __init__(self) -> None:
        self.reads: list[tuple[str, int, int, int]] = []

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[Record]:
        self.reads.append((topic, partition, start, end))
        return [Record(partition, offset, f"{partition}@{offset}".encode()) for offset in range(start, end)]


class Saved:
    def __init__(self, positions: dict[int, int]) -> None:
        self.positions = positions
        self.loads = 0

    async def load(self, name: str, topic: str) -> dict[int, int]:
        self.loads += 1
        return dict(self.positions)


def batch(partition: int, *offsets: int) -> list[Record]:
    return [Record(partition, o, f"{partition}@{o}".encode()) for o in offsets]


async def test_a_batch_that_starts_past_the_saved_position_is_preceded_by_what_it_skipped() -> None:
    log, saved = Log(), Saved({0: 16, 1: 40})
    holes = Holes(log, saved)
    records = batch(0, 17, 18) + batch(1, 40, 41)
    completed = await holes.complete(TOPIC, "conversations", records)
    assert [(r.partition, r.offset) for r in completed] == [(0, 16), (0, 17), (0, 18), (1, 40), (1, 41)]
    assert log.reads == [(TOPIC, 0, 16, 17)]


async def test_once_applied_the_next_batch_is_taken_as_delivered_without_asking() -> None:
    log, saved = Log(), Saved({0: 10})
    holes = Holes(log, saved)
    first = batch(0, 10, 11)
    assert await holes.complete(TOPIC, "conversations", first) == first
    holes.applied(TOPIC, first)
    loads = saved.loads
    again = batch(0, 11, 12)  # a redelivery overlapping what was applied: fine
    assert await holes.complete(TOPIC, "conversations", again) == again
    assert saved.loads == loads and log.reads == []
    later = batch(0, 15)  # 12..14 never came
    assert [r.offset for r in await holes.complete(TOPIC, "conversations", later)] == [12, 13, 14, 15]


async def test_another_workers_progress_counts() -> None:
    # This worker applied up to 10 long ago; the partition moved away and back, and the other
    # worker saved 30: a batch from 30 is no hole, one from 32 misses 30 and 31 only.
    log, saved = Log(), Saved({0: 30})
    holes = Holes(log, saved)
    holes.applied(TOPIC, batch(0, 9))
    assert await holes.complete(TOPIC, "conversations", batch(0, 30)) == batch(0, 30)
    assert [r.offset for r in await holes.complete(TOPIC, "conversations", batch(0, 32))] == [30, 31, 32]


async def test_a_record_missing_inside_a_batch_is_read_back_in_its_place() -> None:
    # Around a rebalance a stream skips what it fetched under the previous generation and takes
    # what it fetched again: a batch can hold 300, 301 and 303 without 302. Applied as delivered,
    # the positions would pass 302 and nobody would ever apply it.
    log, saved = Log(), Saved({0: 300})
    holes = Holes(log, saved)
    completed = await holes.complete(TOPIC, "conversations", batch(0, 300, 301, 303, 306))
    assert [r.offset for r in completed] == [300, 301, 302, 303, 304, 305, 306]
    assert log.reads == [(TOPIC, 0, 302, 303), (TOPIC, 0, 304, 306)]


async def test_a_batch_is_applied_in_log_order_and_each_offset_once() -> None:
    # A record taken late (held in the stream's buffer across a rebalance) arrives after later ones,
    # and a record fetched twice is taken twice: the trail chains each partition in log order.
    log, saved = Log(), Saved({0: 10, 1: 5})
    holes = Holes(log, saved)
    delivered = batch(1, 6, 5) + batch(0, 11, 10, 11, 12) + batch(1, 7)
    completed = await holes.complete(TOPIC, "conversations", delivered)
    assert [(r.partition, r.offset) for r in completed] == [(0, 10), (0, 11), (0, 12), (1, 5), (1, 6), (1, 7)]
    assert log.reads == []


async def test_a_tail_stuck_behind_the_consumers_position_is_named_on_the_second_look() -> None:
    # The stream skipped 12..14, and nothing was appended after them: no later batch reveals them.
    log, saved = Log(), Saved({})
    holes = Holes(log, saved)
    holes.applied(TOPIC, batch(0, 10, 11))
    holes.applied(TOPIC, batch(1, 7))
    fetched = {0: 15, 1: 8}  # the consumer's positions
    assert await holes.stalled(TOPIC, "conversations", fetched) == {}  # first look: maybe in flight
    assert await holes.stalled(TOPIC, "conversations", fetched) == {0: (12, 15)}
    assert saved.loads == 0  # every partition was known already
    holes.applied(TOPIC, batch(0, 12, 13, 14))
    assert await holes.stalled(TOPIC, "conversations", fetched) == {}


async def test_a_partition_that_moved_since_the_last_look_is_not_stuck() -> None:
    log, saved = Log(), Saved({})
    holes = Holes(log, saved)
    holes.applied(TOPIC, batch(0, 10))
    assert await holes.stalled(TOPIC, "conversations", {0: 20}) == {}
    holes.applied(TOPIC, batch(0, 11, 12))
    assert await holes.stalled(TOPIC, "conversations", {0: 20}) == {}  # it moved: its stream is at work
    assert await holes.stalled(TOPIC, "conversations", {0: 20}) == {0: (13, 20)}


async def test_a_partition_never_applied_here_starts_from_the_saved_position() -> None:
    log, saved = Log(), Saved({0: 40, 1: 9})
    holes = Holes(log, saved)
    fetched = {0: 40, 1: 12, 2: 3}  # 0 is caught up (another worker applied it); 2 has no position
    assert await holes.stalled(TOPIC, "conversations", fetched) == {}
    assert await holes.stalled(TOPIC, "conversations", fetched) == {1: (9, 12), 2: (0, 3)}
    assert saved.loads == 2  # partition 2 is still unknown; 0 and 1 were learnt on the first look


async def test_a_partition_given_up_and_taken_back_starts_over() -> None:
    log, saved = Log(), Saved({})
    holes = Holes(log, saved)
    holes.applied(TOPIC, batch(0, 4))
    assert await holes.stalled(TOPIC, "conversations", {0: 9}) == {}
    assert await holes.stalled(TOPIC, "conversations", {}) == {}  # a rebalance: nothing held
    assert await holes.stalled(TOPIC, "conversations", {0: 9}) == {}  # back: a first look again
    assert await holes.stalled(TOPIC, "conversations", {0: 9}) == {0: (5, 9)}


async def test_an_empty_partition_costs_no_lookup() -> None:
    log, saved = Log(), Saved({})
    holes = Holes(log, saved)
    for _ in range(3):
        assert await holes.stalled(TOPIC, "conversations", {0: 0, 1: 0}) == {}
    assert saved.loads == 0
