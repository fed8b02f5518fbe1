"""`parley replay` as a user runs it: a subprocess printing JSON Lines."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from domain.envelope import iso
from domain.names import username_stream_id
from infra.security.shredding import username_index_key
from tests.integration.ops.conftest import OpsEnv
from tests.unit.ops.events import chat_log

REQUIRED = {"event_id", "type", "stream_id", "stream_version", "occurred_at", "actor_id", "correlation_id", "payload"}


def lines(stdout: str) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


async def test_replay_prints_the_whole_log_oldest_first_once_upcast_and_redacted(ops: OpsEnv) -> None:
    await ops.create_topics(events=3)
    log = chat_log(seed=11, messages=40, v1_every=5)
    await ops.produce(log.events)
    await ops.produce(log.events[3:9])  # repeated copies (a producer retry)
    result = ops.cli("replay")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # progress only on a terminal
    out = lines(result.stdout)
    assert [o["event_id"] for o in out] == [e.event_id for e in log.events]
    assert all(set(o) >= REQUIRED for o in out)
    assert [o["occurred_at"] for o in out] == sorted(o["occurred_at"] for o in out)
    assert out[0]["occurred_at"] == iso(log.events[0].occurred_at)
    registered = [o for o in out if o["type"] == "UserRegistered"]
    assert registered and all(o["payload"]["password_hash"] == "[redacted]" for o in registered)
    assert "argon2" not in result.stdout
    sent = [o for o in out if o["type"] == "MessageSent"]
    assert sent and all(
        o["schema_version"] == 2 and "body" in o["payload"] and "text" not in o["payload"] for o in sent
    )


async def test_replay_filters_by_stream_user_and_time(ops: OpsEnv) -> None:
    await ops.create_topics(events=3)
    log = chat_log(seed=12, messages=40)
    await ops.produce(log.events)
    conversation = next(e.stream_id for e in log.events if e.type == "ConversationCreated")
    stream = ops.cli("replay", "--stream", conversation)
    assert stream.returncode == 0, stream.stderr
    got = lines(stream.stdout)
    expected = [e for e in log.events if e.stream_id == conversation]
    assert [o["event_id"] for o in got] == [e.event_id for e in expected]
    assert [o["stream_version"] for o in got] == list(range(1, len(expected) + 1))
    # The id as clients know it (an ack's conversation_id) names the same stream.
    bare = ops.cli("replay", "--stream", conversation.removeprefix("conversation:"))
    assert bare.returncode == 0 and bare.stdout == stream.stdout, bare.stderr

    user = log.events[0].actor_id
    assert user is not None
    by_user = lines(ops.cli("replay", "--user", user).stdout)
    assert by_user and [o["event_id"] for o in by_user] == [e.event_id for e in log.events if e.actor_id == user]

    since = log.events[10].occurred_at
    until = log.events[20].occurred_at
    window = ops.cli("replay", "--since", iso(since), "--until", until.isoformat())
    assert window.returncode == 0, window.stderr
    assert [o["event_id"] for o in lines(window.stdout)] == [e.event_id for e in log.events[10:20]]

    combined = ops.cli("replay", "--stream", conversation, "--user", user, "--since", iso(since - timedelta(days=1)))
    assert [o["event_id"] for o in lines(combined.stdout)] == [e.event_id for e in expected if e.actor_id == user]


MISSING = "00000000-0000-4000-8000-000000000000"


async def test_replay_bad_input_is_one_line_and_non_zero(ops: OpsEnv) -> None:
    await ops.create_topics(events=2)
    await ops.produce(chat_log(seed=13, messages=5).events)
    for args, status, words in [
        (["--since", "yesterday"], 2, "invalid --since"),
        (["--until", "2025-13-45"], 2, "invalid --until"),
        (["--since", "2025-03-02", "--until", "2025-03-01"], 2, "--since must be before --until"),
        (["--stream", "conversation:does-not-exist"], 2, "invalid --stream 'conversation:does-not-exist'"),
        (["--stream", ""], 2, "--stream is empty"),
        (["--user", "nobody"], 2, "invalid --user 'nobody'"),
        ([f"--stream={MISSING}"], 1, f"no events for stream conversation:{MISSING}"),
    ]:
        result = ops.cli("replay", *args)
        assert result.returncode == status, (args, result.stderr)
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("parley replay: "), result.stderr
        assert words in result.stderr
        assert "Traceback" not in result.stderr


async def test_replay_when_servers_are_down_or_unknown(ops: OpsEnv, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from infra.localstack.ports import free_port

    env = ops.env()
    env["PARLEY_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{free_port()}"
    down = ops.cli("replay", env=env, timeout=60)
    assert down.returncode == 1
    assert down.stderr.startswith("parley replay: Kafka unavailable") and down.stderr.count("\n") == 1, down.stderr

    no_platform = ops.cli("replay", "--data-dir", str(tmp_path / "nothing-here"))
    assert no_platform.returncode == 2
    assert no_platform.stderr.startswith("parley replay: ") and no_platform.stderr.count("\n") == 1
    assert "Traceback" not in no_platform.stderr


async def test_replay_finds_a_username_reservation_by_its_name(ops: OpsEnv) -> None:
    """Its stream id holds a keyed hash of the name: replay hashes ``username:<name>`` as registration does."""
    await ops.create_topics(events=3)
    log = chat_log(seed=13, messages=2)
    template = next(e for e in log.events if e.type == "UserRegistered")
    name = "Ada.Lovelace"
    stream = username_stream_id(name, username_index_key(ops.settings.master_key))
    registration = template.model_copy(update={"event_id": str(uuid.uuid4()), "stream_id": stream})
    await ops.produce([*log.events, registration])
    found = ops.cli("replay", "--stream", f"username:{name.upper()}")
    assert found.returncode == 0, found.stderr
    assert [o["event_id"] for o in lines(found.stdout)] == [registration.event_id]
    assert "ada.lovelace" not in stream.lower(), "the name is not in the stream id"
