"""Static batch sweep (real profiler on a tiny model), the knee, and the batch-latency curve."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from workbench.errors import ConfigError
from workbench.measure.store import RunStore
from workbench.models import load_model
from workbench.plan.batch_curve import (
    BatchLatencyCurve,
    batch_sweep,
    knee_batch_size,
    sweep_from_rows,
    sweep_from_store,
)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4))
    return load_model(module, example_input=torch.randn(1, 32), name="tiny-mlp")


def test_curve_interpolates_and_refuses_to_extrapolate_upwards():
    curve = BatchLatencyCurve.from_points({8: 4.0, 1: 2.0, 4: 3.0})  # any order
    assert curve.batch_sizes == (1, 4, 8)
    assert curve.service_ms(2) == pytest.approx(2 + 1 / 3)
    assert curve.service_ms(6) == pytest.approx(3.5)
    assert curve.service_s(8) == pytest.approx(0.004)
    assert curve.throughput_items_per_s(8) == pytest.approx(2000)
    with pytest.raises(ConfigError, match="above the largest measured size 8"):
        curve.service_ms(9)
    below = BatchLatencyCurve.from_points({2: 3.0, 4: 5.0})
    assert below.service_ms(1) == 3.0  # the smallest measured size's time: conservative
    scaled = curve.scaled(2.0)
    assert scaled.service_ms(4) == 6.0 and scaled.method == "estimated"
    assert list(curve.to_frame().columns) == [
        "batch_size",
        "service_ms",
        "throughput_items_per_s",
        "method",
    ]


@pytest.mark.parametrize(
    ("points", "pattern"),
    [
        ({}, "one service time per batch size"),
        ({0: 1.0}, "batch size 0"),
        ({1: 0.0}, "service time 0.0 ms for batch size 1"),
        ({1: float("inf")}, "service time inf"),
    ],
)
def test_bad_curves_are_clear_errors(points, pattern):
    with pytest.raises(ConfigError, match=pattern):
        BatchLatencyCurve.from_points(points)


def test_knee_is_the_smallest_batch_within_ninety_percent_of_the_best():
    assert knee_batch_size([1, 2, 4, 8, 16], [100, 190, 330, 360, 365]) == 4  # 330 >= 328.5
    assert knee_batch_size([1, 2, 4, 8, 16], [100, 190, 320, 360, 365]) == 8
    assert knee_batch_size([1, 8, 32], [50.2, 44.1, 48.3]) == 1  # compute-bound: no gain
    with pytest.raises(ConfigError, match="knee fraction"):
        knee_batch_size([1], [1.0], fraction=0)


def test_rows_of_several_configurations_must_be_narrowed():
    rows = [
        {"batch_size": b, "latency_ms_mean": b, "throughput_items_per_s": 1e3, "backend": k}
        for k in ("onnxruntime", "torch")
        for b in (1, 2)
    ]
    with pytest.raises(ConfigError, match="mix several configurations"):
        sweep_from_rows("m", rows)
    sweep = sweep_from_rows("m", rows, backend="torch")
    assert sweep.curve.batch_sizes == (1, 2) and sweep.curve.method == "measured"


def test_batch_sweep_measures_marks_the_knee_and_resumes_from_the_store(tiny, db_path):
    sizes = [1, 4, 16]
    sweep = batch_sweep(
        tiny, batch_sizes=sizes, threads=1, store=db_path, progress=False, max_seconds=0.3
    )
    frame = sweep.to_frame()
    assert frame["batch_size"].tolist() == sizes
    assert frame["is_knee"].sum() == 1
    knee = int(frame.loc[frame["is_knee"], "batch_size"].iloc[0])
    assert knee == sweep.knee_batch_size
    thr = frame.set_index("batch_size")["throughput_items_per_s"]
    assert thr[knee] >= 0.9 * thr.max()
    assert all(thr[b] < 0.9 * thr.max() for b in sizes if b < knee)
    assert frame["share_of_max_throughput"].max() == pytest.approx(1.0)
    # the curve reproduces the measured throughput at each size
    for b in sizes:
        assert sweep.curve.throughput_items_per_s(b) == pytest.approx(thr[b], rel=1e-9)
    # the same sweep read back from the store, and resumed without measuring again
    again = sweep_from_store(db_path, sweep.sweep_id)
    assert again.knee_batch_size == sweep.knee_batch_size
    assert again.curve.service_times_ms == pytest.approx(sweep.curve.service_times_ms)
    resumed = batch_sweep(
        tiny, batch_sizes=sizes, threads=1, store=db_path, sweep_id=sweep.sweep_id, progress=False
    )
    assert resumed.curve.service_times_ms == pytest.approx(sweep.curve.service_times_ms)
    with RunStore(db_path) as store:
        assert len(store.runs(sweep_id=sweep.sweep_id)) == len(sizes)


def test_unknown_sweep_id_is_a_clear_error(db_path):
    with pytest.raises(ConfigError, match="no profile runs with sweep id 'nope'"):
        sweep_from_store(db_path, "nope")


def test_energy_sweep_gives_energy_per_batch_for_the_simulator(tiny):
    from workbench.plan.simulator import PowerModel, ServerConfig, simulate
    from workbench.plan.traces import poisson_trace

    sweep = batch_sweep(
        tiny, batch_sizes=[1, 8], threads=1, store=False, progress=False, max_seconds=0.3,
        energy=True, energy_min_seconds=0.2, idle_seconds=0.1,
    )  # fmt: skip
    curve, frame = sweep.curve, sweep.to_frame()
    assert curve.energy_method in ("measured", "estimated")
    for b, e in zip(curve.batch_sizes, curve.energy_j_per_batch, strict=True):
        per_item = frame.set_index("batch_size").loc[b, "energy_j_per_item"]
        assert e == pytest.approx(per_item * b)
    assert sweep.idle_power_w is not None and sweep.idle_power_w >= 0
    power = PowerModel(idle_w=sweep.idle_power_w, method=curve.energy_method)
    trace = poisson_trace(1000.0, 2.0, seed=0)
    config = ServerConfig(max_batch_rows=8, max_delay_ms=0.0, max_queue_rows=None)
    result = simulate(trace, curve, config, power)
    f = result.figures
    idle_s = f.window_s - result.batch_service_s.sum()
    expected = sum(curve.energy_j(b) for b in result.batch_rows) + sweep.idle_power_w * idle_s
    assert f.energy_j_per_request * f.served == pytest.approx(expected)
    assert f.energy_method == curve.energy_method
