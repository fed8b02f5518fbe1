"""Read-your-writes without polling: an ack waits until the read models have applied its version.

The worker's projection runtime publishes, once per applied batch, the highest stream version it
applied for each stream of the batch (``infra.applied_versions``); one subscriber per gateway
process (an :class:`AppliedVersionsFeed`) feeds :meth:`ReadYourWrites.applied`. A waiting ack costs
one future, resolved by the notification that covers it, whatever the number of acks in flight: no
query per waiting command per tick.

A notification can be missed (the gateway subscribed after it was sent, the subscription's Redis
connection dropped and was re-established): nothing is replayed on a reconnect. The wait is
bounded instead, and when its bound passes, exactly one query (``fallback``) decides whether the
read models are caught up anyway. The ack goes out either way; the command has succeeded.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

log = logging.getLogger("parley.gateway.read_your_writes")

Fallback = Callable[[], Awaitable[bool]]
OnApplied = Callable[[Mapping[str, int]], None]
DEFAULT_CAPACITY = 20_000  # streams whose latest applied version is remembered


class AppliedVersionsFeed(Protocol):
    """Delivers the worker's applied-versions notifications to the ``OnApplied`` it was built with."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class ReadYourWrites:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[str, int] = OrderedDict()  # stream id -> highest applied version (LRU)
        self._waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}

    def applied(self, versions: Mapping[str, int]) -> None:
        """The read models have applied each stream up to its version: release whoever waited for it."""
        for stream_id, version in versions.items():
            highest = max(version, self._seen.get(stream_id, version))
            self._seen[stream_id] = highest
            self._seen.move_to_end(stream_id)
            waiting = self._waiters.get(stream_id)
            if waiting:
                still = []
                for wanted, fut in waiting:
                    if wanted <= highest:
                        if not fut.done():
                            fut.set_result(None)
                    else:
                        still.append((wanted, fut))
                if still:
                    self._waiters[stream_id] = still
                else:
                    del self._waiters[stream_id]
        while len(self._seen) > self._capacity:
            self._seen.popitem(last=False)

    def seen(self, stream_id: str) -> int | None:
        return self._seen.get(stream_id)

    @property
    def waiting(self) -> int:
        return sum(len(w) for w in self._waiters.values())

    async def wait(self, stream_id: str, version: int, timeout_s: float, fallback: Fallback) -> bool:
        """Until the read models have applied ``stream_id`` up to ``version``; False if not by ``timeout_s``."""
        # Checked against what was already announced, then registered, with no await in between
        # (one event loop): a notification that came before this wait is in ``_seen``, and any
        # later one finds the entry. No notification can fall between the two.
        if self._seen.get(stream_id, -1) >= version:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (version, fut)
        self._waiters.setdefault(stream_id, []).append(entry)
        try:
            async with asyncio.timeout(timeout_s):
                await fut
            return True
        except TimeoutError:
            pass
        finally:
            if not fut.done() or fut.cancelled():  # a notification has already removed its entry
                self._forget(stream_id, entry)
        try:  # one query, never a loop: the notification may have been missed
            async with asyncio.timeout(timeout_s):
                return await fallback()
        except Exception as exc:
            log.warning("read-your-writes check of %s failed: %r", stream_id, exc)
            return False

    def _forget(self, stream_id: str, entry: tuple[int, asyncio.Future[None]]) -> None:
        waiting = self._waiters.get(stream_id)
        if waiting is None:
            return
        if entry in waiting:
            waiting.remove(entry)
        if not waiting:
            del self._waiters[stream_id]
