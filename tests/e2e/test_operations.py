"""What auditors and operators see of real traffic: the CLI against the running `parley up --data-dir`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from infra.mongo.documents import ProjectionRegistry
from tests.conftest import REPO_ROOT, Platform
from tests.e2e.conftest import Users, parley

pytestmark = pytest.mark.e2e


async def test_a_correlation_id_runs_from_the_ack_to_the_log_the_views_and_the_trail(
    platform: Platform, users: Users
) -> None:
    alice, bob = await users.new(), await users.new()
    created = await alice.ok("conversation:create", {"kind": "direct", "participant_ids": [bob.user_id]})
    conv = created["conversation_id"]
    cid = f"audit-{uuid.uuid4().hex}"
    ack = await alice.call("message:send", {"conversation_id": conv, "body": "traced", "correlation_id": cid})
    assert ack["ok"] is True and ack["correlation_id"] == cid
    pushed = await bob.inbox.wait_for("message:new", lambda d: d["message_id"] == ack["data"]["message_id"])
    assert pushed["correlation_id"] == cid

    replay = parley(platform, "replay", "--stream", f"conversation:{conv}")
    assert replay.returncode == 0, replay.stderr
    lines = [json.loads(line) for line in replay.stdout.splitlines()]
    assert [e["type"] for e in lines] == ["ConversationCreated", "MessageSent"]
    assert [e["stream_version"] for e in lines] == [1, 2]
    sent = lines[1]
    assert sent["correlation_id"] == cid and sent["actor_id"] == alice.user_id
    assert sent["payload"]["body"] == "traced"
    for key in ("event_id", "type", "stream_id", "stream_version", "occurred_at", "actor_id", "payload"):
        assert key in sent

    settings = platform.settings
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url)
    try:
        db = client[settings.mongo_db]
        registry = ProjectionRegistry(db, cache_seconds=0)
        message = await db[await registry.live_collection("messages")].find_one({"_id": ack["data"]["message_id"]})
        assert message is not None and message["_cid"] == cid
        trail = db[await registry.live_collection("audit")]
        record = None
        async with asyncio.timeout(15):
            while record is None:
                record = await trail.find_one({"_id": sent["event_id"]})
                await asyncio.sleep(0.1)
        assert record["correlation_id"] == cid and record["actor_id"] == alice.user_id
    finally:
        await client.close()


async def test_refused_commands_reach_the_trail_and_the_trail_verifies(platform: Platform, users: Users) -> None:
    alice, bob, eve = await users.new(), await users.new(), await users.new()
    conv = (await alice.ok("conversation:create", {"kind": "direct", "participant_ids": [bob.user_id]}))[
        "conversation_id"
    ]
    cid = f"refused-{uuid.uuid4().hex}"
    assert await eve.error("message:send", {"conversation_id": conv, "body": "x", "correlation_id": cid}) == (
        "not_found"
    )
    settings = platform.settings
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo_url)
    try:
        db = client[settings.mongo_db]
        trail = db[await ProjectionRegistry(db, cache_seconds=0).live_collection("audit")]
        record = None
        async with asyncio.timeout(15):
            while record is None:
                record = await trail.find_one({"correlation_id": cid})
                await asyncio.sleep(0.1)
        assert record["kind"] == "rejection" and record["outcome"] == "refused:not_found"
        assert record["actor_id"] == eve.user_id

        # A refusal at the gateway (validation) reaches the trail too, through its own topic.
        refused_cid = f"invalid-{uuid.uuid4().hex}"
        invalid = {"conversation_id": conv, "body": "", "correlation_id": refused_cid}
        assert await eve.error("message:send", invalid) == "invalid"
        at_gateway = None
        async with asyncio.timeout(15):
            while at_gateway is None:
                at_gateway = await trail.find_one({"correlation_id": refused_cid})
                await asyncio.sleep(0.1)
        assert at_gateway["outcome"] == "refused:invalid" and at_gateway["chain"].startswith(settings.refusals_topic)
    finally:
        await client.close()

    verify = parley(platform, "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "verified" in verify.stdout


async def test_projection_status_lists_every_projection_with_its_lag(platform: Platform) -> None:
    status = parley(platform, "projections", "status", "--json")
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)
    assert {row["name"] for row in rows} == {"users", "conversations", "messages", "keys", "media", "audit", "search"}
    assert all(isinstance(row["lag"], int) and row["lag"] >= 0 for row in rows)
    audit = next(row for row in rows if row["name"] == "audit")
    settings = platform.settings
    assert [src["topic"] for src in audit["sources"]] == [settings.events_topic, *settings.rejection_topics]
    assert audit["lag"] == sum(src["lag"] for src in audit["sources"])
    unknown = parley(platform, "projections", "rebuild", "nope")
    assert unknown.returncode == 2 and "unknown projection" in unknown.stderr
    assert "Traceback" not in unknown.stderr


async def test_a_plain_command_next_to_a_running_platform_reaches_it(
    platform: Platform, users: Users, tmp_path: Path
) -> None:
    """`parley replay` with no --data-dir and no server in the environment, in a directory whose
    ./.parley is the running platform (what `./scripts/up` then `parley replay` does)."""
    alice, bob = await users.new(), await users.new()
    conv = (await alice.ok("conversation:create", {"kind": "direct", "participant_ids": [bob.user_id]}))[
        "conversation_id"
    ]
    (tmp_path / ".parley").symlink_to(platform.data_dir.resolve(), target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "api.cli.main", "replay", "--stream", conv],  # the id as the ack gave it
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["type"], e["stream_id"]) for e in lines] == [("ConversationCreated", f"conversation:{conv}")]


def test_the_ready_line_says_where_the_logs_are(platform: Platform) -> None:
    ready = [line for line in platform.log_path.read_text().splitlines() if "ready at" in line]
    assert ready and f"logs in {(platform.data_dir / 'logs').resolve()}" in ready[0], ready
