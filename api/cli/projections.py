"""`parley projections status [--json]` and `parley projections rebuild NAME`."""

from __future__ import annotations

import argparse
import json
import sys

from api.cli.progress import CliError, ProgressBar, fail, load_cli_settings, run_command


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
        rows = [["NAME", "COLLECTION", "GEN", "DOCUMENTS", "POSITION", "LAG"]]
        rows += [
            [s.name, s.collection, str(s.generation), f"{s.documents:,}", f"{s.position:,}", f"{s.lag:,}"]
            for s in statuses
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            cells = [cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(row)]
            print("  ".join(cells).rstrip())
        return 0

    return run_command(prog, main, settings)


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
        print(
            f"rebuilt {report.name} into {report.collection} (generation {report.generation}): "
            f"{report.records:,} log records in {report.seconds:.1f}s ({report.rate:,.0f} ev/s)"
            + (f"; dropped {report.previous}" if report.previous and report.previous != report.collection else "")
        )
        return 0

    return run_command(prog, main, settings)
