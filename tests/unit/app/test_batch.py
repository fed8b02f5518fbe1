"""Deciding commands in batches gives exactly what deciding them one at a time gives."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from commands.batch import Decided, Overlay, decide_batch, save_batch
from commands.handler import RECENT_OUTCOMES, Result, Stores
from domain.conversation import conversation_stream_id
from domain.envelope import CommandEnvelope
from tests.unit.app.scenario import USERS, DictKV, Scenario, new_stores

A, B, C, _ = USERS


def snapshot(decided: list[Decided[Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            d.result.outcome.model_dump(mode="json"),
            [e.model_dump(mode="json") for e in d.result.events],
            d.result.rejection.model_dump(mode="json") if d.result.rejection else None,
        )
        for d in decided
    ]


def run_batches(stores: Stores, batches: list[list[CommandEnvelope]]) -> list[Decided[Any]]:
    out: list[Decided[Any]] = []
    for batch in batches:
        decided = decide_batch(batch, stores)
        save_batch(decided, stores)  # "after the log acknowledged every event"
        out.extend(decided)
    return out


def conversation_commands(s: Scenario, conv: str) -> list[CommandEnvelope]:
    stream = conversation_stream_id(conv)
    return [s.command("message:send", stream, A, {"conversation_id": conv, "body": f"m{i}"}) for i in range(5)]


def test_a_later_command_of_the_same_aggregate_sees_the_earlier_one() -> None:
    s = Scenario()
    conv = s.create_direct(A, B)
    decided = decide_batch(conversation_commands(s, conv), s.stores)
    versions = [d.result.outcome.data["version"] for d in decided]
    seqs = [d.result.outcome.data["seq"] for d in decided]
    assert versions == [2, 3, 4, 5, 6] and seqs == [1, 2, 3, 4, 5]
    assert [e.stream_version for d in decided for e in d.result.events] == [2, 3, 4, 5, 6]


def test_nothing_reaches_the_stores_until_the_batch_is_saved() -> None:
    s = Scenario()
    conv = s.create_direct(A, B)
    before = dict(s.stores.aggregates.data)  # type: ignore[attr-defined]
    decided = decide_batch(conversation_commands(s, conv), s.stores)
    assert s.stores.aggregates.data == before  # type: ignore[attr-defined]
    save_batch(decided, s.stores)
    state = s.stores.aggregates.get(conversation_stream_id(conv))
    assert state is not None and state["state"]["version"] == 6


def test_a_command_id_repeated_inside_one_batch_is_answered_from_memory() -> None:
    s = Scenario()
    conv = s.create_direct(A, B)
    cmd = s.command("message:send", conversation_stream_id(conv), A, {"conversation_id": conv, "body": "once"})
    first, second = decide_batch([cmd, cmd], s.stores)
    assert not first.result.repeated and len(first.result.events) == 1
    assert second.result.repeated and second.result.events == []
    assert second.result.outcome.data == first.result.outcome.data


def test_a_command_id_repeated_in_a_later_batch_appends_nothing() -> None:
    s = Scenario()
    conv = s.create_direct(A, B)
    cmd = s.command("message:send", conversation_stream_id(conv), A, {"conversation_id": conv, "body": "once"})
    (first,) = run_batches(s.stores, [[cmd]])
    (again,) = run_batches(s.stores, [[cmd]])
    assert again.result.repeated and again.result.outcome.data == first.result.outcome.data


def test_a_redelivered_batch_decides_to_identical_events() -> None:
    """The worker died after appending but before saving: the batch comes again."""
    s = Scenario()
    conv = s.create_direct(A, B)
    batch = conversation_commands(s, conv)
    first = decide_batch(batch, s.stores)
    second = decide_batch(batch, s.stores)
    assert snapshot(first) == snapshot(second)


def test_a_command_that_raises_is_refused_alone(monkeypatch: Any) -> None:
    import commands.batch as batch_module
    import commands.handler as handler_module

    s = Scenario()
    conv = s.create_direct(A, B)
    batch = conversation_commands(s, conv)
    poison = batch[2]
    real = handler_module.handle

    def handle(command: CommandEnvelope, stores: Stores) -> Any:
        if command.command_id == poison.command_id:
            raise RuntimeError("a bug")
        return real(command, stores)

    monkeypatch.setattr(batch_module, "handle", handle)
    decided = decide_batch(batch, s.stores)
    outcomes = [d.result.outcome for d in decided]
    assert [o.ok for o in outcomes] == [True, True, False, True, True]
    assert outcomes[2].error_code == "internal" and decided[2].result.events == []
    assert decided[2].result.rejection is not None and decided[2].result.rejection.code == "internal"
    # The refused command took no version: the next one follows the one before it.
    assert [o.data.get("version") for o in outcomes] == [2, 3, None, 4, 5]


def test_a_command_whose_records_cannot_be_encoded_is_refused_alone() -> None:
    """An unencodable event would fail the append of the whole batch on every retry."""
    s = Scenario()
    conv = s.create_direct(A, B)
    batch = conversation_commands(s, conv)
    poison = batch[1]

    def encode(result: Result) -> list[str]:
        if result.events and result.outcome.command_id == poison.command_id:
            raise TypeError("not serializable")
        records = [e.event_id for e in result.events]
        return records + ([result.rejection.rejection_id] if result.rejection else [])

    decided = run_batches_encoded(s.stores, batch, encode)
    assert [d.result.outcome.ok for d in decided] == [True, False, True, True, True]
    assert decided[1].result.outcome.error_code == "internal" and decided[1].result.events == []
    assert decided[1].result.rejection is not None
    assert decided[1].records == [decided[1].result.rejection.rejection_id]
    assert [[e.stream_version for e in d.result.events] for d in decided] == [[2], [], [3], [4], [5]]
    assert [len(d.records) for d in decided] == [1, 1, 1, 1, 1]
    saved = s.stores.aggregates.get(conversation_stream_id(conv))
    assert saved is not None and saved["state"]["version"] == 5


def run_batches_encoded(
    stores: Stores, batch: list[CommandEnvelope], encode: Callable[[Result], list[str]]
) -> list[Decided[str]]:
    decided = decide_batch(batch, stores, encode)
    save_batch(decided, stores)
    return decided


def test_versions_stay_gap_free_across_batches_of_interleaved_aggregates() -> None:
    s = Scenario()
    conv = s.create_direct(A, B)
    group = s.create_group(A, [B, C])
    one = conversation_commands(s, conv)
    other = conversation_commands(s, group)
    interleaved = [c for pair in zip(one, other, strict=True) for c in pair]
    decided = run_batches(s.stores, [interleaved[:3], interleaved[3:7], interleaved[7:]])
    by_stream: dict[str, list[int]] = {}
    for d in decided:
        for e in d.result.events:
            by_stream.setdefault(e.stream_id, []).append(e.stream_version)
    assert by_stream[conversation_stream_id(conv)] == [2, 3, 4, 5, 6]
    group_versions = by_stream[conversation_stream_id(group)]
    assert group_versions == list(range(group_versions[0], group_versions[0] + 5))
    saved = s.stores.aggregates.get(conversation_stream_id(group))
    assert saved is not None and saved["state"]["version"] == group_versions[-1]


def test_a_command_whose_record_is_unreadable_is_refused_alone_and_its_record_left_as_it_was() -> None:
    s = Scenario()
    conv = s.create_direct(A, B)
    group = s.create_group(A, [B, C])
    broken = {"not a record": True}
    s.stores.aggregates.put(conversation_stream_id(group), broken)
    bad = s.command("message:send", conversation_stream_id(group), A, {"conversation_id": group, "body": "x"})
    batch = [*conversation_commands(s, conv)[:2], bad, *conversation_commands(s, conv)[:1]]
    decided = run_batches(s.stores, [batch])
    assert [d.result.outcome.ok for d in decided] == [True, True, False, True]
    assert decided[2].result.outcome.error_code == "internal" and decided[2].result.events == []
    assert decided[2].result.rejection is not None
    assert s.stores.aggregates.get(conversation_stream_id(group)) == broken
    # The refusal is still the remembered answer to a retry of the same command.
    (again,) = run_batches(s.stores, [[bad]])
    assert again.result.outcome.error_code == "internal"


def test_overlay_reads_its_own_writes_and_leaves_the_base_alone() -> None:
    base = DictKV()
    base.put("k", {"v": 1})
    overlay = Overlay(base)
    assert overlay.get("k") == {"v": 1}
    overlay.put("k", {"v": 2})
    overlay.put("new", {"v": 3})
    assert overlay.get("k") == {"v": 2} and overlay.get("new") == {"v": 3}
    assert base.get("k") == {"v": 1} and base.get("new") is None


class CountingKV(DictKV):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def get(self, key: str) -> dict[str, Any] | None:
        self.reads.append(key)
        return super().get(key)


def test_overlay_reads_each_base_key_once_and_hands_out_copies() -> None:
    base = CountingKV()
    base.put("k", {"v": 1})
    overlay = Overlay(base)
    first = overlay.get("k")
    assert first == {"v": 1}
    first["v"] = 99  # a caller changing what it got changes nothing stored
    assert overlay.get("k") == {"v": 1} and overlay.get("absent") is None and overlay.get("absent") is None
    assert base.reads == ["k", "absent"]


def test_a_batch_reads_each_aggregate_record_once() -> None:
    s = Scenario()
    conv = s.create_direct(A, B)
    stream = conversation_stream_id(conv)
    counting = CountingKV()
    counting.data = cast(DictKV, s.stores.aggregates).data
    stores = Stores(counting, s.stores.messages, s.stores.outcomes)
    decide_batch(
        [s.command("message:send", stream, A, {"conversation_id": conv, "body": f"m{i}"}) for i in range(5)], stores
    )
    assert counting.reads.count(stream) == 1


def _mixed_commands(s: Scenario, conv: str, group: str, picks: list[tuple[int, int]]) -> list[CommandEnvelope]:
    """A stream of commands over two conversations, with repeats of earlier command ids."""
    made: list[CommandEnvelope] = []
    for kind, n in picks:
        target = conv if n % 2 else group
        stream = conversation_stream_id(target)
        actor = USERS[n % 3]
        if kind == 0 or not made:
            made.append(s.command("message:send", stream, actor, {"conversation_id": target, "body": f"b{n}"}))
        elif kind == 1:
            made.append(made[n % len(made)])  # a retry of an earlier command
        elif kind == 2:
            made.append(s.command("message:read", stream, actor, {"conversation_id": target, "seq": n % 4}))
        else:
            made.append(s.command("conversation:rename", stream, actor, {"conversation_id": target, "title": f"t{n}"}))
    return made


@settings(max_examples=60, deadline=None)
@given(
    picks=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 50)), min_size=1, max_size=30),
    cuts=st.lists(st.integers(1, 8), min_size=1, max_size=30),
)
def test_batches_of_any_size_decide_like_one_at_a_time(picks: list[tuple[int, int]], cuts: list[int]) -> None:
    setup = Scenario()
    conv = setup.create_direct(A, B)
    group = setup.create_group(A, [B, C])
    commands = _mixed_commands(setup, conv, group, picks)

    def fresh() -> Stores:
        stores = new_stores()
        for name in ("aggregates", "messages", "outcomes"):
            source = getattr(setup.stores, name)
            target = getattr(stores, name)
            for key, value in source.data.items():
                target.put(key, value)
        return stores

    one_at_a_time = run_batches(fresh(), [[c] for c in commands])
    batches: list[list[CommandEnvelope]] = []
    i = 0
    for cut in cuts * (len(commands) // max(1, sum(cuts)) + 1):
        if i >= len(commands):
            break
        batches.append(commands[i : i + cut])
        i += cut
    assert snapshot(run_batches(fresh(), batches)) == snapshot(one_at_a_time)


def test_an_erased_actors_commands_are_refused_and_their_earlier_acks_still_answered() -> None:
    s = Scenario()
    conv = s.create_group(A, [B], "team")
    stream = conversation_stream_id(conv)
    before = s.command("message:send", stream, A, {"conversation_id": conv, "body": "before"})
    decided = decide_batch([before], s.stores)
    save_batch(decided, s.stores)
    assert decided[0].result.outcome.ok

    def erased_a(command: CommandEnvelope) -> tuple[Any, str] | None:
        return ("unauthorized", "this account is erased") if command.actor_id == A else None

    after = s.command("message:send", stream, A, {"conversation_id": conv, "body": "after"})
    other = s.command("message:send", stream, B, {"conversation_id": conv, "body": "from b"})
    batch = decide_batch([before, after, other], s.stores, refuse=erased_a)
    assert batch[0].result.outcome == decided[0].result.outcome.model_copy(update={"reply_to": before.reply_to})
    assert batch[0].result.repeated, "a retry of an acked command gets its ack, not a refusal"
    assert (batch[1].result.outcome.ok, batch[1].result.outcome.error_code) == (False, "unauthorized")
    assert batch[1].result.events == [] and batch[1].result.rejection is not None
    assert batch[2].result.outcome.ok and batch[2].result.events[0].payload["seq"] == 2, "others decide on"


class Recording:
    """A table that keeps what is written to it, in order (its changelog topic)."""

    def __init__(self, base: DictKV) -> None:
        self.base = base
        self.writes: list[tuple[str, dict[str, Any]]] = []

    def get(self, key: str) -> dict[str, Any] | None:
        return self.base.get(key)

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.writes.append((key, dict(value)))


def test_a_crash_anywhere_in_a_batchs_save_loses_no_ack_and_redecides_to_identical_events() -> None:
    """Each table is its own changelog topic: a crash keeps a prefix of each table's writes,
    independently, except that the message index is durable before any record or outcome is
    written (the worker waits for it). Whatever survives, the redelivered batch answers every
    command as before, appends only events identical to the first ones, and once saved leaves
    the message index complete."""
    s = Scenario()
    group, direct = s.create_group(A, [B], "team"), s.create_direct(A, C)
    stream = conversation_stream_id(group)
    batch = [
        *conversation_commands(s, group)[:3],
        s.command("message:send", stream, A, {"conversation_id": group, "body": "x"}, expected_version=1),  # refused
        *conversation_commands(s, direct)[:2],
    ]
    before = {name: dict(cast(DictKV, getattr(s.stores, name)).data) for name in ("aggregates", "messages", "outcomes")}
    first = decide_batch(batch, s.stores)
    tables = {name: Recording(cast(DictKV, getattr(s.stores, name))) for name in before}
    save_batch(first, Stores(tables["aggregates"], tables["messages"], tables["outcomes"]))
    counts = {name: len(table.writes) for name, table in tables.items()}
    index = dict(tables["messages"].writes)
    assert counts["aggregates"] == 2 and counts["messages"] == 5, "each record once, each message's entry once"
    for a in range(counts["aggregates"] + 1):
        for m in range(counts["messages"] + 1):
            for o in range(counts["outcomes"] + 1):
                if (a or o) and m < counts["messages"]:
                    continue  # the index is durable before step 2 starts
                kept = {"aggregates": a, "messages": m, "outcomes": o}
                stores = Stores(DictKV(), DictKV(), DictKV())
                for name, data in before.items():
                    table = cast(DictKV, getattr(stores, name))
                    table.data = {k: dict(v) for k, v in data.items()}
                    for key, value in tables[name].writes[: kept[name]]:
                        table.put(key, value)
                again = decide_batch(batch, stores)
                for old, new in zip(first, again, strict=True):
                    assert new.result.outcome.model_dump() == old.result.outcome.model_dump(), kept
                    assert new.result.repeated or snapshot([new]) == snapshot([old]), kept
                save_batch(again, stores)
                assert {key: stores.messages.get(key) for key in index} == index, kept


def test_a_record_saved_once_per_batch_answers_every_command_of_the_batch_however_many() -> None:
    """More commands of one aggregate in one batch than ``recent`` keeps: the record is written
    once, with all of their outcomes, so a crash that loses every long-term outcome of the batch
    still answers each redelivered command from the record and appends nothing again."""
    s = Scenario()
    conv = s.create_direct(A, B)
    stream = conversation_stream_id(conv)
    batch = [
        s.command("message:send", stream, A, {"conversation_id": conv, "body": f"m{i}"})
        for i in range(RECENT_OUTCOMES + 6)
    ]
    first = decide_batch(batch, s.stores)
    tables = {name: Recording(cast(DictKV, getattr(s.stores, name))) for name in ("aggregates", "messages", "outcomes")}
    save_batch(first, Stores(tables["aggregates"], tables["messages"], tables["outcomes"]))
    assert [key for key, _ in tables["aggregates"].writes] == [stream], "one write of the record per batch"
    assert len(tables["outcomes"].writes) == len(batch) == len(tables["messages"].writes)
    for key, value in tables["aggregates"].writes + tables["messages"].writes:  # the outcomes table lost it all
        (s.stores.aggregates if key == stream else s.stores.messages).put(key, value)
    again = decide_batch(batch, s.stores)
    assert all(d.result.repeated for d in again)
    assert [d.result.outcome for d in again] == [d.result.outcome for d in first]
    following = s.command("message:send", stream, A, {"conversation_id": conv, "body": "next"})
    after = decide_batch([following], s.stores)
    assert after[0].result.events[0].payload["seq"] == len(batch) + 1
    save_batch(after, s.stores)
    assert len(cast(dict[str, Any], s.stores.aggregates.get(stream))["recent"]) == RECENT_OUTCOMES, (
        "trimmed by the next command"
    )


def test_each_command_reads_within_its_own_scope() -> None:
    """``within(i)`` is entered around the i-th command's reads (the worker makes the command's
    event current there, so a table reads the command's own partition)."""
    s = Scenario()
    conv = s.create_direct(A, B)
    group = s.create_direct(A, C)
    batch = [
        s.command("message:send", conversation_stream_id(target), A, {"conversation_id": target, "body": f"m{i}"})
        for i, target in enumerate([conv, group, conv])
    ]
    inside: list[int | None] = [None]
    seen: list[tuple[int | None, str]] = []

    class Watching(DictKV):
        def get(self, key: str) -> dict[str, Any] | None:
            seen.append((inside[0], key))
            return super().get(key)

    watching = Watching()
    watching.data = cast(DictKV, s.stores.aggregates).data

    @contextmanager
    def within(i: int) -> Iterator[None]:
        inside[0] = i
        try:
            yield
        finally:
            inside[0] = None

    decide_batch(batch, Stores(watching, s.stores.messages, s.stores.outcomes), within=within)
    assert seen, "the batch read its records"
    assert [i for i, _ in seen if i is None] == [], "no read outside a command's scope"
    assert {key for i, key in seen if i == 1} == {conversation_stream_id(group)}
    assert {key for i, key in seen if i in (0, 2)} == {conversation_stream_id(conv)}
