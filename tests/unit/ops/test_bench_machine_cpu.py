"""bench.load's machine CPU figure: busy core-seconds read from /proc/stat."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.load.driver import machine_busy_s


def test_busy_time_counts_every_state_but_idle_and_iowait(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal (guest, guest_nice: already in user)
    stat.write_text("cpu  100 20 30 5000 70 4 6 0 9 9\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    assert machine_busy_s(stat) == (100 + 20 + 30 + 4 + 6 + 0) / os.sysconf("SC_CLK_TCK")


def test_no_figure_where_the_kernel_gives_none(tmp_path: Path) -> None:
    assert machine_busy_s(tmp_path / "absent") is None
    garbled = tmp_path / "stat"
    garbled.write_text("cpu  a b c\n")
    assert machine_busy_s(garbled) is None
    short = tmp_path / "short"
    short.write_text("cpu  1 2 3\n")
    assert machine_busy_s(short) is None


def test_this_machine_gives_a_growing_figure() -> None:
    first = machine_busy_s()
    if first is None:
        pytest.skip("no /proc/stat here: the bench prints no CPU figure")
    sum(i * i for i in range(200_000))
    second = machine_busy_s()
    assert second is not None and second >= first > 0
