"""The `parley` command: argument parsing only; each subcommand lives in its own module.

Arguments that can be checked without touching anything (ports, hosts, names) are checked here,
so a bad one is refused with one line and exit 2 before any file or server is touched.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

SERVERS_HELP = (
    "reach the servers of the `parley up` running on DIR (default: the servers the environment names, "
    "else the `parley up` running on ./.parley)"
)


class ParleyParser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) and help text that may be computed when it is shown."""

    def __init__(self, *args: Any, epilog_factory: Callable[[], str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._epilog_factory = epilog_factory

    def format_help(self) -> str:
        if self._epilog_factory is not None:
            self.epilog = self._epilog_factory()
        return super().format_help()

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version("parley")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def tcp_port(text: str) -> int:
    """A TCP port to listen on: 1..65535 (0, "any free port", would leave clients no way to find it)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: expected a number from 1 to 65535") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {port}: expected a number from 1 to 65535")
    return port


MAX_PROCESSES = 16


def process_count(text: str) -> int:
    """How many gateway or worker processes: 1..MAX_PROCESSES."""
    expected = f"expected a number from 1 to {MAX_PROCESSES}"
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: {expected}") from None
    if not 1 <= count <= MAX_PROCESSES:
        raise argparse.ArgumentTypeError(f"invalid count {count}: {expected}")
    return count


def listen_host(text: str) -> str:
    """An address to listen on: an IPv4 or IPv6 address, or a host name that resolves."""
    host = text.strip()
    if not host:
        raise argparse.ArgumentTypeError("the host is empty: give an address such as 127.0.0.1 or 0.0.0.0")
    looks_numeric = all(c.isdigit() or c == "." for c in host) or ":" in host
    if looks_numeric:
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid host {host!r}: not an IPv4 or IPv6 address") from None
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise argparse.ArgumentTypeError(f"invalid host {host!r}: the name does not resolve") from None
    return host


def _projection_names() -> list[str]:
    from infra.rebuild import projection_names

    return projection_names()


def _data_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=None, metavar="DIR", help=SERVERS_HELP)


def build_parser() -> argparse.ArgumentParser:
    parser = ParleyParser(prog="parley", description="Parley: event-sourced real-time messaging")
    parser.add_argument("--version", action="version", version=f"parley {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser(
        "up",
        help="run the whole platform on this machine (local servers, workers, gateway)",
        description="Run the whole platform on this machine: the local servers, a worker and a gateway. "
        "Servers whose URL the environment names (PARLEY_KAFKA_BOOTSTRAP, PARLEY_MONGO_URL, ...) are used "
        "instead of starting local ones. Logs are written under DIR/logs.",
    )
    up.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".parley"),
        metavar="DIR",
        help="where data and logs live (default ./.parley)",
    )
    up.add_argument("--port", type=tcp_port, default=8000, help="HTTP and Socket.IO port, 1..65535 (default 8000)")
    up.add_argument(
        "--host",
        type=listen_host,
        default="127.0.0.1",
        help="address to serve HTTP and Socket.IO on (default 127.0.0.1; 0.0.0.0 for every interface)",
    )
    up.add_argument(
        "--gateways",
        type=process_count,
        default=1,
        metavar="N",
        help="gateway processes sharing the port (SO_REUSEPORT), 1..16 (default 1)",
    )
    up.add_argument(
        "--workers",
        type=process_count,
        default=1,
        metavar="M",
        help="worker processes sharing the partitions in one consumer group, 1..16 (default 1)",
    )

    gw = sub.add_parser(
        "gateway",
        help="run one gateway process (HTTP + Socket.IO)",
        description="Run one gateway process (HTTP + Socket.IO), as production does.",
    )
    gw.add_argument(
        "--port", type=tcp_port, default=None, help="port to serve on, 1..65535 (default: PARLEY_PORT, else 8000)"
    )
    gw.add_argument(
        "--host", type=listen_host, default=None, help="address to serve on (default: PARLEY_HOST, else 127.0.0.1)"
    )
    _data_dir_arg(gw)

    wk = sub.add_parser(
        "worker",
        help="run one worker process (Faust agents)",
        description="Run one worker process (the Faust agents), as production does.",
    )
    _data_dir_arg(wk)

    rp = sub.add_parser(
        "replay",
        help="the event log for audit, oldest first, as JSON Lines",
        description="Print the event log for audit, oldest first, one JSON object per line.",
    )
    rp.add_argument(
        "--stream",
        default=None,
        metavar="ID",
        help="only this stream: a conversation id (as clients know it, or conversation:<id>), username:<name> "
        "or account:<user id>",
    )
    rp.add_argument("--user", default=None, metavar="ID", help="only events whose actor is this user id (a UUID)")
    rp.add_argument("--since", default=None, metavar="ISO", help="only events at or after this ISO-8601 time")
    rp.add_argument("--until", default=None, metavar="ISO", help="only events before this ISO-8601 time")
    _data_dir_arg(rp)

    er = sub.add_parser(
        "erase",
        help="erase a user: their personal data becomes unreadable everywhere (crypto-shredding)",
        description="Erase a user as DELETE /users/me does, as an operator: their data key is destroyed, so their "
        'personal data reads "[erased]" in every view, search, replay and rebuild; their media objects are '
        "removed and their tokens stop working. Exit 0 when erased (or erased already), 1 for an unknown user.",
    )
    er.add_argument("--user", required=True, metavar="ID", help="the user id (a UUID)")
    _data_dir_arg(er)

    au = sub.add_parser("audit", help="the compliance trail", description="The compliance trail.")
    au_sub = au.add_subparsers(dest="audit_command", required=True, metavar="SUBCOMMAND")
    av = au_sub.add_parser(
        "verify",
        help="check the hash chain and cross-check it against the log",
        description="Recompute every hash chain of the compliance trail and cross-check it against the log; "
        "exit 0 when whole, 1 naming the first break.",
    )
    _data_dir_arg(av)

    pj = sub.add_parser(
        "projections", help="read-model status and rebuilds", description="Read-model status and rebuilds."
    )
    pj_sub = pj.add_subparsers(dest="projections_command", required=True, metavar="SUBCOMMAND")
    ps = pj_sub.add_parser(
        "status",
        help="each projection's position and lag behind the log",
        description="Each projection's position and lag behind the log, per source topic.",
    )
    ps.add_argument(
        "--json", action="store_true", help="print a JSON list of {name, position, lag, sources, ...} instead"
    )
    _data_dir_arg(ps)
    pr = pj_sub.add_parser(
        "rebuild",
        help="rebuild one projection from the log while the platform serves",
        description="Rebuild one projection from the log into a new generation while the platform keeps "
        "serving the old one; swap it in only when complete.",
        epilog_factory=lambda: f"valid names: {', '.join(_projection_names())}",
    )
    pr.add_argument("name", metavar="NAME", help="the projection to rebuild (valid names below)")
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
        if args.command == "erase":
            from api.cli.erase import run_erase

            return run_erase(args)
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
