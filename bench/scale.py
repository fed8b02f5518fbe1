"""Scale-out and recovery on one machine (figures, never a test).

    python -m bench.scale                        # both parts, each on throwaway platforms
    python -m bench.scale --part shapes --seconds 10
    python -m bench.scale --part recovery

shapes: closed-loop saturation (bench.load's driver: N senders x W in flight) of
`parley up --gateways G --workers W` for (1,1), (2,1), (1,2), (2,2), each on a fresh platform:
acked msg/s and ack p50/p99, and the ratio to (1,1) measured in the same run.

recovery: one `--gateways 2 --workers 2` platform under a steady load of clients that retry with
the same command id (bench/steady.py). Its normal ack p99 is measured first (client-side latency:
first attempt to ok ack, retries included). Each process kind is then killed in turn with SIGKILL;
for each, the longest wait for an ack after the kill, and how long until every one-second window's
ack p99 is back under twice the normal p99 (the next kill waits until it has stayed there for
--settle seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.clients import connect, ok, user
from bench.load import driver, servers
from bench.steady import Acked, SenderSpec, SteadyLoad
from infra.localstack.datadir import DataDir
from infra.localstack.runfile import read_run_info

SHAPES = ((1, 1), (2, 1), (1, 2), (2, 2))
RECOVERY_WAIT_S = 90.0
KILLS = (
    ("worker", "worker-1"),
    ("gateway", "gateway-1"),
    ("broker", "kafka (kafka)"),
    ("mongod", "mongo (mongod)"),
    ("redis", "redis (redis-server)"),
)


def _log(text: str) -> None:
    print(f"bench.scale: {text}", file=sys.stderr, flush=True)


def _shape_args(gateways: int, workers: int) -> tuple[str, ...]:
    return ("--gateways", str(gateways), "--workers", str(workers))


async def _saturate(url: str, senders: int, window: int, seconds: float) -> dict[str, Any]:
    fleet = await driver.platform_fleet(url, senders, ack_timeout_s=15.0)
    try:
        return await driver.closed_loop(fleet, window, seconds, max_messages=1_000_000, drain_s=10.0)
    finally:
        await fleet.close()


def shapes(root: Path, senders: int, window: int, seconds: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for gateways, workers in SHAPES:
        name = f"g{gateways}w{workers}"
        _log(f"starting a platform with {gateways} gateway(s) and {workers} worker(s)")
        child, url = servers.start_platform(
            root / name / "data", root / f"{name}.log", extra=_shape_args(gateways, workers)
        )
        try:
            result = asyncio.run(_saturate(url, senders, window, seconds))
        finally:
            child.stop()
        rows.append({"gateways": gateways, "workers": workers, **result})
        _log(f"{name}: {result['acked_per_s']} acked/s, ack p99 {result['ack_ms']['p99']} ms")
    return rows


def _p99(acks: list[Acked]) -> float:
    ordered = sorted(a.acked - a.first_sent for a in acks)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else 0.0


def _processes(data_dir: Path) -> dict[str, int]:
    info = read_run_info(DataDir.at(data_dir))
    return info.processes if info is not None else {}


async def _senders(url: str, conversations: int) -> list[SenderSpec]:
    specs: list[SenderSpec] = []
    tag = os.urandom(4).hex()
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        for c in range(conversations):
            members = [await user(http, f"r{tag}c{c}u{i}") for i in range(2)]
            owner = await connect(url, members[0][1])
            try:
                created = await ok(owner, "conversation:create", {"kind": "direct", "participant_ids": [members[1][0]]})
            finally:
                await owner.disconnect()
            specs += [SenderSpec(uid, token, created["conversation_id"]) for uid, token in members]
    return specs


async def _recover(
    url: str, data_dir: Path, conversations: int, interval_s: float, settle_s: float
) -> list[dict[str, Any]]:
    specs = await _senders(url, conversations)
    load = SteadyLoad(url, specs, interval_s=interval_s)
    load.start()
    rows: list[dict[str, Any]] = []
    try:
        # The normal figures: a quiet stretch of load before any kill.
        await asyncio.sleep(settle_s)
        baseline = load.report.acked_since(time.monotonic() - settle_s)
        normal = _p99(baseline)
        for label, name in KILLS:
            killed_at = time.monotonic()
            os.killpg(_processes(data_dir)[name], signal.SIGKILL)
            _log(f"killed {name}")
            # Until the p99 has been normal for `settle_s` seconds in a row (at most RECOVERY_WAIT_S).
            while True:
                await asyncio.sleep(1.0)
                now = time.monotonic()
                after = [a for a in load.report.acked if a.acked >= killed_at]
                gap, recovered = _recovery(after, killed_at, normal, now)
                healthy_for = 0.0 if recovered is None else now - killed_at - recovered
                if healthy_for >= settle_s or now - killed_at > RECOVERY_WAIT_S:
                    break
            rows.append(
                {
                    "killed": label,
                    "acked_per_s_before": round(len(baseline) / settle_s, 1),
                    "p99_before_ms": round(normal * 1000, 1),
                    "longest_ack_gap_s": round(gap, 1),
                    "p99_normal_after_s": None if recovered is None else round(recovered, 1),
                }
            )
            _log(f"{label}: {rows[-1]}")
    finally:
        report = await load.stop()
    errors = {**report.errors, **({"given_up": len(report.given_up)} if report.given_up else {})}
    for row in rows:
        row["errors"] = errors
    return rows


def _recovery(after: list[Acked], killed_at: float, normal: float, end: float) -> tuple[float, float | None]:
    """The longest wait for an ack after the kill; and the time from the kill to the first
    one-second window from which every window's ack p99 is under twice the normal p99 (None: never)."""
    times = [killed_at, *sorted(a.acked for a in after)]
    gap = max((b - a for a, b in itertools.pairwise(times)), default=0.0)
    bound = max(2 * normal, 0.05)
    windows = [killed_at + i for i in range(int(end - killed_at))]
    healthy = [bool(w := [a for a in after if t <= a.acked < t + 1.0]) and _p99(w) <= bound for t in windows]
    for i, t in enumerate(windows):
        if all(healthy[i:]):
            return gap, t - killed_at
    return gap, None


def recovery(root: Path, conversations: int, interval_s: float, settle_s: float) -> list[dict[str, Any]]:
    _log("starting a platform with 2 gateways and 2 workers")
    data_dir = root / "recovery" / "data"
    child, url = servers.start_platform(data_dir, root / "recovery.log", extra=_shape_args(2, 2))
    try:
        return asyncio.run(_recover(url, data_dir, conversations, interval_s, settle_s))
    finally:
        child.stop()


def main(argv: list[str] | None = None) -> int:
    first_line = (__doc__ or "").splitlines()[0]
    p = argparse.ArgumentParser(
        prog="python -m bench.scale", description=first_line, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--part", choices=("shapes", "recovery", "all"), default="all")
    p.add_argument("--senders", type=int, default=16, help="shapes: senders (default 16)")
    p.add_argument("--window", type=int, default=8, help="shapes: messages in flight per sender (default 8)")
    p.add_argument("--seconds", type=float, default=15.0, help="shapes: seconds of load per shape (default 15)")
    p.add_argument("--conversations", type=int, default=6, help="recovery: direct conversations, 2 senders each")
    p.add_argument("--interval", type=float, default=0.05, help="recovery: pause between a sender's messages")
    p.add_argument("--settle", type=float, default=10.0, help="recovery: seconds of load before and after a kill")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="parley-bench-scale-") as tmp:
        root = Path(tmp)
        try:
            if args.part in ("shapes", "all"):
                rows = shapes(root, args.senders, args.window, args.seconds)
                base = rows[0]["acked_per_s"] or 1.0
                print("gateways workers  acked/s  ratio  ack p50 ms  ack p99 ms  errors")
                for r in rows:
                    print(
                        f"{r['gateways']:>8} {r['workers']:>7} {r['acked_per_s']:>8} {r['acked_per_s'] / base:>6.2f}"
                        f" {r['ack_ms']['p50']:>11} {r['ack_ms']['p99']:>11}  {r['errors'] or '-'}"
                    )
            if args.part in ("recovery", "all"):
                rows = recovery(root, args.conversations, args.interval, args.settle)
                print("killed    acked/s before  p99 before ms  longest ack gap s  p99 normal after s  errors")
                for r in rows:
                    print(
                        f"{r['killed']:<9} {r['acked_per_s_before']:>14} {r['p99_before_ms']:>14}"
                        f" {r['longest_ack_gap_s']:>18} {r['p99_normal_after_s']!s:>19}  {r['errors'] or '-'}"
                    )
        except (servers.StartError, driver.SetupError) as exc:
            print(f"bench.scale: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
