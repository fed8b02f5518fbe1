"""Message throughput of the platform under load, against the limits of its parts (figures, never a test).

    python -m bench.load                                  # its own throwaway `parley up`
    python -m bench.load --data-dir .parley               # a running `parley up --data-dir .parley`
    python -m bench.load --url http://127.0.0.1:8000 --data-dir .parley
    python -m bench.load --seconds 5 --senders 4          # a short run
    python -m bench.load --long --messages 100000         # throughput decay as the log grows

In one run: (c) the limits (a bare socket.io echo server driven by the same clients, and raw
batched produce to the same broker), (a) closed-loop saturation of the platform, (b) open-loop
at a fixed rate (0.1 x the echo rate unless --rate), and (d) the ratios e2e/echo and e2e/raw.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.load import driver, servers

PHASES = ("echo", "raw", "closed", "open")
SETUP_TIMEOUT_S = 300.0
CLIENTS = "bench clients"  # this process, in the CPU figures


def _log(text: str) -> None:
    print(f"bench.load: {text}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    first_line = (__doc__ or "").splitlines()[0]
    p = argparse.ArgumentParser(
        prog="python -m bench.load", description=first_line, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--url", default=None, help="gateway of a running platform (default: from --data-dir)")
    p.add_argument("--data-dir", type=Path, default=None, help="data dir of a running `parley up` (broker, URL)")
    p.add_argument("--senders", type=int, default=16, help="N: senders, each with its own partner (default 16)")
    p.add_argument("--window", type=int, default=8, help="W: messages in flight per sender (default 8)")
    p.add_argument("--seconds", type=float, default=20.0, help="T: seconds each timed phase sends (default 20)")
    p.add_argument("--max-messages", type=int, default=1_000_000, help="cap on messages per timed phase")
    p.add_argument("--rate", type=float, default=None, help="open-loop rate, msg/s (default: a fraction of echo)")
    p.add_argument("--rate-fraction", type=float, default=0.1, help="open-loop rate / echo rate (default 0.1)")
    p.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated subset of {','.join(PHASES)} (default all; open needs echo unless --rate)",
    )
    p.add_argument("--long", action="store_true", help="only the long run: --messages through the closed loop")
    p.add_argument("--messages", type=int, default=100_000, help="messages of the --long run (default 100000)")
    p.add_argument("--max-seconds", type=float, default=3600.0, help="time cap of the --long run (default 3600)")
    p.add_argument("--ack-timeout", type=float, default=15.0, help="seconds before a send counts as no_ack")
    p.add_argument("--drain", type=float, default=10.0, help="seconds to wait for pushes after the last ack")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of the table")
    args = p.parse_args(argv)
    phases = [x.strip() for x in str(args.phases).split(",") if x.strip()]
    unknown = [x for x in phases if x not in PHASES]
    if unknown:
        p.error(f"unknown phase(s) {unknown}; choose from {','.join(PHASES)}")
    if "open" in phases and args.rate is None and "echo" not in phases:
        phases.insert(0, "echo")  # the default rate is a fraction of the echo rate of this run
    args.phase_list = [x for x in PHASES if x in phases]
    for name in ("senders", "window", "max_messages", "messages"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("seconds", "max_seconds", "ack_timeout", "rate_fraction"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")
    if args.rate is not None and args.rate <= 0:
        p.error("--rate must be > 0")
    return args


def _phase_timeout(args: argparse.Namespace, seconds: float) -> float:
    return seconds + float(args.ack_timeout) + float(args.drain) + 60.0


async def _platform_phases(
    args: argparse.Namespace, url: str, results: dict[str, Any], processes: dict[str, int]
) -> None:
    _log(f"setting up {args.senders} sender/partner pairs on {url}")
    async with asyncio.timeout(SETUP_TIMEOUT_S):
        fleet = await driver.platform_fleet(url, args.senders, args.ack_timeout)
    try:
        if args.long:
            _log(f"long run: {args.messages} messages, {args.senders} x {args.window} in flight")
            async with asyncio.timeout(_phase_timeout(args, args.max_seconds)):
                results["long"] = await driver.closed_loop(
                    fleet, args.window, args.max_seconds, args.messages, args.drain, decay=True, processes=processes
                )
            return
        if "closed" in args.phase_list:
            _log(f"(a) closed loop: {args.senders} x {args.window} in flight for {args.seconds:g} s")
            async with asyncio.timeout(_phase_timeout(args, args.seconds)):
                results["closed"] = await driver.closed_loop(
                    fleet, args.window, args.seconds, args.max_messages, args.drain, processes=processes
                )
        if "open" in args.phase_list:
            rate = args.rate
            if rate is None:
                echo_rate = (results.get("echo") or {}).get("acked_per_s")
                if not echo_rate:
                    raise driver.SetupError("no echo rate to derive the open-loop rate from (give --rate)")
                rate = args.rate_fraction * float(echo_rate)
            rate = min(rate, args.max_messages / args.seconds)
            _log(f"(b) open loop: {rate:.1f} msg/s for {args.seconds:g} s")
            async with asyncio.timeout(_phase_timeout(args, args.seconds)):
                results["open"] = await driver.open_loop(fleet, rate, args.seconds, args.drain)
    finally:
        await fleet.close()


async def _echo_phase(args: argparse.Namespace, url: str, results: dict[str, Any], processes: dict[str, int]) -> None:
    _log(f"(c) echo server: {args.senders} x {args.window} in flight for {args.seconds:g} s")
    async with asyncio.timeout(SETUP_TIMEOUT_S):
        fleet = await driver.echo_fleet(url, args.senders, args.ack_timeout)
    try:
        async with asyncio.timeout(_phase_timeout(args, args.seconds)):
            results["echo"] = await driver.closed_loop(
                fleet, args.window, args.seconds, args.max_messages, args.drain, processes=processes
            )
    finally:
        await fleet.close()


async def _raw_phase(
    args: argparse.Namespace, bootstrap: str, partitions: int, rf: int, results: dict[str, Any]
) -> None:
    _log(f"(c) raw produce to {bootstrap} for {args.seconds:g} s")
    try:
        async with asyncio.timeout(args.seconds + 120.0):
            results["raw"] = await servers.raw_produce(bootstrap, args.seconds, args.max_messages, partitions, rf)
    except Exception as exc:  # an unreachable broker or a refused topic: the other phases still run
        _log(f"raw produce failed: {exc!r}")
        results["notes"].append(f"raw produce to {bootstrap} failed: {exc!r}")


def ratios(results: dict[str, Any]) -> dict[str, float | None]:
    e2e = (results.get("closed") or {}).get("acked_per_s")
    echo = (results.get("echo") or {}).get("acked_per_s")
    raw = (results.get("raw") or {}).get("records_per_s")
    e2e_cpu = (results.get("closed") or {}).get("cpu_ms_per_ack")
    echo_cpu = (results.get("echo") or {}).get("cpu_ms_per_ack")
    return {
        "e2e_over_echo": float(f"{e2e / echo:.4g}") if e2e and echo else None,
        "e2e_over_raw": float(f"{e2e / raw:.4g}") if e2e and raw else None,
        "echo_cpu_over_e2e_cpu": float(f"{echo_cpu / e2e_cpu:.4g}") if e2e_cpu and echo_cpu else None,
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _errors(errors: dict[str, int]) -> str:
    return " ".join(f"{code}={n}" for code, n in errors.items()) or "none"


def _raw_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    raw = results.get("raw")
    if raw is not None:
        rows.append(
            (
                "(c) raw produce",
                _fmt(raw["records"]),
                _fmt(raw["records"]),
                _fmt(raw["records_per_s"]),
                "-",
                "-",
                "-",
                f"errors={raw['errors']}" if raw["errors"] else "none",
            )
        )
    return rows


def print_table(results: dict[str, Any]) -> None:
    rows: list[tuple[str, ...]] = [
        ("phase", "sent", "acked", "acked/s", "pushed/s", "ack p50/p99 ms", "push p50/p99 ms", "errors")
    ]
    labels = {
        "echo": "(c) echo server",
        "closed": "(a) e2e closed loop",
        "open": "(b) e2e open loop",
        "long": "(e) e2e long run",
    }
    for key, label in labels.items():
        if key == "closed":
            rows.extend(_raw_rows(results))
        r = results.get(key)
        if r is None:
            continue
        if key == "open":
            label += f" @{r['rate']:g}/s"
        rows.append(
            (
                label,
                _fmt(r["sent"]),
                _fmt(r["acked"]),
                _fmt(r["acked_per_s"]),
                _fmt(r["pushed_per_s"]),
                f"{_fmt(r['ack_ms']['p50'])} / {_fmt(r['ack_ms']['p99'])}",
                f"{_fmt(r['push_ms']['p50'])} / {_fmt(r['push_ms']['p99'])}",
                _errors(r["errors"]) + (f" not_pushed={r['not_pushed']}" if r["not_pushed"] else ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print(
            "  ".join(
                cell.ljust(w) if i in (0, 7) else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))
    cfg = results["config"]
    if "long" in results:
        print(f"\nN={cfg['senders']} senders x W={cfg['window']} in flight, {cfg['messages']:,} messages")
    else:
        print(f"\nN={cfg['senders']} senders x W={cfg['window']} in flight, T={cfg['seconds']:g} s per phase")
    if "open" in results:
        o = results["open"]
        print(f"open loop: offered {o['rate']:g} msg/s, max schedule lag {o['max_schedule_lag_ms']} ms")
    long = results.get("long")
    if long is not None:
        first, last = long["first_10pct"], long["last_10pct"]
        print(
            f"long run: first 10% {_fmt(first['per_s'])} acked/s (ack p50 {_fmt(first['p50_ms'])} ms), "
            f"last 10% {_fmt(last['per_s'])} acked/s (ack p50 {_fmt(last['p50_ms'])} ms)"
        )
        pf, pl = long["push_first_10pct"], long["push_last_10pct"]
        print(
            f"          pushes: first 10% {_fmt(pf['per_s'])}/s (p50 {_fmt(pf['p50_ms'])} ms), "
            f"last 10% {_fmt(pl['per_s'])}/s (p50 {_fmt(pl['p50_ms'])} ms)"
        )
        if long.get("decay") is not None:
            print(f"          last / first 10% throughput: {long['decay']:.2f}")
    _print_cpu(results)
    rat = results.get("ratios") or {}
    if any(v is not None for v in rat.values()):
        print(f"ratio e2e/echo = {_ratio(rat.get('e2e_over_echo'))}   (closed-loop acked/s / echo acked/s)")
        print(f"ratio e2e/raw  = {_ratio(rat.get('e2e_over_raw'))}   (closed-loop acked/s / raw produce records/s)")
        if rat.get("echo_cpu_over_e2e_cpu") is not None:
            print(
                f"ratio echo CPU/e2e CPU = {_ratio(rat.get('echo_cpu_over_e2e_cpu'))}   "
                "(machine CPU per echoed message / per e2e message: e2e/echo when the CPU is the limit)"
            )
    for note in results.get("notes", []):
        print(f"note: {note}")


def _platform_processes(data_dir: Path | None) -> dict[str, int]:
    """Name -> pid of the platform's processes (servers, workers, gateways), and of these clients."""
    from infra.localstack.datadir import DataDir
    from infra.localstack.runfile import read_run_info

    info = read_run_info(DataDir.at(data_dir)) if data_dir is not None else None
    return {**(info.processes if info is not None else {}), CLIENTS: os.getpid()}


def _print_cpu(results: dict[str, Any]) -> None:
    """The CPU lines: the machine's per acked message in each saturating phase, then each process's
    (and a long run's first and last 10%)."""
    windows = [
        (label, r)
        for key, label in (("echo", "echo"), ("closed", "e2e closed loop"), ("long", "long run"))
        if (r := results.get(key)) and r.get("cpu_ms_per_ack") is not None
    ]
    if not windows:
        return
    print(
        "machine CPU per acked message: "
        + ", ".join(f"{label} {r['cpu_ms_per_ack']:.2f} ms ({r['busy_cores']:.2f} cores busy)" for label, r in windows)
    )
    for label, r in windows:
        if r.get("cpu_ms_per_ack_by_process"):
            print(f"  {label}, ms per acked message: {_per_process(r['cpu_ms_per_ack_by_process'])}")
    long = results.get("long") or {}
    for part in ("first", "last"):
        tenth = long.get(f"cpu_{part}_10pct") or {}
        if tenth.get("cpu_ms_per_ack") is not None:
            by_process = tenth.get("cpu_ms_per_ack_by_process")
            print(
                f"  long run, {part} 10%: {tenth['cpu_ms_per_ack']:.2f} ms per acked message"
                + (f": {_per_process(by_process)}" if by_process else "")
            )


def _per_process(by_process: dict[str, float]) -> str:
    return ", ".join(f"{name} {ms:.2f}" for name, ms in by_process.items())


def _target(args: argparse.Namespace) -> tuple[str | None, Any]:
    """URL and Settings of the given running platform (None, None: start our own)."""
    from api.cli.context import load_settings
    from infra.localstack.datadir import DataDir
    from infra.localstack.runfile import read_run_info

    if args.data_dir is not None:
        settings = load_settings(args.data_dir)  # NoPlatformError if nothing runs there
        url = args.url
        if url is None:
            info = read_run_info(DataDir.at(args.data_dir))
            url = info.gateway_url if info is not None else None
        return url, settings
    if args.url is not None:
        return args.url, load_settings(None)
    return None, None


def run(args: argparse.Namespace) -> dict[str, Any]:
    from api.cli.context import load_settings

    results: dict[str, Any] = {
        "config": {
            "senders": args.senders,
            "window": args.window,
            "seconds": args.seconds,
            "messages": args.messages if args.long else None,
            "phases": ["long"] if args.long else args.phase_list,
        },
        "notes": [],
    }
    needs_platform = args.long or "closed" in args.phase_list or "open" in args.phase_list
    needs_broker = not args.long and "raw" in args.phase_list
    with tempfile.TemporaryDirectory(prefix="parley-bench-load-") as tmp:
        children: list[servers.Child] = []
        try:
            url, settings = _target(args)
            data_dir = Path(args.data_dir) if args.data_dir is not None else None
            if url is None and (needs_platform or needs_broker):
                _log("starting a throwaway `parley up` (this takes a while)")
                data_dir = Path(tmp) / "data"
                child, url = servers.start_platform(data_dir, Path(tmp) / "up.log")
                children.append(child)
                settings = load_settings(data_dir)
                _log(f"platform ready at {url}")
            if not args.long and "echo" in args.phase_list:
                echo, echo_url = servers.start_echo(Path(tmp) / "echo.log")
                try:
                    asyncio.run(
                        _echo_phase(args, echo_url, results, {"echo server": echo.proc.pid, CLIENTS: os.getpid()})
                    )
                finally:
                    echo.stop(10)
            if needs_broker:
                bootstrap = settings.kafka_bootstrap if settings is not None else ""
                if bootstrap:
                    asyncio.run(_raw_phase(args, bootstrap, settings.partitions, settings.replication_factor, results))
                else:
                    results["notes"].append("raw produce skipped: no broker known (give --data-dir)")
            if needs_platform:
                assert url is not None
                asyncio.run(_platform_phases(args, url, results, _platform_processes(data_dir)))
        finally:
            for child in reversed(children):
                _log(f"stopping {child.name}")
                code = child.stop()
                if code != 0:
                    results["notes"].append(f"{child.name} exited with {code} on SIGTERM")
    results["ratios"] = ratios(results)
    long = results.get("long")
    if long is not None:
        first, last = long["first_10pct"]["per_s"], long["last_10pct"]["per_s"]
        long["decay"] = round(last / first, 3) if first and last else None
    return results


def main(argv: list[str] | None = None) -> int:
    from api.cli.context import NoPlatformError

    args = parse_args(argv)
    try:
        results = run(args)
    except servers.StartError as exc:
        _log(f"could not start: {exc}")
        return 1
    except NoPlatformError as exc:
        _log(str(exc))
        return 2
    except driver.SetupError as exc:
        _log(f"setup failed: {exc}")
        return 1
    except TimeoutError:
        _log("a phase overran its time bound; stopped")
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        _log("interrupted")
        return 130
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
