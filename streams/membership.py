"""This worker's standing in the consumer group, as a lease: the fence of the decide agent.

A worker may decide a partition's commands and write its aggregates only while it is that
partition's single writer. Kafka's group protocol gives a partition to another worker once the
coordinator has heard nothing from this one for the session timeout. A worker that stalls past it
(a long pause, a stopped or starved VM, SIGSTOP) resumes without knowing: its heartbeat has not told
it yet, and until it does, its in-flight batch would go on deciding against state that the new
owner has moved past since, and write that stale state to the changelogs after the new owner's.

The lease closes that window from this side. Each heartbeat the coordinator answers (and each
assignment it gives) renews it from the moment the request was sent: the coordinator cannot have
given this worker's partitions away before ``since + session timeout``. The decide agent checks
its standing right before it decides and right before it saves (no await between the check and the
reads or writes it guards):

- ``FRESH``: the generation that fetched the batch is still this worker's, and the lease has
  ``margin`` left. Go on.
- ``STALE``: same generation, but no answered heartbeat recently (the worker stalled, or the
  coordinator is unreachable). Wait: the next heartbeat either renews it or tells the worker that
  it was evicted.
- ``LOST``: the coordinator has reset this worker's generation (it was evicted, or a rebalance
  moved on without it). The batch is abandoned: nothing is decided, saved or answered, its offsets
  are not acknowledged, and whichever worker owns its partitions next reads it again.

What it cannot close: a worker frozen in the few milliseconds between a check and its writes
leaving the process sends them when it resumes (see docs/ARCHITECTURE.md, "Fencing").
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable

# The part of the session timeout the lease keeps in hand (at least this many seconds).
MARGIN_SHARE = 0.2
MIN_MARGIN_S = 1.0
CONFIRM_POLL_S = 0.05


class Standing(enum.Enum):
    FRESH = "fresh"
    STALE = "stale"
    LOST = "lost"


class Membership:
    """The lease. ``renewed`` is called from the consumer's thread, everything else from the worker's
    event loop: the renewal is one tuple, replaced whole."""

    def __init__(self, session_timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        margin = max(MIN_MARGIN_S, session_timeout_s * MARGIN_SHARE)
        self.lease_s = max(0.0, session_timeout_s - margin)
        self._current_generation: Callable[[], int | None] = lambda: None
        self._clock = clock
        self._renewal: tuple[int, float] | None = None  # (generation, monotonic time the request left)

    def follow(self, current_generation: Callable[[], int | None]) -> None:
        """Read the coordinator's generation from ``current_generation`` (once the consumer exists)."""
        self._current_generation = current_generation

    def renewed(self, generation: int, since: float) -> None:
        """The coordinator answered, in ``generation``, a request sent at ``since`` (monotonic)."""
        current = self._renewal
        if current is None or current[0] != generation or current[1] < since:
            self._renewal = (generation, since)

    def standing(self, generation: int) -> Standing:
        """This worker's standing for work fetched in ``generation``."""
        current = self._current_generation()
        if current is not None and current != generation:
            return Standing.LOST
        renewal = self._renewal
        if renewal is None or renewal[0] != generation:
            return Standing.STALE
        return Standing.FRESH if self._clock() - renewal[1] < self.lease_s else Standing.STALE

    async def confirm(self, generation: int) -> bool:
        """True once the standing is ``FRESH``; False as soon as it is ``LOST``. Waits meanwhile."""
        while True:
            standing = self.standing(generation)
            if standing is not Standing.STALE:
                return standing is Standing.FRESH
            await asyncio.sleep(CONFIRM_POLL_S)
