"""`parley replay`: the event log for audit, oldest first, one JSON object per line.

Reads the events topic up to its end at start (a plain consumer, no group), merges the
partitions by (occurred_at, partition, offset), drops repeated copies of an event, upcasts
each event to its current schema and redacts password hashes. Personal fields sealed under a
user's data key are opened (docs/THREAT-MODEL.md); an erased user's read ``"[erased]"``. ``--stream`` naming a stream
with no events at all is an error (exit 1, "no events for stream X"), so that a mistyped
id is not mistaken for an empty history.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from datetime import UTC, datetime
from typing import Any, TextIO

from api.cli.progress import CliError, ProgressBar, fail, load_cli_settings, run_command
from domain.accounts import STREAM_PREFIX as ACCOUNT_PREFIX
from domain.accounts import account_stream_id
from domain.conversation import STREAM_PREFIX as CONVERSATION_PREFIX
from domain.conversation import conversation_stream_id
from domain.envelope import EventEnvelope, iso
from domain.errors import DomainError
from domain.names import USERNAME_STREAM_PREFIX, normalise_username, username_stream_id
from infra.kafka.log_reader import LogEntry, LogReader, Record, StreamDedupe, decode_event_record
from infra.mongo.client import mongo_client
from infra.mongo.key_store import key_ring
from infra.security.shredding import KeyRing, UnreadableBox, open_event, sealed_subject, username_index_key
from infra.settings import Settings

PROG = "replay"
REDACTED = "[redacted]"
SECRET_FIELDS = frozenset({"password_hash"})


def parse_time(value: str | None, flag: str) -> datetime | None:
    """An ISO-8601 time (a date alone means its midnight); no zone means UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise CliError(f"invalid {flag} {value!r}: expected an ISO-8601 time such as 2024-05-01T12:00:00Z", 2) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_stream(value: str | None, index_key: bytes | None) -> str | None:
    """The stream id ``--stream`` names: a conversation id as clients know it (a bare UUID, or
    ``conversation:<uuid>``), a username reservation (``username:<name>``, normalised as at
    registration, then hashed with ``index_key`` as its stream id is; None: only checked), or a user's
    account (``account:<user id>``: their erasure). Anything else is bad input (exit 2)."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        raise CliError("--stream is empty: give a conversation id, conversation:<id> or username:<name>", 2)
    if text.startswith(ACCOUNT_PREFIX):
        try:
            return account_stream_id(str(uuid.UUID(text.removeprefix(ACCOUNT_PREFIX))))
        except ValueError:
            raise CliError(f"invalid --stream {value!r}: expected account:<user id> (a UUID)", 2) from None
    if text.startswith(USERNAME_STREAM_PREFIX):
        try:
            name = text.removeprefix(USERNAME_STREAM_PREFIX)
            return username_stream_id(name, index_key) if index_key is not None else normalise_username(name)
        except DomainError as exc:
            raise CliError(f"invalid --stream {value!r}: {exc.message}", 2) from None
    conversation = text.removeprefix(CONVERSATION_PREFIX)
    try:
        return conversation_stream_id(str(uuid.UUID(conversation)))
    except ValueError:
        raise CliError(
            f"invalid --stream {value!r}: expected a conversation id (a UUID), conversation:<id> or username:<name>", 2
        ) from None


def parse_user(value: str | None) -> str | None:
    """A user id (a UUID, printed in its canonical form); anything else is bad input (exit 2)."""
    if value is None:
        return None
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise CliError(f"invalid --user {value!r}: expected a user id (a UUID)", 2) from None


def redact(value: Any) -> Any:
    """The value with every field named like a secret replaced, at any depth."""
    if isinstance(value, dict):
        return {k: (REDACTED if k in SECRET_FIELDS else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def event_line(event: EventEnvelope, partition: int, offset: int) -> str:
    doc = {
        "event_id": event.event_id,
        "type": event.type,
        "schema_version": event.schema_version,
        "stream_id": event.stream_id,
        "stream_version": event.stream_version,
        "occurred_at": iso(event.occurred_at),
        "actor_id": event.actor_id,
        "correlation_id": event.correlation_id,
        "causation_id": event.causation_id,
        "payload": redact(event.payload),
        "partition": partition,
        "offset": offset,
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=str)


class ReplayFilter:
    """Which events to print; remembers whether the wanted stream was seen at all."""

    def __init__(
        self,
        stream: str | None = None,
        user: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> None:
        self.stream = stream or None
        self._stream_key = stream.encode() if stream else None
        self.user = user or None
        self.since = since
        self.until = until
        self.stream_seen = False
        self._dedupe = StreamDedupe()

    def decode(self, record: Record) -> EventEnvelope | None:
        # Records are keyed by stream id: skip other streams before paying for JSON decoding.
        if self._stream_key is not None and record.key is not None and record.key != self._stream_key:
            return None
        event = decode_event_record(record)
        if event is None or not self._dedupe.is_new(event):
            return None
        if self.stream is not None:
            if event.stream_id != self.stream:
                return None
            self.stream_seen = True
        if self.user is not None and event.actor_id != self.user:
            return None
        at = event.occurred_at if event.occurred_at.tzinfo else event.occurred_at.replace(tzinfo=UTC)
        if self.since is not None and at < self.since:
            return None
        if self.until is not None and at >= self.until:
            return None
        return event


def _order(entry: LogEntry[EventEnvelope]) -> tuple[datetime, int, int]:
    at = entry.value.occurred_at
    return (at if at.tzinfo else at.replace(tzinfo=UTC)), entry.partition, entry.offset


def _upcast(event: EventEnvelope) -> EventEnvelope:
    from domain.upcasting import upcast

    try:
        return upcast(event)
    except ValueError:
        return event  # a version this code does not know: print it as stored


async def _opened(event: EventEnvelope, keys: KeyRing | None) -> EventEnvelope:
    subject = sealed_subject(event)
    if keys is None or subject is None:
        return event
    try:
        return open_event(event, await keys.data_keys([subject]))
    except UnreadableBox:
        return event  # printed as stored: the box is not this key store's to open


async def replay(
    settings: Settings, chooser: ReplayFilter, out: TextIO, err: TextIO | None = None, keys: KeyRing | None = None
) -> int:
    """Write the selected events to ``out``, sealed fields opened with ``keys``; returns how many."""
    written = 0
    async with LogReader(settings, settings.events_topic, batch_size=2000) as reader:
        bar = ProgressBar("replay", err) if err is not None and err.isatty() else None
        total = reader.total
        async for entry in reader.merged(chooser.decode, _order):
            event = _upcast(await _opened(entry.value, keys))
            out.write(event_line(event, entry.partition, entry.offset) + "\n")
            written += 1
            if bar is not None and written % 500 == 0:
                bar.update(sum(reader.positions.values()), total)
        if bar is not None:
            bar.update(sum(reader.positions.values()), total, force=True)
            bar.finish()
        if not reader.partitions and err is not None:
            err.write(f"parley {PROG}: the log is empty (no topic {settings.events_topic})\n")
    out.flush()
    return written


def run_replay(args: argparse.Namespace) -> int:
    try:
        user = parse_user(args.user)
        since = parse_time(args.since, "--since")
        until = parse_time(args.until, "--until")
        if since is not None and until is not None and since >= until:
            raise CliError("--since must be before --until", 2)
        stream = parse_stream(args.stream, None)  # refused before any setting is read when malformed
        settings = load_cli_settings(args.data_dir)
        if not settings.master_key:
            raise CliError("no master key (PARLEY_MASTER_KEY, or --data-dir of a `parley up`)", 2)
        stream = parse_stream(args.stream, username_index_key(settings.master_key))
    except CliError as exc:
        return fail(PROG, exc.message, exc.status)
    chooser = ReplayFilter(stream, user, since, until)

    async def main() -> int:
        client = mongo_client(settings)
        try:
            await replay(settings, chooser, sys.stdout, sys.stderr, key_ring(settings, client))
        except BrokenPipeError:
            _silence_stdout()  # `parley replay | head`: the reader left, which is not an error
            return 0
        finally:
            await client.close()
        if chooser.stream is not None and not chooser.stream_seen:
            return fail(PROG, f"no events for stream {chooser.stream}", 1)
        return 0

    return run_command(PROG, main, settings)


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
