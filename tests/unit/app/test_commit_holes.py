"""The worker's consumer never commits past a record it fetched but did not process."""

from __future__ import annotations

from intervaltree import IntervalTree  # type: ignore[import-untyped]  # what Faust keeps gaps in

from streams.idempotent import head_gap_blocks_commit


def test_a_hole_right_after_the_committed_offset_holds_the_commit() -> None:
    # 16 is the next offset to read; 17 and 18 were processed, 16 was not: committing 19 would lose it.
    assert head_gap_blocks_commit([17, 18], 16, IntervalTree())
    assert head_gap_blocks_commit([18, 17], 0, IntervalTree([]))  # from the very first offset too


def test_consecutive_acks_from_the_committed_offset_commit() -> None:
    assert not head_gap_blocks_commit([16, 17, 18], 16, IntervalTree())
    assert not head_gap_blocks_commit([], 16, IntervalTree())
    assert not head_gap_blocks_commit([3, 4], None, IntervalTree())  # nothing committed yet: Faust decides


def test_offsets_the_log_itself_skips_count_as_processed() -> None:
    assert not head_gap_blocks_commit([20], 16, IntervalTree.from_tuples([(16, 18), (18, 20)]))
    assert head_gap_blocks_commit([20], 16, IntervalTree.from_tuples([(16, 18)]))  # 18 and 19 unaccounted
    assert head_gap_blocks_commit([20], 16, IntervalTree.from_tuples([(17, 20)]))  # 16 unaccounted
