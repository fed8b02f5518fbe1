"""The decide agent's port over a Faust table: one store read per key, decoded values kept per generation."""

from __future__ import annotations

from typing import Any

from streams.app import TableKV


class FakeTable:
    """What TableKV uses of a Faust table: ``data`` (its store) and item assignment (unit tests only)."""

    def __init__(self) -> None:
        self.stored: dict[str, dict[str, Any]] = {}
        self.reads: list[str] = []

    @property
    def data(self) -> FakeTable:
        return self

    def __getitem__(self, key: str) -> dict[str, Any]:
        self.reads.append(key)
        return dict(self.stored[key])  # a store decodes a fresh value on every read

    def __setitem__(self, key: str, value: dict[str, Any]) -> None:
        self.stored[key] = dict(value)


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
