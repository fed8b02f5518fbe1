"""The fault-injection tier: a platform of its own (two gateways, two workers), a steady load of
message sends, and processes killed with SIGKILL under it.

The platform is separate from the session's (tests/conftest.py) because these tests kill its
broker, its mongod and its Redis. It starts once for the tier and runs last (see
``pytest_collection_modifyitems``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from bench.clients import connect, ok, user
from bench.steady import SenderSpec
from infra.localstack.datadir import DataDir
from infra.localstack.ports import free_port
from infra.localstack.runfile import read_run_info
from tests.conftest import Platform, running

GATEWAYS = 2
WORKERS = 2
RESTART_WITHIN_S = 30.0
_UNLIMITED = {"limit": 1_000_000, "period_s": 60}


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("faults")
    operations = ("command", "query", "login_address", "register_address", "refresh_address", "login_username")
    p = Platform(
        data_dir=root / "data",
        port=free_port(),
        log_path=root / "up.log",
        extra_args=("--gateways", str(GATEWAYS), "--workers", str(WORKERS)),
        rate_limits={name: dict(_UNLIMITED) for name in operations},
    )
    with running(p):
        yield p


def processes(platform: Platform) -> dict[str, int]:
    """Every child of the platform's `parley up` by name, with its current pid (run.json)."""
    info = read_run_info(DataDir.at(platform.data_dir))
    assert info is not None, "the platform is not running"
    return info.processes


async def kill(platform: Platform, name: str, sig: signal.Signals = signal.SIGKILL) -> float:
    """Send `sig` to child `name` (SIGKILL: to its whole process group, helpers included); returns
    once `parley up` has started it again (the time of the signal, monotonic)."""
    before = processes(platform)
    assert name in before, f"no process {name!r}: {sorted(before)}"
    pid = before[name]
    killed_at = time.monotonic()
    if sig == signal.SIGKILL:
        os.killpg(pid, sig)
    else:
        os.kill(pid, sig)
    deadline = killed_at + RESTART_WITHIN_S
    while processes(platform).get(name) == pid:
        assert time.monotonic() < deadline, f"{name} was not restarted within {RESTART_WITHIN_S:.0f} s"
        await asyncio.sleep(0.1)
    return killed_at


@pytest.fixture
async def senders(cluster: Platform) -> AsyncIterator[list[SenderSpec]]:
    """Six users in three group conversations of two senders and a reader each."""
    specs: list[SenderSpec] = []
    async with httpx.AsyncClient(base_url=cluster.base_url, timeout=30) as http:
        tag = os.urandom(4).hex()
        for c in range(3):
            members = [await user(http, f"f{tag}c{c}u{i}") for i in range(3)]
            owner = await connect(cluster.base_url, members[0][1])
            try:
                created = await ok(
                    owner,
                    "conversation:create",
                    {"kind": "group", "title": f"faults {c}", "participant_ids": [m[0] for m in members[1:]]},
                )
            finally:
                await owner.disconnect()
            specs += [SenderSpec(uid, token, created["conversation_id"]) for uid, token in members[:2]]
    yield specs
