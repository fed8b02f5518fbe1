"""The `parley` command: argument parsing only; each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _data_dir_arg(p: argparse.ArgumentParser, default: Path | None = None) -> None:
    p.add_argument(
        "--data-dir",
        type=Path,
        default=default,
        help="reach the servers of a running `parley up --data-dir DIR` (default: the environment's settings)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="parley", description="Parley: event-sourced real-time messaging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run the whole platform on this machine (local servers, workers, gateway)")
    up.add_argument("--data-dir", type=Path, default=Path(".parley"), help="where data lives (default ./.parley)")
    up.add_argument("--port", type=int, default=8000, help="HTTP and Socket.IO port (default 8000)")
    up.add_argument("--host", default="127.0.0.1")

    gw = sub.add_parser("gateway", help="run one gateway process (HTTP + Socket.IO)")
    gw.add_argument("--port", type=int, default=None)
    gw.add_argument("--host", default=None)
    _data_dir_arg(gw)

    wk = sub.add_parser("worker", help="run one worker process (Faust agents)")
    _data_dir_arg(wk)

    rp = sub.add_parser("replay", help="the event log for audit, oldest first, as JSON Lines")
    rp.add_argument("--stream", default=None, help="only this stream id (e.g. conversation:<uuid>)")
    rp.add_argument("--user", default=None, help="only events whose actor is this user id")
    rp.add_argument("--since", default=None, help="ISO-8601 time, inclusive")
    rp.add_argument("--until", default=None, help="ISO-8601 time, exclusive")
    _data_dir_arg(rp)

    au = sub.add_parser("audit", help="the compliance trail")
    au_sub = au.add_subparsers(dest="audit_command", required=True, metavar="SUBCOMMAND")
    av = au_sub.add_parser("verify", help="check the hash chain and cross-check it against the log")
    _data_dir_arg(av)

    pj = sub.add_parser("projections", help="read-model status and rebuilds")
    pj_sub = pj.add_subparsers(dest="projections_command", required=True, metavar="SUBCOMMAND")
    ps = pj_sub.add_parser("status", help="each projection's position and lag behind the log")
    ps.add_argument("--json", action="store_true", help="a JSON list of {name, position, lag, ...}")
    _data_dir_arg(ps)
    pr = pj_sub.add_parser("rebuild", help="rebuild one projection from the log while the platform serves")
    pr.add_argument("name")
    _data_dir_arg(pr)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "up":
            from api.cli.up import run_up

            return run_up(args)
        if args.command == "gateway":
            from api.cli.processes import run_gateway

            return run_gateway(args)
        if args.command == "worker":
            from api.cli.processes import run_worker

            return run_worker(args)
        if args.command == "replay":
            from api.cli.replay import run_replay

            return run_replay(args)
        if args.command == "audit":
            from api.cli.audit import run_audit_verify

            return run_audit_verify(args)
        if args.command == "projections":
            from api.cli.projections import run_projections

            return run_projections(args)
    except KeyboardInterrupt:
        print("parley: interrupted", file=sys.stderr)
        return 130
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
