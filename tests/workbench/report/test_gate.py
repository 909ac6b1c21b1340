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
from workbench.report.host import host_fingerprint
from workbench.report.html import write_html_report

#: The environment a profile stores (workbench.measure.environment), as on a 2-core laptop.
ENV = {
    "cpu_model": "Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz",
    "logical_cores": 2,
    "physical_cores": 1,
    "memory_gb": 7.7,
    "os": "Linux-6.1.0-13-amd64-x86_64-with-glibc2.36",
    "python": "3.12.1",
    "gpu": None,
    "numpy": "2.1.0",
}


def add_run(
    store: RunStore,
    throughput: float,
    p99: float,
    *,
    batch_size: int = 1,
    env: dict | None = None,
    **extra,
):
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
        environment=ENV if env is None else env,
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


# -- the host check ---------------------------------------------------------------------------


def test_same_host_passes_and_both_fingerprints_are_recorded(store: RunStore, tmp_path) -> None:
    # Another host name, Python and kernel: the same machine for timing purposes.
    later = {**ENV, "python": "3.12.4", "os": "Linux-6.1.0-15-amd64-x86_64-with-glibc2.36"}
    a, b = add_run(store, 1000.0, 2.0), add_run(store, 1000.0, 2.0, env=later)
    gate = compare_runs(store, a, b)
    assert gate.passed and gate.host.same_host and gate.host.warning is None
    fingerprint = host_fingerprint(ENV)
    assert len(fingerprint) == 12 and fingerprint != "unknown"
    verdict = gate.to_dict()["host"]
    assert verdict["baseline_fingerprint"] == verdict["candidate_fingerprint"] == fingerprint
    assert verdict["same_host"] is True and verdict["warning"] is None
    assert "WARNING" not in gate.summary()
    path = write_html_report(gate, tmp_path / "report.html")
    text = path.read_text()
    assert fingerprint in text and 'id="host-warning"' not in text
    assert json.loads(path.with_suffix(".json").read_text())["host"]["same_host"] is True


@pytest.mark.parametrize(
    "change",
    [{"logical_cores": 8}, {"cpu_model": "AMD EPYC 7B13"}, {"gpu": "NVIDIA H100 80GB HBM3"},
     {"memory_gb": 31.2}, {"os": "Linux-6.1.0-13-arm64-aarch64-with-glibc2.36"}],
)  # fmt: skip
def test_another_host_is_refused_naming_both_fingerprints_and_the_fix(
    store: RunStore, change: dict
) -> None:
    other = {**ENV, **change}
    a, b = add_run(store, 1000.0, 2.0), add_run(store, 1000.0, 2.0, env=other)
    with pytest.raises(ConfigError) as err:
        compare_runs(store, a, b)
    text = str(err.value)
    assert host_fingerprint(ENV) in text and host_fingerprint(other) in text
    assert host_fingerprint(ENV) != host_fingerprint(other)
    assert "Re-run the baseline on this host" in text and "allow_other_host=True" in text
    assert "--allow-other-host" in text


def test_another_host_is_allowed_with_a_loud_warning(store: RunStore, tmp_path) -> None:
    other = {**ENV, "logical_cores": 16, "cpu_model": "AMD EPYC 7B13"}
    a, b = add_run(store, 1000.0, 2.0), add_run(store, 1000.0, 2.0, env=other)
    gate = compare_runs(store, a, b, allow_other_host=True)
    assert gate.passed and not gate.host.same_host and gate.host.other_host_allowed
    warning = gate.host.warning
    assert warning.startswith("WARNING: baseline and candidate ran on different hosts")
    assert host_fingerprint(other) in warning and "AMD EPYC 7B13" in warning
    assert gate.summary().endswith(warning) and gate.notes[0] == warning
    assert gate.to_dict()["host"]["warning"] == warning
    text = write_html_report(gate, tmp_path / "report.html").read_text()
    assert 'class="warn" id="host-warning"' in text and "WARNING: baseline and candidate" in text


def test_an_unrecorded_or_mixed_host_is_refused(store: RunStore) -> None:
    a, bare = add_run(store, 1000.0, 2.0), add_run(store, 1000.0, 2.0, env={})
    with pytest.raises(ConfigError, match="unknown"):
        compare_runs(store, a, bare)
    with pytest.raises(ConfigError, match="unknown"):
        compare_runs(store, bare, bare)  # two unrecorded hosts are not known to be one
    other = add_run(store, 1000.0, 2.0, env={**ENV, "logical_cores": 4})
    with pytest.raises(ConfigError, match="baseline runs were timed on different hosts"):
        compare_runs(store, [a, other], a)
    with pytest.raises(ConfigError, match="no candidate run ids"):
        compare_runs(store, a, [])


# -- repeats and the interval -----------------------------------------------------------------


def add_sampled_run(store: RunStore, samples: np.ndarray) -> int:
    """A profile run whose figures are computed from its latency samples, as profile() does."""
    metrics = {
        "throughput_items_per_s": float(1e3 / samples.mean()),
        "latency_ms_p50": float(np.percentile(samples, 50)),
        "latency_ms_p99": float(np.percentile(samples, 99)),
        "energy_j_per_item": 2e-3,
        "energy_method": "estimated",
    }
    config = {"backend": "onnxruntime", "device": "cpu", "batch_size": 1, "threads": 1}
    return store.add("profile", model="m", fingerprint="f" * 64, config=config, metrics=metrics,
                     environment=ENV, details={"latencies_ms": samples.tolist()})  # fmt: skip


def sampled_runs(store: RunStore, rng: np.random.Generator, runs: int, scale: float = 1.0):
    """``runs`` runs of 2000 calls each from one skewed latency distribution, times ``scale``;
    each run also has its own small offset (another process, the clock), as real repeats do."""
    return [
        add_sampled_run(store, rng.lognormal(-1.0, 0.35, 2000) * scale * rng.normal(1.0, 0.02))
        for _ in range(runs)
    ]


def test_the_same_distribution_does_not_fail_where_the_point_figure_would(store) -> None:
    """Two sets of runs from one distribution: the point figure of p99 rose (a one-pair gate with
    limit 0 % would fail), the interval says noise explains it, and the gate passes."""
    rng = np.random.default_rng(15)  # a draw where both point figures rose
    base, cand = sampled_runs(store, rng, 3), sampled_runs(store, rng, 3)
    gate = compare_runs(store, base, cand, Thresholds(max_cost_increase_pct=0,
                                                      max_p99_increase_pct=0))  # fmt: skip
    cost, p99 = gate.gated
    assert p99.change_pct > 0 and cost.change_pct > 0  # the point figures alone would fail
    assert p99.low_pct < 0 < p99.high_pct and cost.low_pct < 0 < cost.high_pct
    assert gate.passed, gate.summary()
    assert p99.decided_by == "lower bound"
    assert "the lower bound is within the limit: noise could explain the rise" in p99.describe()
    assert [r.id for r in gate.candidate_runs] == cand and gate.baseline.id == base[0]
    assert gate.to_dict()["baseline_run_ids"] == base
    # each side's figure is the mean over its runs
    p99s = [store.get(i).metrics["latency_ms_p99"] for i in base]
    assert p99.baseline == pytest.approx(np.mean(p99s))


def test_a_shifted_distribution_fails_on_its_lower_bound(store: RunStore) -> None:
    rng = np.random.default_rng(3)
    base, slow = sampled_runs(store, rng, 3), sampled_runs(store, rng, 3, scale=1.4)
    gate = compare_runs(store, base, slow, Thresholds(max_cost_increase_pct=10,
                                                      max_p99_increase_pct=20))  # fmt: skip
    cost, p99 = gate.gated
    assert not gate.passed and gate.failures == [cost, p99]
    for check, limit in ((cost, 10), (p99, 20)):
        assert check.low_pct > limit and check.low_pct < check.change_pct < check.high_pct
        assert check.decided_by == "lower bound"
        assert "the lower bound is beyond the limit" in check.describe()
    with pytest.raises(RegressionError, match="lower bound is beyond the limit"):
        gate.raise_for_regression()
    # a limit inside the interval: the rise might be noise, so the gate does not fail
    limit = Thresholds(max_cost_increase_pct=cost.high_pct, max_p99_increase_pct=p99.high_pct)
    wide = compare_runs(store, base, slow, limit)
    assert wide.passed and [c.decided_by for c in wide.gated] == ["upper bound"] * 2


def test_the_interval_is_seeded_and_repeats_narrow_it(store: RunStore) -> None:
    rng = np.random.default_rng(5)
    base, cand = sampled_runs(store, rng, 6), sampled_runs(store, rng, 6)
    one = compare_runs(store, base, cand).gated[1]
    again = compare_runs(store, base, cand).gated[1]
    assert (one.low_pct, one.high_pct) == (again.low_pct, again.high_pct)
    other_seed = compare_runs(store, base, cand, seed=1).gated[1]
    assert other_seed.low_pct != one.low_pct
    few = compare_runs(store, base[:1], cand[:1]).gated[1]
    assert one.high_pct - one.low_pct < few.high_pct - few.low_pct
    note = next(n for n in compare_runs(store, base[:1], cand).notes if n.startswith("interval"))
    assert "1 baseline run and 6 candidate runs" in note and "--repeats" in note
