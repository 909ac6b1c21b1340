"""The deployment gate (compare_runs), its HTML report, and the extra-work model for rehearsals."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from workbench.errors import ConfigError, RegressionError, StoreError
from workbench.measure.store import RunStore
from workbench.report.gate import (
    AT_SCALE_INSTANCES,
    Pricing,
    Thresholds,
    compare_runs,
    with_extra_work,
)
from workbench.report.html import write_html_report


def add_run(store: RunStore, throughput: float, p99: float, *, batch_size: int = 1, **extra):
    metrics = {
        "throughput_items_per_s": throughput,
        "latency_ms_p50": p99 / 4,
        "latency_ms_p90": p99 / 2,
        "latency_ms_p95": p99 / 1.5,
        "latency_ms_p99": p99,
        "energy_j_per_item": 2e-3,
        "energy_method": "estimated",
        **extra,
    }
    return store.add(
        "profile",
        model="m",
        fingerprint="f" * 64,
        config={"backend": "onnxruntime", "device": "cpu", "batch_size": batch_size, "threads": 1},
        metrics=metrics,
        details={"latencies_ms": list(np.linspace(p99 / 5, p99 * 1.2, 300))},
    )


@pytest.fixture
def store():
    with RunStore(":memory:") as db:
        yield db


def test_equal_runs_pass(store: RunStore) -> None:
    a, b = add_run(store, 1000.0, 2.0), add_run(store, 1000.0, 2.0)
    gate = compare_runs(store, a, b)
    assert gate.passed and not gate.failures
    assert [c.change_pct for c in gate.gated] == [pytest.approx(0.0), pytest.approx(0.0)]
    assert gate.summary().startswith("gate passed: run 2 against baseline run 1")
    gate.raise_for_regression()  # no error


def test_half_the_throughput_doubles_cost_at_scale(store: RunStore) -> None:
    a, b = add_run(store, 1000.0, 2.0), add_run(store, 500.0, 2.1)
    gate = compare_runs(store, a, b, Thresholds(max_cost_increase_pct=50, max_p99_increase_pct=20))
    cost, p99 = gate.gated
    # at scale whole-instance rounding is under 1 %: cost follows 1 / throughput
    assert cost.change_pct == pytest.approx(100.0, abs=1.0)
    assert p99.change_pct == pytest.approx(5.0) and p99.passed
    assert gate.failures == [cost] and not gate.passed
    assert gate.requests_per_day == pytest.approx(AT_SCALE_INSTANCES * 86400 * 1000 * 0.5)
    with pytest.raises(RegressionError) as err:
        gate.raise_for_regression()
    assert err.value.exit_code == 1
    text = str(err.value)
    assert "\n" not in text and text.startswith("regression:") and "cost per 1M" in text


def test_p99_threshold_is_applied(store: RunStore) -> None:
    a, b = add_run(store, 1000.0, 2.0), add_run(store, 1000.0, 2.5)
    assert compare_runs(store, a, b, Thresholds(max_p99_increase_pct=30)).passed
    gate = compare_runs(store, a, b, Thresholds(max_p99_increase_pct=20))
    assert [c.metric for c in gate.failures] == ["latency_ms_p99"]


def test_improvement_passes_and_throughput_is_informational(store: RunStore) -> None:
    a, b = add_run(store, 1000.0, 2.0), add_run(store, 4000.0, 1.0)
    gate = compare_runs(store, a, b, Thresholds(0, 0))
    assert gate.passed
    throughput = next(c for c in gate.checks if c.metric == "throughput_items_per_s")
    assert throughput.limit_pct is None and throughput.change_pct == pytest.approx(300.0)


def test_low_traffic_hides_a_slowdown_in_whole_instances(store: RunStore) -> None:
    """Given traffic one instance serves either way, cost per 1M does not move: the bill is
    whole instances. The module docstring says so; the p99 check still applies."""
    a, b = add_run(store, 1000.0, 2.0), add_run(store, 500.0, 2.0)
    gate = compare_runs(store, a, b, pricing=Pricing(requests_per_day=1e5))
    assert gate.gated[0].change_pct == pytest.approx(0.0)


def test_mismatched_configs_are_noted(store: RunStore) -> None:
    a, b = add_run(store, 1000.0, 2.0), add_run(store, 1000.0, 2.0, batch_size=8)
    notes = compare_runs(store, a, b).notes
    assert any(n.startswith("batch_size differs") for n in notes)


def test_price_comes_from_the_hardware_table_or_is_typed(store: RunStore) -> None:
    a = add_run(store, 1000.0, 2.0)
    table = compare_runs(store, a, a)
    typed = compare_runs(store, a, a, pricing=Pricing(instance_usd_per_h=0.17))
    assert "aws-c6i.large" in table.price_source and typed.price_source == "typed in"
    ratio = typed.gated[0].baseline / table.gated[0].baseline
    assert ratio == pytest.approx(0.17 / 0.085)


def test_bad_inputs(store: RunStore) -> None:
    a = add_run(store, 1000.0, 2.0)
    with pytest.raises(ConfigError, match="max_cost_increase_pct"):
        Thresholds(max_cost_increase_pct=-1)
    with pytest.raises(StoreError):
        compare_runs(store, a, 99)
    metrics = {"throughput_items_per_s": 1.0, "energy_j_per_item": 1.0}
    no_p99 = store.add("profile", model="m", fingerprint="f", config={}, metrics=metrics)
    with pytest.raises(ConfigError, match="latency_ms_p99"):
        compare_runs(store, a, no_p99)


def test_html_report_is_offline_and_says_the_verdict(store: RunStore, tmp_path) -> None:
    a, b = add_run(store, 1000.0, 2.0), add_run(store, 300.0, 9.0)
    gate = compare_runs(store, a, b)
    path = write_html_report(gate, tmp_path / "out" / "report.html")
    text = path.read_text()
    assert 'class="verdict fail"' in text and "regression:" in text
    assert text.count("<svg") == 3  # latency percentiles, distribution, cost
    assert "<script" not in text and "cdn" not in text  # nothing to fetch
    assert "estimated" in text and "measured" in text
    verdict = json.loads(path.with_suffix(".json").read_text())
    assert verdict["passed"] is False and verdict["candidate_run_id"] == b
    with pytest.raises(ConfigError, match=r"\.html"):
        write_html_report(gate, tmp_path / "report.pdf")


def test_extra_work_keeps_outputs_and_really_slows_the_model(tmp_path) -> None:
    from workbench.measure.profiling import profile
    from workbench.models import load_model

    base = load_model("digits-mlp")
    slow = with_extra_work(base, matmuls=8, width=512, out_dir=tmp_path)
    assert slow.name == "digits-mlp-extra8x512" and slow.fingerprint != base.fingerprint
    graph = onnx.load(str(slow.onnx())).graph
    assert sum(n.op_type == "MatMul" for n in graph.node) >= 8
    x = base.example_inputs(5)
    ref = ort.InferenceSession(str(base.onnx())).run(None, x)[0]
    got = ort.InferenceSession(str(slow.onnx())).run(None, x)[0]
    np.testing.assert_array_equal(got, ref)
    kw = dict(
        batch_size=1, threads=1, iterations=400, max_seconds=0.5, operators=False, store=False
    )
    fast_p50 = profile(base, **kw).latency_ms_p50
    slow_p50 = profile(slow, **kw).latency_ms_p50
    assert slow_p50 > 3 * fast_p50  # 8 x 512 x 512 multiply-adds against a tiny MLP
    with pytest.raises(ConfigError, match="matmuls"):
        with_extra_work(base, matmuls=0)


def test_docstring_examples_run() -> None:
    import doctest

    import workbench.report.gate
    import workbench.report.html

    result = doctest.testmod(workbench.report.gate)
    assert result.attempted >= 3 and result.failed == 0
    result = doctest.testmod(workbench.report.html)
    assert result.attempted > 0 and result.failed == 0
