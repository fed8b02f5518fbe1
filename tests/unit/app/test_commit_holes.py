"""The worker's consumer never commits past a record it fetched but did not process."""

from __future__ import annotations

from typing import Any, cast

from faust.types.tuples import TP, ConsumerMessage
from intervaltree import IntervalTree  # type: ignore[import-untyped]  # what Faust keeps gaps in

from streams.idempotent import ParleyApp, head_gap_blocks_commit


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


def _record(offset: int, *, taken: bool) -> ConsumerMessage:
    message = ConsumerMessage(
        "parley.events", 0, offset, 0.0, 0, None, b"k", b"v", None, tp=TP("parley.events", 0), generation_id=3
    )
    message.tracked = taken  # a stream tracks every record it takes, before its processors run
    return message


async def test_a_record_a_stream_skipped_during_a_rebalance_is_never_committed_past() -> None:
    app = ParleyApp("commit-probe", broker="kafka://127.0.0.1:1", web_enabled=False)
    consumer: Any = app.consumer  # PromptConsumer, with Faust's bookkeeping of acks and commits
    cast(Any, app.topics)._acking_topics.add("parley.events")  # what subscribing an agent does
    tp = TP("parley.events", 0)
    consumer._committed_offset[tp] = 18
    # 18 was fetched, then skipped while the rebalance paused the flow: Faust acks it all the same.
    assert _record(18, taken=False).ack(consumer) is False
    assert _record(19, taken=True).ack(consumer) is True
    assert _record(20, taken=True).ack(consumer) is True
    assert consumer._new_offset(tp) is None  # the commit stays at 18, where the rebalance's seek reads again
    assert _record(18, taken=True).ack(consumer) is True  # read again and processed
    assert consumer._new_offset(tp) == 21
