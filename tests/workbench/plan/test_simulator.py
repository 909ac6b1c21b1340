"""The batch-queue simulator: queueing theory, hand-computed timelines, batching semantics, energy,
bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from workbench.errors import ConfigError
from workbench.plan.batch_curve import BatchLatencyCurve
from workbench.plan.simulator import (
    PowerModel,
    ServerConfig,
    figures_from_requests,
    predict,
    simulate,
)
from workbench.plan.traces import poisson_trace, trace_from_times

# Service time of one batch by rows: 1 -> 2 ms, 2 -> 3 ms, 3 -> 3.5 ms, 4 -> 4 ms.
CURVE = BatchLatencyCurve.from_points({1: 2.0, 2: 3.0, 3: 3.5, 4: 4.0})


def server(**settings) -> ServerConfig:
    """The settings these hand-worked timelines assume unless they say otherwise: no batching,
    no wait, an unbounded queue (the defaults are the bundle manifest's, with batching on)."""
    return ServerConfig(
        **{"max_batch_rows": 1, "max_delay_ms": 0.0, "max_queue_rows": None, **settings}
    )


def ms(values) -> list[float]:
    return [round(float(v) * 1e3, 9) for v in values]


def run(arrivals_ms, config, rows=None, curve=CURVE, power=None):
    trace = trace_from_times(np.array(arrivals_ms) / 1e3, rows=rows)
    return simulate(trace, curve, config, power)


def test_md1_mean_wait_matches_the_closed_form():
    """M/D/1 (Poisson arrivals, deterministic service, one server, no batching):
    Wq = rho / (2 mu (1 - rho)). rho = 0.7 with a 1 ms service: Wq = 1.1667 ms.
    About 210,000 arrivals; the seeded estimate lands within 2 % (5 % allowed)."""
    mu, rho = 1000.0, 0.7
    curve = BatchLatencyCurve.from_points({1: 1.0})
    result = simulate(poisson_trace(rho * mu, 300.0, seed=0), curve, server())
    expected_ms = rho / (2 * mu * (1 - rho)) * 1e3
    assert result.figures.queue_ms_mean == pytest.approx(expected_ms, rel=0.05)
    assert result.figures.utilisation == pytest.approx(rho, rel=0.02)
    assert result.figures.latency_ms_mean == pytest.approx(expected_ms + 1.0, rel=0.05)


def test_no_batching_one_instance_timeline():
    """max batch 1, one instance, arrivals 0, 1, 1.5, 10 ms, 2 ms each:
    r0 0-2, r1 2-4, r2 4-6, r3 10-12; latencies 2, 3, 4.5, 2 ms."""
    r = run([0, 1, 1.5, 10], server(max_batch_rows=1))
    assert ms(r.start_s) == [0, 2, 4, 10]
    assert ms(r.finish_s) == [2, 4, 6, 12]
    f = r.figures
    assert f.latency_ms_mean == pytest.approx((2 + 3 + 4.5 + 2) / 4)
    assert f.latency_ms_max == pytest.approx(4.5)
    assert f.window_s == pytest.approx(0.012)  # to the last completion
    assert f.utilisation == pytest.approx(8 / 12)
    assert f.throughput_requests_per_s == pytest.approx(4 / 0.012)
    assert f.mean_batch_size == 1
    assert f.queue_ms_mean == pytest.approx((0 + 1 + 2.5 + 0) / 4)
    assert f.method == "estimated"


def test_zero_delay_drains_what_is_queued():
    """max batch 4, delay 0: r0 alone at 0 (0-2); r1 and r2 queue behind it and leave together
    at 2 as a batch of 2 (3 ms: 2-5); r3 alone at 10 (10-12)."""
    r = run([0, 1, 1.5, 10], server(max_batch_rows=4, max_delay_ms=0))
    assert ms(r.start_s) == [0, 2, 2, 10]
    assert ms(r.finish_s) == [2, 5, 5, 12]
    assert r.batch_rows.tolist() == [1, 2, 1]
    assert r.figures.mean_batch_size == pytest.approx(4 / 3)


def test_delay_waits_until_the_batch_fills_or_the_oldest_times_out():
    """max batch 3, delay 2 ms, arrivals 0, 1, 1.5, 10, 10.5, 11, 11.2 ms:
    r0 waits (deadline 2); r2 at 1.5 fills the batch {r0, r1, r2}: 3 rows, 3.5 ms, 1.5-5.0.
    r3 waits (deadline 12); r5 at 11 fills {r3, r4, r5}: 11-14.5.
    r6 at 11.2 finds the instance busy; its deadline (13.2) passes while it waits, so it leaves
    alone the moment the instance frees: 14.5-16.5."""
    r = run([0, 1, 1.5, 10, 10.5, 11, 11.2], server(max_batch_rows=3, max_delay_ms=2))
    assert ms(r.start_s) == [1.5, 1.5, 1.5, 11, 11, 11, 14.5]
    assert ms(r.finish_s) == [5, 5, 5, 14.5, 14.5, 14.5, 16.5]
    latency = ms(r.finish_s - r.arrival_s)
    assert latency == [5, 4, 3.5, 4.5, 4, 3.5, 5.3]
    assert r.batch_rows.tolist() == [3, 3, 1]


def test_deadline_dispatches_a_partial_batch_and_an_arrival_at_the_deadline_joins():
    """max batch 4, delay 2 ms: r0 (0) and r1 (0.5) leave at r0's deadline, 2 ms: 2-5.
    r2 (7) waits until 9; r3 arrives exactly at 9 and joins: batch {r2, r3} 9-12."""
    r = run([0, 0.5, 7, 9], server(max_batch_rows=4, max_delay_ms=2))
    assert ms(r.start_s) == [2, 2, 9, 9]
    assert ms(r.finish_s) == [5, 5, 12, 12]
    assert r.batch_requests.tolist() == [2, 2]


def test_two_instances_share_one_queue():
    """2 instances, no batching, 2 ms each; arrivals 0, 0.5, 1, 1.2 ms:
    r0 on instance 0 (0-2), r1 on 1 (0.5-2.5), r2 waits for instance 0 (2-4), r3 for 1 (2.5-4.5)."""
    r = run([0, 0.5, 1, 1.2], server(max_batch_rows=1, instances=2))
    assert ms(r.start_s) == [0, 0.5, 2, 2.5]
    assert ms(r.finish_s) == [2, 2.5, 4, 4.5]
    assert r.batch_instance.tolist() == [0, 1, 0, 1]
    assert r.figures.utilisation == pytest.approx(8 / (2 * 4.5))


def test_max_queue_rows_drops_and_completions_come_before_arrivals():
    """max_queue_rows 1, no batching: r0 0-2; r1 (0.5) waits; r2 (1.0) finds one waiting: dropped.
    At 2.0 the completion comes first, r1 starts (2-4), then r3 (2.0) joins an empty queue;
    r4 (2.1) finds r3 waiting: dropped. r3 runs 4-6."""
    r = run([0, 0.5, 1.0, 2.0, 2.1], server(max_batch_rows=1, max_queue_rows=1))
    assert r.dropped.tolist() == [False, False, True, False, True]
    assert ms(r.finish_s[~r.dropped]) == [2, 4, 6]
    f = r.figures
    assert (f.requests, f.served, f.dropped) == (5, 3, 2)
    assert f.drop_rate == pytest.approx(0.4)
    assert math.isnan(r.finish_s[2]) and r.batch[2] == -1


def test_the_queue_bound_counts_rows_as_the_runtime_does():
    """max_queue_rows 4, batches of up to 4 rows, no wait: r0 (2 rows) runs 0-3; r1 (3 rows, 0.1)
    waits: 3 of 4 places; r2 (2 rows, 0.2) would make 5 rows waiting: dropped, though only one
    request waits; r3 (1 row, 0.3) fits: 4 rows waiting, and r1 + r3 run together from 3."""
    r = run([0, 0.1, 0.2, 0.3], server(max_batch_rows=4, max_queue_rows=4), rows=[2, 3, 2, 1])
    assert r.dropped.tolist() == [False, False, True, False]
    assert r.batch_rows.tolist() == [2, 4]


def test_defaults_are_the_bundle_manifests():
    from serving.manifest import Batching

    runtime, planned = Batching(), ServerConfig()
    assert planned.max_batch_rows == runtime.max_batch_rows
    assert planned.max_delay_ms == runtime.max_delay_ms
    assert planned.max_queue_rows == runtime.max_queue_rows


def test_rows_fill_batches_and_a_request_is_never_split():
    """max batch 4 rows, delay 0; requests of 2, 3 and 2 rows at 0, 0.1, 0.2 ms:
    r0 alone (2 rows, 3 ms: 0-3); at 3 r1 (3 rows) leaves alone because r2 would make 5 rows
    (3.5 ms: 3-6.5); r2 then runs 6.5-9.5."""
    r = run([0, 0.1, 0.2], server(max_batch_rows=4), rows=[2, 3, 2])
    assert ms(r.finish_s) == [3, 6.5, 9.5]
    assert r.batch_rows.tolist() == [2, 3, 2]
    assert r.figures.throughput_items_per_s == pytest.approx(7 / 0.0095)


def test_overhead_adds_to_latency_but_not_to_instance_time():
    r = run([0, 1, 1.5, 10], server(max_batch_rows=1, request_overhead_ms=0.5))
    assert ms(r.start_s) == [0, 2, 4, 10]
    assert ms(r.finish_s) == [2.5, 4.5, 6.5, 12.5]
    assert r.figures.utilisation == pytest.approx(8 / 12.5)


def test_energy_counts_idle_power_in_the_gaps():
    """Timeline of the first test: 8 ms busy in a 12 ms window.
    busy_w 30, idle_w 10: 30 x 0.008 + 10 x 0.004 = 0.28 J, 0.07 J per request, 23.33 W."""
    power = PowerModel(idle_w=10.0, busy_w=30.0, method="typed in")
    f = run([0, 1, 1.5, 10], server(), power=power).figures
    assert f.energy_j_per_request == pytest.approx(0.07)
    assert f.power_w_avg == pytest.approx(0.28 / 0.012)
    assert f.energy_method == "typed in"
    # Energy per batch from the curve: 4 batches x 0.05 J + 10 W x 4 ms idle = 0.24 J.
    curve = BatchLatencyCurve.from_points(
        {1: 2.0, 2: 3.0}, energy_j_per_batch={1: 0.05, 2: 0.08}, method="measured"
    )
    f2 = run([0, 1, 1.5, 10], server(), curve=curve, power=PowerModel(idle_w=10.0)).figures
    assert f2.energy_j_per_request == pytest.approx(0.06)
    assert f2.energy_method == "estimated"  # the weakest of the curve's and the idle figure's
    assert run([0, 1], server()).figures.energy_j_per_request is None


def test_waiting_only_costs_latency_at_low_load_and_zero_delay_batches_under_load():
    """The serving baselines' finding: for a small model, a wait cannot pay off at low load,
    while 'take what is queued' batches by itself once requests pile up."""
    curve = BatchLatencyCurve.from_points({1: 0.5, 8: 0.8, 32: 1.6})
    light = poisson_trace(100.0, 20.0, seed=1)
    no_wait = predict(light, curve, server(max_batch_rows=32, max_delay_ms=0))
    wait = predict(light, curve, server(max_batch_rows=32, max_delay_ms=1.0))
    assert no_wait.latency_ms_p50 == pytest.approx(0.5, abs=0.01)
    assert wait.latency_ms_p50 > no_wait.latency_ms_p50 + 0.9  # mostly the full 1 ms wait
    heavy = poisson_trace(5000.0, 4.0, seed=1)  # 2.5x what unbatched service can carry
    loaded = predict(heavy, curve, server(max_batch_rows=32, max_delay_ms=0))
    assert loaded.mean_batch_size > 2
    assert loaded.throughput_requests_per_s == pytest.approx(5000, rel=0.05)
    assert loaded.latency_ms_p99 < 10


def test_a_replay_fills_the_same_figures_from_its_own_timestamps():
    r = run([0, 0.5, 1.0, 2.0, 2.1], server(max_batch_rows=1, max_queue_rows=1))
    replay = figures_from_requests(r.arrival_s, r.finish_s, window_s=r.figures.window_s)
    assert replay.method == "measured"
    for name in ("served", "dropped", "latency_ms_p50", "latency_ms_p99", "throughput_items_per_s"):
        assert getattr(replay, name) == pytest.approx(getattr(r.figures, name))
    assert replay.utilisation is None and replay.energy_j_per_request is None
    frame = r.to_frame()
    assert {"max_batch_rows", "latency_ms_p99", "utilisation", "method"} <= set(frame.columns)
    assert len(r.requests_frame()) == 5 and len(r.batches_frame()) == 3


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"max_batch_rows": 0}, "max_batch_rows"),
        ({"max_batch_rows": 2.5}, "max_batch_rows"),
        ({"max_delay_ms": -1.0}, "max_delay_ms"),
        ({"max_delay_ms": math.nan}, "max_delay_ms"),
        ({"max_queue_rows": 0}, "max_queue_rows"),
        ({"instances": 0}, "instances"),
        ({"request_overhead_ms": -0.1}, "request_overhead_ms"),
    ],
)
def test_bad_server_settings_name_the_field(settings, field):
    with pytest.raises(ConfigError, match=field):
        ServerConfig(**settings)


def test_bad_power_and_curve_ranges_are_clear_errors():
    with pytest.raises(ConfigError, match="busy_w"):
        PowerModel(idle_w=10, busy_w=5)
    with pytest.raises(ConfigError, match="idle_w"):
        PowerModel(idle_w=-1)
    with pytest.raises(ConfigError, match="max_batch_rows"):
        run([0, 1], ServerConfig(max_batch_rows=8))  # the curve stops at 4
    with pytest.raises(ConfigError, match="request 1 carries 5 rows"):
        run([0, 1], ServerConfig(max_batch_rows=4), rows=[1, 5])
    with pytest.raises(ConfigError, match="energy per batch"):
        run([0, 1], server(), power=PowerModel(idle_w=1.0))


def test_docstring_examples_run():
    import doctest

    import workbench.plan.batch_curve
    import workbench.plan.caching
    import workbench.plan.cascade
    import workbench.plan.simulator
    import workbench.plan.sizing
    import workbench.plan.traces

    modules = (
        workbench.plan.batch_curve,
        workbench.plan.caching,
        workbench.plan.cascade,
        workbench.plan.simulator,
        workbench.plan.sizing,
        workbench.plan.traces,
    )
    for module in modules:
        result = doctest.testmod(module)
        assert result.attempted > 0, module.__name__
        assert result.failed == 0, module.__name__
