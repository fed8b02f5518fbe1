"""The decide agent's port over a Faust table: one store read per key, decoded values kept per generation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from streams.app import TableKV, send_changelogs


class FakeChangelog:
    """What TableKV uses of a table's changelog topic: Faust's encoding and ``send`` (unit tests only).

    ``send`` hands back the acknowledgement's future, as Faust's does; an acknowledged record calls the
    callback. ``failing`` acknowledgements fail, one each, before the others succeed."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.failing = 0

    def prepare_value(self, value: Any, value_serializer: str) -> tuple[bytes, dict[str, str]]:
        assert value_serializer == "json"
        return json.dumps(value).encode(), {}

    async def send(self, **kwargs: Any) -> asyncio.Future[int]:
        self.sent.append(kwargs)
        ack: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if self.failing:
            self.failing -= 1
            ack.set_exception(ConnectionError("no leader"))
        else:
            ack.set_result(len(self.sent))
            kwargs["callback"](ack)
        return ack


class FakeTable:
    """What TableKV uses of a Faust table: ``data`` (its store), the current event's partition and
    the changelog topic (unit tests only)."""

    name = "probe"
    key_serializer = "json"
    value_serializer = "json"

    def __init__(self, partition: int | None = 3) -> None:
        self.stored: dict[str, dict[str, Any]] = {}
        self.reads: list[str] = []
        self.partition = partition
        self.changelog_topic = FakeChangelog()
        self.persisted: list[int] = []

    @property
    def data(self) -> FakeTable:
        return self

    def __getitem__(self, key: str) -> dict[str, Any]:
        self.reads.append(key)
        return dict(self.stored[key])  # a store decodes a fresh value on every read

    def __setitem__(self, key: str, value: dict[str, Any]) -> None:
        self.stored[key] = dict(value)

    def partition_for_key(self, key: str) -> int | None:
        return self.partition

    def _on_changelog_sent(self, ack: asyncio.Future[int]) -> None:
        self.persisted.append(ack.result())


def cached(capacity: int = 4) -> tuple[FakeTable, TableKV]:
    """A table and its port keeping ``capacity`` values, valid for generation 1."""
    table = FakeTable()
    kv = TableKV(table, cached=capacity)
    kv.valid_for(1)
    return table, kv


def test_without_a_cache_every_get_reads_the_store() -> None:
    table = FakeTable()
    kv = TableKV(table)
    kv.put("a", {"v": 1})
    assert kv.get("a") == {"v": 1}
    assert kv.get("a") == {"v": 1}
    assert kv.get("missing") is None
    assert table.reads == ["a", "a", "missing"]


def test_a_cached_value_is_read_from_the_store_once() -> None:
    table, kv = cached()
    table.stored["a"] = {"v": 1}
    assert kv.get("a") == {"v": 1}
    assert kv.get("a") == {"v": 1}
    assert table.reads == ["a"]


def test_a_put_value_is_read_back_without_the_store_and_reaches_the_table() -> None:
    table, kv = cached()
    kv.put("a", {"v": 2})
    assert kv.get("a") == {"v": 2}
    assert table.reads == []
    assert table.stored["a"] == {"v": 2}


def test_a_miss_is_not_cached() -> None:
    table, kv = cached()
    assert kv.get("a") is None
    table.stored["a"] = {"v": 1}
    assert kv.get("a") == {"v": 1}


def test_a_new_generation_forgets_every_value() -> None:
    """A rebalance may recover the table from its changelog: what was cached may be stale."""
    table, kv = cached()
    kv.put("a", {"v": 1})
    table.stored["a"] = {"v": 9}  # a recovery wrote another value
    kv.valid_for(1)
    assert kv.get("a") == {"v": 1}, "same generation: the cached value"
    kv.valid_for(2)
    assert kv.get("a") == {"v": 9}


def test_the_least_recently_used_value_goes_first() -> None:
    table, kv = cached(2)
    kv.put("a", {"v": 1})
    kv.put("b", {"v": 2})
    kv.get("a")  # a is used again: b is now the oldest
    kv.put("c", {"v": 3})
    table.reads.clear()
    assert kv.get("a") == {"v": 1}
    assert kv.get("c") == {"v": 3}
    assert table.reads == []
    assert kv.get("b") == {"v": 2}
    assert table.reads == ["b"]


def test_changing_what_get_returned_or_what_was_put_leaves_the_cache_alone() -> None:
    _, kv = cached()
    value = {"v": 1}
    kv.put("a", value)
    value["v"] = 2
    got = kv.get("a")
    assert got == {"v": 1}
    assert got is not None
    got["v"] = 3
    assert kv.get("a") == {"v": 1}


async def test_a_put_reaches_the_store_at_once_and_the_changelog_when_sent() -> None:
    table = FakeTable(partition=5)
    kv = TableKV(table)
    kv.put("a", {"v": 1})
    assert table.stored["a"] == {"v": 1}
    assert table.changelog_topic.sent == []
    assert kv.unsent == 1
    await kv.send_changelog()
    [record] = table.changelog_topic.sent
    assert (record["key"], record["partition"]) == ("a", 5), "the current event's partition"
    assert json.loads(record["value"]) == {"v": 1}
    assert (record["key_serializer"], record["value_serializer"]) == ("json", "raw")
    assert table.persisted == [1], "the acknowledgement moved the store's persisted offset"
    assert kv.unsent == 0
    await kv.send_changelog()
    assert len(table.changelog_topic.sent) == 1, "an acknowledged record is not sent again"


async def test_the_changelog_record_is_what_was_put_even_if_the_caller_changes_it_later() -> None:
    table = FakeTable()
    kv = TableKV(table)
    value = {"v": 1}
    kv.put("a", value)
    value["v"] = 2
    await kv.send_changelog()
    assert json.loads(table.changelog_topic.sent[0]["value"]) == {"v": 1}


async def test_records_that_were_not_acknowledged_are_sent_again() -> None:
    table = FakeTable()
    kv = TableKV(table)
    kv.put("a", {"v": 1})
    kv.put("b", {"v": 2})
    table.changelog_topic.failing = 1
    with pytest.raises(ConnectionError):
        await kv.send_changelog()
    assert kv.unsent == 2, "nothing counts as saved until every record is acknowledged"
    await kv.send_changelog()
    assert [r["key"] for r in table.changelog_topic.sent] == ["a", "b", "a", "b"]
    assert kv.unsent == 0


async def test_send_changelogs_waits_for_every_table() -> None:
    first, second = FakeTable(), FakeTable()
    ports = (TableKV(first), TableKV(second))
    ports[0].put("a", {"v": 1})
    ports[1].put("b", {"v": 2})
    ports[1].put("c", {"v": 3})
    await send_changelogs(ports)
    assert [r["key"] for r in first.changelog_topic.sent] == ["a"]
    assert [r["key"] for r in second.changelog_topic.sent] == ["b", "c"]
    assert (ports[0].unsent, ports[1].unsent) == (0, 0)


def test_a_write_with_no_partition_is_refused_and_changes_nothing() -> None:
    table = FakeTable(partition=None)
    kv = TableKV(table)
    with pytest.raises(RuntimeError):
        kv.put("a", {"v": 1})
    assert table.stored == {}
    assert kv.unsent == 0
