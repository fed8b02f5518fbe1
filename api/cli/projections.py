"""`parley projections status [--json]` and `parley projections rebuild NAME`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from api.cli.progress import CliError, ProgressBar, fail, load_cli_settings, run_command

if TYPE_CHECKING:
    from infra.rebuild import ProjectionStatus


def run_projections(args: argparse.Namespace) -> int:
    command = getattr(args, "projections_command", None)
    if command == "status":
        return run_status(args)
    if command == "rebuild":
        return run_rebuild(args)
    return fail("projections", f"unknown subcommand {command!r} (valid: status, rebuild)", 2)


def run_status(args: argparse.Namespace) -> int:
    prog = "projections status"
    try:
        settings = load_cli_settings(args.data_dir)
    except CliError as exc:
        return fail(prog, exc.message, exc.status)

    async def main() -> int:
        from infra.rebuild import projection_status

        statuses = await projection_status(settings)
        if args.json:
            print(json.dumps([s.to_json() for s in statuses], indent=2))
            return 0
        for line in status_table(statuses):
            print(line)
        return 0

    return run_command(prog, main, settings)


def status_table(statuses: Sequence[ProjectionStatus]) -> list[str]:
    """One row per source topic of each projection (audit reads three); the projection's own
    columns on its first row, and its total lag there too when it has several sources."""
    header = ["NAME", "COLLECTION", "GEN", "DOCUMENTS", "SOURCE", "POSITION", "LAG"]
    rows = [header]
    for s in statuses:
        own = [s.name, s.collection, str(s.generation), f"{s.documents:,}"]
        sources = s.sources
        if not sources:
            rows.append([*own, "(no topic yet)", f"{s.position:,}", f"{s.lag:,}"])
        for i, src in enumerate(sources):
            rows.append([*(own if i == 0 else ["", "", "", ""]), src.topic, f"{src.position:,}", f"{src.lag:,}"])
        if len(sources) > 1:
            rows.append(["", "", "", "", "(all sources)", f"{s.position:,}", f"{s.lag:,}"])
    left = {0, 1, 4}
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(widths[i]) if i in left else cell.rjust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in rows
    ]


def run_rebuild(args: argparse.Namespace) -> int:
    prog = "projections rebuild"
    from infra.rebuild import projection_names

    valid = projection_names()
    if args.name not in valid:
        return fail(prog, f"unknown projection {args.name!r} (valid: {', '.join(valid)})", 2)
    try:
        settings = load_cli_settings(args.data_dir)
    except CliError as exc:
        return fail(prog, exc.message, exc.status)

    async def main() -> int:
        from infra.rebuild import RebuildBusy, RebuildProgress, rebuild_projection

        bar = ProgressBar(f"rebuild {args.name}", sys.stderr)

        def progress(p: RebuildProgress) -> None:
            bar.update(p.done, p.total, p.phase)

        try:
            report = await rebuild_projection(settings, args.name, progress)
        except RebuildBusy as exc:
            raise CliError(str(exc), 1) from None
        bar.finish()
        print(report.summary())
        return 0

    return run_command(prog, main, settings)
