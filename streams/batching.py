"""The agents' batches: as many events as arrive within a window that opens with the first one.

Faust's ``take_events(max_, within)`` wakes its agent every ``within`` seconds, records or not,
and yields what it buffered since the last tick. The decide agent's window is a few milliseconds,
the projection agent's ten: an idle worker woke a few hundred times a second, and each wake-up
waits on the stream's stop and the buffer through ``Service.wait``, which builds futures and
tasks every time. :class:`BatchingStream` waits for the first event without a timeout (an idle
agent costs nothing), then up to ``within`` for more, or until ``max_`` events, and yields them.
Everything else is Faust's: events are acknowledged once the agent is done with the batch, and
while it works on one the stream holds the next event back, so no batch exceeds ``max_``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import Any, cast

import faust
from faust.streams import _tracks_buffer_agen
from faust.types import ChannelT, EventT
from mode.utils.futures import notify
from mode.utils.locks import Event
from mode.utils.times import Seconds, want_seconds


class BatchingStream(faust.Stream[Any]):
    @_tracks_buffer_agen
    async def take_events(self, max_: int, within: Seconds) -> AsyncGenerator[Sequence[EventT[Any]], None]:
        """Yield the events that arrive within ``within`` of the first (at most ``max_`` at once)."""
        events: list[EventT[Any]] = []
        opened = Event()  # an event is buffered: the batch's window runs
        full = Event()
        consumed = Event()
        consuming: asyncio.Future[None] | None = None
        window = want_seconds(within)
        enable_acks: bool = self.enable_acks

        async def add_to_buffer(value: Any) -> Any:
            nonlocal consuming
            try:
                if consuming is not None:  # the agent works on the previous batch
                    try:
                        await consuming
                    finally:
                        consuming = None
                event = self.current_event
                if event is None:
                    raise RuntimeError("take_events found no current event")
                events.append(event)
                opened.set()
                if len(events) >= max_:
                    full.set()
                    consumed.clear()
                    await self.wait(consumed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.exception("Error adding to take buffer: %r", exc)
                await self.crash(exc)
            return value

        self.enable_acks = False  # acknowledged below, once the agent is done with them
        self.add_processor(add_to_buffer)
        self._enable_passive(cast(ChannelT[Any], aiter(self.channel)))
        try:
            while not self.should_stop:
                await self.wait_for_stopped(opened)
                await self.wait_for_stopped(full, timeout=window)
                if not events:
                    continue
                consuming = self.loop.create_future()
                try:
                    yield list(events)
                finally:
                    for event in events:
                        await self.ack(event)
                    events.clear()
                    opened.clear()
                    notify(consuming)
                    full.clear()
                    consumed.set()
        finally:
            self.enable_acks = enable_acks
            self._processors.remove(add_to_buffer)
