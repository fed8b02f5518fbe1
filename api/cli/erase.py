"""`parley erase --user ID`: an operator erases a user (crypto-shredding, docs/THREAT-MODEL.md).

Sends ``user:erase`` for the user's account stream, as ``DELETE /users/me`` does with the user as
actor (here: no actor, an operator), waits for its outcome, then until the users view shows the
erasure. Exit 0 when erased (or erased already), 1 for a user that was never registered or an
erasure that did not complete, 2 for bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from api.cli.progress import CliError, fail, load_cli_settings, run_command
from api.cli.replay import parse_user
from domain.accounts import ERASE, account_stream_id
from domain.envelope import CommandEnvelope, utcnow
from domain.personal import ERASED

PROG = "erase"
OUTCOME_TIMEOUT_S = 30.0
VISIBLE_TIMEOUT_S = 30.0


def run_erase(args: argparse.Namespace) -> int:
    try:
        user_id = parse_user(args.user)
        if user_id is None:
            raise CliError("--user is required: the id of the user to erase", 2)
        settings = load_cli_settings(args.data_dir)
    except CliError as exc:
        return fail(PROG, exc.message, exc.status)

    async def main() -> int:
        from infra.kafka.command_bus import CommandBus
        from infra.mongo.client import mongo_client
        from infra.mongo.read_models import ReadModels

        client = mongo_client(settings)
        bus = CommandBus(settings, instance_id=f"parley-erase-{uuid.uuid4()}")
        try:
            users = ReadModels(client[settings.mongo_db])
            doc = await users.user(user_id)
            if doc is None:
                return fail(PROG, f"no user {user_id}", 1)
            if doc.get("username") == ERASED:
                print(f"user {user_id} was erased already")
                return 0
            await bus.start()
            command_id = str(uuid.uuid4())
            envelope = CommandEnvelope(
                command_id=command_id,
                type=ERASE,
                aggregate_id=account_stream_id(user_id),
                actor_id=None,
                correlation_id=command_id,
                issued_at=utcnow(),
                payload={"user_id": user_id},
                reply_to=bus.instance_id,
            )
            outcome = await bus.execute(envelope, OUTCOME_TIMEOUT_S)
            if not outcome.ok:
                return fail(PROG, f"refused: {outcome.error_code}: {outcome.error_message}", 1)
            deadline = time.monotonic() + VISIBLE_TIMEOUT_S
            while await users.user_exists(user_id):
                if time.monotonic() > deadline:
                    return fail(
                        PROG, f"erased in the log, but the views do not show it after {VISIBLE_TIMEOUT_S:g} s", 1
                    )
                await asyncio.sleep(0.2)
        finally:
            await bus.stop()
            await client.close()
        print(f"user {user_id} erased (correlation id {command_id})")
        return 0

    return run_command(PROG, main, settings)
