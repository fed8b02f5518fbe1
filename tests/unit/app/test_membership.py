"""The decide agent's fence: a lease on the worker's place in the consumer group (streams/membership.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, cast

from faust.types.tuples import ConsumerMessage

from streams.idempotent import abandon
from streams.membership import Membership, Standing


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Coordinator:
    """What the lease reads of aiokafka's group coordinator: its generation (-1 once it was reset)."""

    def __init__(self, generation: int) -> None:
        self.generation = generation


def lease(session_s: float = 10.0, generation: int = 7) -> tuple[Membership, Clock, Coordinator]:
    clock, coordinator = Clock(), Coordinator(generation)
    membership = Membership(session_s, clock)
    membership.follow(lambda: coordinator.generation)
    return membership, clock, coordinator


def test_an_answered_heartbeat_holds_the_lease_for_the_session_less_its_margin() -> None:
    membership, clock, _ = lease(session_s=10.0)
    assert membership.lease_s == 8.0
    membership.renewed(7, clock.now)
    clock.now += 7.9
    assert membership.standing(7) is Standing.FRESH
    clock.now += 0.2  # 8.1 s since the request left: the coordinator may evict at 10 s
    assert membership.standing(7) is Standing.STALE
    membership.renewed(7, clock.now - 0.5)
    assert membership.standing(7) is Standing.FRESH


def test_the_margin_is_at_least_a_second() -> None:
    assert Membership(3.0).lease_s == 2.0
    assert Membership(0.5).lease_s == 0.0  # no lease at all: every check waits for a heartbeat


def test_without_a_renewal_of_this_generation_the_standing_is_stale() -> None:
    membership, clock, _ = lease()
    assert membership.standing(7) is Standing.STALE
    membership.renewed(6, clock.now)  # answered under the previous generation
    assert membership.standing(7) is Standing.STALE


def test_an_older_renewal_arriving_late_does_not_shorten_the_lease() -> None:
    membership, clock, _ = lease()
    membership.renewed(7, clock.now)
    membership.renewed(7, clock.now - 5.0)
    clock.now += 7.0
    assert membership.standing(7) is Standing.FRESH


def test_work_of_a_generation_the_coordinator_left_is_lost() -> None:
    membership, clock, coordinator = lease()
    membership.renewed(7, clock.now)
    coordinator.generation = -1  # evicted: aiokafka resets the generation before it rejoins
    assert membership.standing(7) is Standing.LOST
    coordinator.generation = 8  # rejoined: a batch fetched under 7 is still not this worker's to decide
    membership.renewed(8, clock.now)
    assert membership.standing(7) is Standing.LOST
    assert membership.standing(8) is Standing.FRESH


async def test_confirm_waits_while_stale_and_goes_on_when_a_heartbeat_is_answered() -> None:
    membership, clock, _ = lease()
    membership.renewed(7, clock.now - 9.0)  # stalled: the last answered heartbeat is 9 s old
    waiting = asyncio.create_task(membership.confirm(7))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    membership.renewed(7, clock.now)
    assert await asyncio.wait_for(waiting, 2.0) is True


async def test_confirm_gives_up_as_soon_as_the_worker_learns_it_was_evicted() -> None:
    membership, clock, coordinator = lease()
    membership.renewed(7, clock.now - 9.0)
    waiting = asyncio.create_task(membership.confirm(7))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    coordinator.generation = -1
    assert await asyncio.wait_for(waiting, 2.0) is False


async def test_confirm_answers_at_once_when_the_lease_holds() -> None:
    membership, clock, _ = lease()
    membership.renewed(7, clock.now)
    assert await membership.confirm(7) is True


@dataclass
class Event:
    message: Any


class Consumer:
    def __init__(self) -> None:
        self._unacked_messages: set[Any] = set()
        self.acked: list[int] = []

    def ack(self, message: Any) -> bool:
        self.acked.append(message.offset)
        return True


def message(offset: int) -> ConsumerMessage:
    return ConsumerMessage("parley.commands", 0, offset, 0.0, 0, None, b"k", b"v", None, generation_id=7)


def test_an_abandoned_event_is_never_acknowledged_to_the_consumer() -> None:
    consumer: Any = Consumer()  # the part of Faust's consumer that acks touch
    kept, dropped = message(1), message(2)
    consumer._unacked_messages |= {kept, dropped}
    abandon([cast(Any, Event(dropped))], consumer)
    # What take_events does with every event of the batch once the agent is done with it:
    assert kept.ack(consumer) is True
    assert dropped.ack(consumer) is False
    assert consumer.acked == [1]  # offset 2 is never marked safe to commit
    assert consumer._unacked_messages == {kept}  # a rebalance waiting for the batch goes on
