"""How often the long-running processes run Python's cyclic garbage collector.

With the default thresholds (700, 10, 10), a worker under load ran about 50 young collections a
second and a full one every two or three seconds; each full collection re-scanned the ~150,000
objects the process holds (modules, clients, Faust's services, the decoded aggregate records) and
paused the event loop for 60-90 ms, about 6% of the worker's CPU in all (bench/README.md).
Nearly everything a service allocates per message dies young, by reference counting, so the
collector has little to find: it runs less often here, and what exists after start-up is frozen
out of its scans.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

# A young collection every 50,000 net container allocations; a middle one every 20 young; a full
# one every 100 middle (and, as always, only once the objects waiting for it are a quarter of those
# it would scan).
THRESHOLDS = (50_000, 20, 100)


def for_service() -> None:
    """Call once a service process (worker, gateway) is built, before it serves: collect what
    start-up left, freeze the rest out of every later scan, and collect less often from now on."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Run the collector less often while a rebuild allocates and drops millions of short-lived
    objects: with the default thresholds, full collections re-scanning everything the process
    holds cost about a third of a rebuild's CPU. The thresholds are restored afterwards."""
    thresholds = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    gc.freeze()  # what exists now (modules, clients) is not garbage: keep it out of the scans
    gc.set_threshold(*THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        if frozen_before == 0:  # someone else's freeze is theirs to undo
            gc.unfreeze()
