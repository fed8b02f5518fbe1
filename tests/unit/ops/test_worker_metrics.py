"""The worker's registry: what the agents report shows as the series the dashboard reads."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from infra.worker_metrics import LagSample, WorkerMetrics, dead_letter_kind


def samples(metrics: WorkerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_parking_reasons_fold_into_three_kinds() -> None:
    assert dead_letter_kind("undecodable: ValueError('x')") == "undecodable"
    assert dead_letter_kind("upcast: ValueError('no upcaster')") == "upcast"
    assert dead_letter_kind("messages: KeyError('body')") == "poison"
    assert dead_letter_kind("KeyError('undecodable: no')") == "poison"


def test_decided_and_parked_records_are_counted() -> None:
    m = WorkerMetrics()
    m.observe_decide(size=5, ok=4, refused=1, seconds=0.02)
    m.dead_lettered("parley.commands", "undecodable: ValueError()")
    m.dead_lettered("parley.commands", "undecodable: ValueError()")
    s = samples(m)
    assert s[("parley_worker_commands_decided_total", (("outcome", "ok"),))] == 4
    assert s[("parley_worker_commands_decided_total", (("outcome", "refused"),))] == 1
    assert s[("parley_worker_decide_batch_size_sum", ())] == 5
    key = ("parley_worker_dead_letters_total", (("kind", "undecodable"), ("source_topic", "parley.commands")))
    assert s[key] == 2


def test_a_lag_measurement_replaces_the_previous_one() -> None:
    m = WorkerMetrics()
    m.set_lag([LagSample("users", "parley.events", 0, 3, 10), LagSample("users", "parley.events", 1, 5, 5)], at=100.0)
    m.set_lag([LagSample("users", "parley.events", 1, 5, 7)], at=110.0)  # partition 0 moved to another worker
    s = samples(m)
    lag = {k: v for k, v in s.items() if k[0] == "parley_worker_projection_lag_records"}
    assert lag == {
        (
            "parley_worker_projection_lag_records",
            (("partition", "1"), ("projection", "users"), ("topic", "parley.events")),
        ): 2
    }
    assert s[("parley_worker_projection_lag_sampled_timestamp_seconds", ())] == 110.0


def test_a_position_past_the_end_is_no_lag() -> None:
    assert LagSample("audit", "parley.refusals", 0, 9, 4).lag == 0


def test_rebalances_are_counted_and_the_flag_drops() -> None:
    m = WorkerMetrics()
    m.rebalance_started()
    assert samples(m)[("parley_worker_rebalancing", ())] == 1
    m.rebalance_ended(1.5)
    s = samples(m)
    assert s[("parley_worker_rebalances_total", ())] == 1 and s[("parley_worker_rebalancing", ())] == 0
    assert s[("parley_worker_rebalance_seconds_sum", ())] == 1.5
