"""bench.load's machine CPU figures: busy core-seconds read from /proc/stat, per acked message."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bench.load.__main__ import print_table, ratios
from bench.load.driver import CpuSnapshot, machine_busy_s, process_cpu_s, window_cpu


def test_busy_time_counts_what_the_machine_ran_not_idle_iowait_or_steal(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal (guest, guest_nice: already in user)
    stat.write_text("cpu  100 20 30 5000 70 4 6 50 9 9\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    assert machine_busy_s(stat) == (100 + 20 + 30 + 4 + 6) / os.sysconf("SC_CLK_TCK")


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


def _phase(acked_per_s: float, cpu_ms: float | None) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "sent": 10,
        "acked": 10,
        "acked_per_s": acked_per_s,
        "pushed_per_s": acked_per_s,
        "ack_ms": {"p50": 1.0, "p99": 2.0},
        "push_ms": {"p50": 1.0, "p99": 2.0},
        "errors": {},
        "not_pushed": 0,
    }
    if cpu_ms is not None:
        figures.update(cpu_ms_per_ack=cpu_ms, busy_cores=1.9, cpu_ms_per_ack_by_process={"worker": cpu_ms / 2})
    return figures


def test_the_table_prints_the_cpu_per_message_of_each_phase_and_their_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    results: dict[str, Any] = {
        "config": {"senders": 1, "window": 1, "seconds": 1},
        "notes": [],
        "echo": _phase(2000.0, 0.5),
        "closed": _phase(200.0, 5.0),
    }
    results["ratios"] = ratios(results)
    assert results["ratios"]["echo_cpu_over_e2e_cpu"] == 0.1
    print_table(results)
    out = capsys.readouterr().out
    assert "machine CPU per acked message: echo 0.50 ms (1.90 cores busy), e2e closed loop 5.00 ms" in out
    assert "ratio echo CPU/e2e CPU = 0.1" in out
    assert "  e2e closed loop, ms per acked message: worker 2.50" in out


def test_a_run_without_cpu_figures_prints_none(capsys: pytest.CaptureFixture[str]) -> None:
    results: dict[str, Any] = {"config": {"senders": 1, "window": 1, "seconds": 1}, "notes": []}
    results["closed"] = _phase(200.0, None)
    results["ratios"] = ratios(results)
    print_table(results)
    out = capsys.readouterr().out
    assert "(a) e2e closed loop" in out and "machine CPU" not in out and "CPU/e2e" not in out


def test_a_process_cpu_time_is_its_user_and_system_time(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    # pid (comm) state ppid ... : utime is the 14th field, stime the 15th; a comm may hold ") ".
    fields = ["S"] + ["0"] * 10 + ["300", "200"] + ["7"] * 5
    (tmp_path / "42" / "stat").write_text(f"42 (odd) name) {' '.join(fields)}\n")
    assert process_cpu_s(42, tmp_path) == 500 / os.sysconf("SC_CLK_TCK")
    assert process_cpu_s(43, tmp_path) is None, "a process that is gone"
    assert process_cpu_s(os.getpid()) is not None


def test_cpu_figures_per_acked_message_for_the_machine_and_each_process() -> None:
    before = CpuSnapshot(machine=100.0, processes={"worker": 10.0, "gateway": 5.0, "gone": 1.0})
    after = CpuSnapshot(machine=104.0, processes={"worker": 12.0, "gateway": 6.0})
    figures = before.figures(after, acked=500, seconds=2.0)
    assert figures == {
        "busy_cores": 2.0,
        "cpu_ms_per_ack": 8.0,
        "cpu_ms_per_ack_by_process": {"worker": 4.0, "gateway": 2.0},
    }
    assert list(figures["cpu_ms_per_ack_by_process"]) == ["worker", "gateway"], "dearest first"
    assert before.figures(after, acked=0, seconds=2.0) == {}
    unknown = CpuSnapshot(machine=None, processes={})
    assert unknown.figures(unknown, acked=10, seconds=1.0) == {}


def test_a_windows_cpu_is_bracketed_by_the_samples_around_it() -> None:
    def snap(machine: float, worker: float) -> CpuSnapshot:
        return CpuSnapshot(machine=machine, processes={"worker": worker})

    samples = [(0.0, snap(0.0, 0.0)), (1.0, snap(2.0, 1.0)), (2.0, snap(4.0, 2.0)), (3.0, snap(7.0, 4.0))]
    arrivals = [0.2 * i for i in range(1, 15)]  # 14 acks between 0.2 and 2.8 s
    # The last 10% of a run from 2.5 to 2.8 s: bracketed by the samples at 2 s and 3 s.
    assert window_cpu(samples, arrivals, 2.5, 2.8) == {
        "busy_cores": 3.0,
        "cpu_ms_per_ack": 3000 / 4,  # 3 core-seconds over the 4 acks at 2.2, 2.4, 2.6, 2.8 s
        "cpu_ms_per_ack_by_process": {"worker": 2000 / 4},
    }
    # A window past the last sample falls back to it; one before the first, to the first.
    assert window_cpu(samples, arrivals, 0.0, 9.0)["cpu_ms_per_ack"] == round(7000 / 14, 2)


def test_the_table_prints_the_cpu_of_a_long_runs_first_and_last_tenth(capsys: pytest.CaptureFixture[str]) -> None:
    long = _phase(250.0, 6.0)
    long.update(
        first_10pct={"per_s": 280.0, "p50_ms": 400.0},
        last_10pct={"per_s": 250.0, "p50_ms": 450.0},
        push_first_10pct={"per_s": 280.0, "p50_ms": 410.0},
        push_last_10pct={"per_s": 250.0, "p50_ms": 460.0},
        decay=0.89,
        cpu_first_10pct={"cpu_ms_per_ack": 5.5, "busy_cores": 1.8, "cpu_ms_per_ack_by_process": {"worker": 2.0}},
        cpu_last_10pct={"cpu_ms_per_ack": 6.5, "busy_cores": 1.8},
    )
    results: dict[str, Any] = {"config": {"senders": 1, "window": 1, "messages": 100}, "notes": [], "long": long}
    results["ratios"] = ratios(results)
    print_table(results)
    out = capsys.readouterr().out
    assert "  long run, first 10%: 5.50 ms per acked message: worker 2.00" in out
    assert "  long run, last 10%: 6.50 ms per acked message\n" in out
