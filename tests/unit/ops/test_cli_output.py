"""What the operator commands print: replay lines and filters, time parsing, progress."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from api.cli.progress import CliError, ProgressBar
from api.cli.replay import ReplayFilter, event_line, parse_time, redact
from infra.kafka.codec import encode_event
from tests.unit.ops.events import chat_log


@dataclass
class Rec:
    """A log record as the reader hands it over (topic, partition, offset, key, value)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


def records(seed: int = 1) -> list[Rec]:
    out = []
    for offset, event in enumerate(chat_log(seed=seed, messages=20).events):
        key, value, _ = encode_event(event)
        out.append(Rec("t", 0, offset, 0, key, value))
    return out


def test_times_parse_as_utc_and_bad_ones_are_bad_input() -> None:
    assert parse_time("2025-03-01T10:00:00Z", "--since") == datetime(2025, 3, 1, 10, tzinfo=UTC)
    assert parse_time("2025-03-01T12:00:00+02:00", "--since") == datetime(2025, 3, 1, 10, tzinfo=UTC)
    assert parse_time("2025-03-01", "--until") == datetime(2025, 3, 1, tzinfo=UTC)
    assert parse_time(None, "--since") is None
    with pytest.raises(CliError) as bad:
        parse_time("last tuesday", "--since")
    assert bad.value.status == 2 and "invalid --since 'last tuesday'" in bad.value.message


def test_secrets_are_redacted_at_any_depth() -> None:
    doc = {"password_hash": "h", "nested": [{"password_hash": "x", "keep": 1}], "other": "y"}
    assert redact(doc) == {
        "password_hash": "[redacted]",
        "nested": [{"password_hash": "[redacted]", "keep": 1}],
        "other": "y",
    }


def test_a_line_carries_the_envelope() -> None:
    event = chat_log(seed=2, messages=1).events[0]
    line = json.loads(event_line(event, 1, 42))
    assert line["event_id"] == event.event_id and line["type"] == "UserRegistered"
    assert line["payload"]["password_hash"] == "[redacted]"
    assert line["occurred_at"].endswith("Z") and (line["partition"], line["offset"]) == (1, 42)
    assert {"schema_version", "causation_id", "correlation_id", "actor_id", "stream_version"} <= set(line)


def test_the_filter_drops_repeated_copies_and_remembers_the_stream() -> None:
    recs = records()
    everything = ReplayFilter()
    events = [r for r in (everything.decode(x) for x in recs + recs[5:9]) if r is not None]
    assert len(events) == len(recs)  # the repeated copies are dropped
    conversation = next(e.stream_id for e in events if e.stream_id.startswith("conversation:"))
    chooser = ReplayFilter(stream=conversation)
    chosen = [e for e in (chooser.decode(r) for r in recs) if e is not None]
    assert chosen and all(e.stream_id == conversation for e in chosen) and chooser.stream_seen
    nothing = ReplayFilter(stream="conversation:none")
    assert all(nothing.decode(r) is None for r in recs) and not nothing.stream_seen
    t = events[5].occurred_at
    window = ReplayFilter(since=t, until=t + timedelta(milliseconds=1))
    assert [e.event_id for e in (window.decode(r) for r in recs) if e is not None] == [events[5].event_id]
    undecodable = Rec("t", 0, 99, 0, b"k", b"not json")
    assert ReplayFilter().decode(undecodable) is None


def test_progress_is_a_bar_on_a_terminal_and_lines_elsewhere() -> None:
    tty = io.StringIO()
    bar = ProgressBar("rebuild messages", tty, tty=True)
    bar.update(50, 200, "rebuild", force=True)
    bar.finish("done")
    out = tty.getvalue()
    assert out.startswith("\r\x1b[2Krebuild messages  [#######") and " 25%  50/200 " in out
    assert out.endswith("\ndone\n")
    plain = io.StringIO()
    lines = ProgressBar("verifying", plain, tty=False, line_interval=3600)
    for n in range(1, 1000):
        lines.update(n, 0)
    lines.finish()
    text = plain.getvalue().splitlines()
    assert len(text) == 2 and "\r" not in plain.getvalue()  # the first update and the final state
    assert text[-1].startswith("verifying  999  ")
