"""SIGKILL of each kind of process under a steady load: nothing acked is lost or doubled, seqs stay
gap-free, the read models equal a fold of the log and the trail verifies (tests/faults/invariants.py).

`parley up` restarts the killed process on the same data (its RestartPolicy); clients that got no
ack retry with the same command id (bench/steady.py).
"""

from __future__ import annotations

import itertools
import os
import signal
import time

import pytest

from bench.steady import SenderSpec, SteadyLoad
from tests.conftest import Platform
from tests.faults.conftest import kill, processes
from tests.faults.invariants import check_invariants

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

WARM_ACKS = 40  # acked before the kill: the load is really running
RECOVERED_ACKS = 40  # acked after the restart: it runs again
RECOVERY_WITHIN_S = 150.0

TARGETS = {
    "worker": ("worker-1", signal.SIGKILL),  # its partitions move to worker-2, then back when it rejoins
    "gateway": ("gateway-1", signal.SIGKILL),  # its clients reconnect (to gateway-2 or the new one) and retry
    "broker": ("kafka (kafka)", signal.SIGKILL),
    "mongod": ("mongo (mongod)", signal.SIGKILL),
    "redis": ("redis (redis-server)", signal.SIGKILL),
    # Graceful shutdowns under load: in-flight work finishes or is retried, nothing is lost.
    "worker-sigterm": ("worker-2", signal.SIGTERM),
    "gateway-sigterm": ("gateway-2", signal.SIGTERM),
}


@pytest.mark.parametrize("target", list(TARGETS))
async def test_a_process_killed_under_load_loses_and_doubles_nothing(
    cluster: Platform, senders: list[SenderSpec], target: str
) -> None:
    name, sig = TARGETS[target]
    load = SteadyLoad(cluster.base_url, senders, interval_s=0.05)
    load.start()
    try:
        await load.until_acked(WARM_ACKS, after=time.monotonic(), within_s=60)
        killed_at = await kill(cluster, name, sig)
        restarted_after = time.monotonic() - killed_at
        await load.until_acked(RECOVERED_ACKS, after=time.monotonic(), within_s=RECOVERY_WITHIN_S)
    finally:
        report = await load.stop()
    after = [a.acked for a in report.acked if a.acked >= killed_at]
    gap = max((b - a for a, b in zip([killed_at, *after], after, strict=False)), default=0.0)
    print(
        f"{target}: restarted after {restarted_after:.1f} s; {len(report.acked)} acked; longest wait for an ack "
        f"after the signal {gap:.1f} s; retried {dict(report.transient)}; reconnects {report.reconnects}"
    )
    await check_invariants(cluster, report, senders)


async def test_a_worker_frozen_past_its_session_loses_its_partitions_and_nothing_else(
    cluster: Platform, senders: list[SenderSpec]
) -> None:
    """SIGSTOP: the worker is alive but silent (a long pause, a stalled VM). The group gives its
    partitions to the other worker, which recovers their state from the changelogs and decides on;
    when the frozen one resumes it finds itself out of the group and rejoins."""
    pid = processes(cluster)["worker-1"]
    load = SteadyLoad(cluster.base_url, senders, interval_s=0.05)
    load.start()
    try:
        await load.until_acked(WARM_ACKS, after=time.monotonic(), within_s=60)
        os.kill(pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            # The other worker takes over: every sender is acked again while this one is frozen.
            await load.until_acked(
                RECOVERED_ACKS, after=frozen_at + cluster.settings.kafka_session_timeout_s, within_s=90
            )
            taken_over = [a.acked for a in load.report.acked if a.acked >= frozen_at]
        finally:
            os.kill(pid, signal.SIGCONT)
        await load.until_acked(RECOVERED_ACKS, after=time.monotonic(), within_s=RECOVERY_WITHIN_S)
    finally:
        report = await load.stop()
    assert processes(cluster)["worker-1"] == pid, "the frozen worker resumed; it was not restarted"
    waits = [b - a for a, b in itertools.pairwise([frozen_at, *taken_over])]
    print(f"frozen worker: longest wait for an ack {max(waits, default=0):.1f} s; retried {dict(report.transient)}")
    await check_invariants(cluster, report, senders)
