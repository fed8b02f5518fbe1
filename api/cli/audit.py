"""`parley audit verify`: recompute every chain of the compliance trail and cross-check it
against the log. Exit 0 with a one-line summary when whole; 1 naming the first break."""

from __future__ import annotations

import argparse
import sys

from api.cli.progress import CliError, ProgressBar, fail, load_cli_settings, run_command

PROG = "audit verify"


def run_audit_verify(args: argparse.Namespace) -> int:
    if getattr(args, "audit_command", "verify") != "verify":
        return fail("audit", f"unknown subcommand {args.audit_command!r} (valid: verify)", 2)
    try:
        settings = load_cli_settings(args.data_dir)
    except CliError as exc:
        return fail(PROG, exc.message, exc.status)

    async def main() -> int:
        from infra.mongo.audit_trail import verify_trail
        from infra.mongo.client import mongo_client, mongo_db

        bar = ProgressBar("verifying", sys.stderr) if sys.stderr.isatty() else None
        client = mongo_client(settings)
        try:
            db = mongo_db(client, settings)
            await db.command("ping")
            report = await verify_trail(
                settings, db, progress=(lambda n: bar.update(n, 0)) if bar is not None else None
            )
        finally:
            await client.close()
        if bar is not None:
            bar.finish()
        # The verdict is the command's output (stdout), whole or broken; the status tells which.
        print(report.summary())
        return 0 if report.ok else 1

    return run_command(PROG, main, settings)
