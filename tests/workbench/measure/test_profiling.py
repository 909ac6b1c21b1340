import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from workbench.errors import BackendUnavailableError, ConfigError
from workbench.measure.backends import logical_cores
from workbench.measure.profiling import Profile, profile, sweep
from workbench.measure.store import RunStore

FAST = {"iterations": 30, "warmup": 2, "operator_iterations": 3, "max_seconds": 5.0}
MINILM_FAST = {"iterations": 4, "warmup": 1, "operator_iterations": 2, "min_iterations": 2}


def _check_profile(p: Profile, backend: str, batch_size: int) -> None:
    assert (p.backend, p.batch_size, p.device) == (backend, batch_size, "cpu")
    assert p.latency_ms_min <= p.latency_ms_p50 <= p.latency_ms_p90 <= p.latency_ms_p95
    assert p.latency_ms_p95 <= p.latency_ms_p99 <= p.latency_ms_max
    assert len(p.latencies_ms) == p.iterations
    assert p.latency_ms_p50 == pytest.approx(float(np.median(p.latencies_ms)), rel=1e-6)
    assert p.throughput_items_per_s == pytest.approx(
        batch_size * p.iterations / (sum(p.latencies_ms) / 1e3), rel=1e-6
    )
    assert p.params > 0 and p.model_size_mb > 0 and p.flops_per_item > 0
    assert p.memory_peak_mb >= 0 and p.memory_method in ("rss-peak-delta", "rss-delta")
    assert p.latency_method == "measured"
    assert p.operators, "per-operator table is empty"
    assert sum(o.share for o in p.operators) == pytest.approx(1.0)
    assert p.environment["logical_cores"] == logical_cores()


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
@pytest.mark.parametrize("name", ["digits-cnn", "digits-mlp"])
def test_digits_models_on_both_backends(name, backend, db_path):
    p = profile(name, backend=backend, batch_size=4, **FAST)
    _check_profile(p, backend, 4)
    assert p.iterations == 30
    stored = RunStore(db_path).get(p.run_id)
    assert stored.metrics["latency_ms_p99"] == p.latency_ms_p99
    assert stored.config["backend"] == backend
    assert stored.details["operators"][0]["op"] == p.operators[0].op


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_minilm_on_both_backends(backend):
    from workbench.models import load_model

    handle = load_model("minilm", input_shapes={"input_ids": (1, 32)})
    p = profile(handle, backend=backend, batch_size=2, **MINILM_FAST)
    _check_profile(p, backend, 2)
    ops = {o.op for o in p.operators}
    assert ("MatMul" in ops) if backend == "onnxruntime" else any("mm" in o for o in ops)


def test_onnx_and_torch_flop_counts_agree_in_profiles():
    a = profile("digits-cnn", backend="onnxruntime", store=False, **FAST)
    b = profile("digits-cnn", backend="torch", store=False, **FAST)
    assert a.flops_per_item == b.flops_per_item
    assert (a.flops_method, b.flops_method) == ("onnx-graph", "torch-flopcounter")


def test_time_budget_stops_early_but_keeps_the_minimum():
    p = profile(
        "digits-mlp",
        iterations=10**7,
        max_seconds=0.2,
        min_iterations=5,
        warmup=0,
        operators=False,
        store=False,
    )
    assert 5 <= p.iterations < 10**7


def test_to_frame_has_units_in_column_names():
    p = profile("digits-mlp", store=False, **FAST)
    frame = p.to_frame()
    assert {"latency_ms_p99", "throughput_items_per_s", "memory_peak_mb"} <= set(frame.columns)
    assert len(frame) == 1 and "operators" not in frame.columns
    assert list(p.operators_frame().columns) == ["op", "calls_per_run", "time_ms_per_run", "share"]


@pytest.mark.parametrize(
    ("settings", "pattern"),
    [
        ({"batch_size": 0}, "batch_size=0 must be a whole number >= 1"),
        ({"batch_size": -3}, "batch_size=-3"),
        ({"threads": logical_cores() + 1}, f"use 1..{logical_cores()}"),
        ({"threads": 0}, "threads=0"),
        ({"iterations": 0}, "iterations=0"),
        ({"backend": "tensorflow"}, "unknown backend 'tensorflow'"),
        ({"batchsize": 2}, "valid settings are"),
    ],
)
def test_bad_settings_are_clear_errors(settings, pattern):
    with pytest.raises(ConfigError, match=pattern):
        profile("digits-mlp", store=False, **settings)


def test_cuda_without_gpu_is_a_clear_error():
    from workbench.measure.backends import cuda_available

    if cuda_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(BackendUnavailableError, match="--device cpu"):
        profile("digits-mlp", backend="torch", device="cuda", store=False)


def test_sweep_stores_each_configuration_and_resumes(db_path):
    result = sweep(
        "digits-mlp", batch_sizes=[1, 2], backends=["onnxruntime", "torch"], progress=False, **FAST
    )
    assert len(result.profiles) == 4 and not result.interrupted
    assert len(result.to_frame()) == 4
    store = RunStore(db_path)
    assert len(store.runs(sweep_id=result.sweep_id)) == 4
    again = sweep(
        "digits-mlp",
        batch_sizes=[1, 2, 4],
        backends=["onnxruntime", "torch"],
        sweep_id=result.sweep_id,
        progress=False,
        **FAST,
    )
    assert len(again.resumed_run_ids) == 4
    assert [(p.backend, p.batch_size) for p in again.profiles] == [("onnxruntime", 4), ("torch", 4)]
    assert len(store.runs(sweep_id=result.sweep_id)) == 6


def test_sweep_interrupted_keeps_finished_configurations(db_path, monkeypatch):
    import workbench.measure.profiling as profiling

    real = profiling._measure
    calls = {"n": 0}

    def stop_on_third(handle, cfg, energy=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(handle, cfg, energy)

    monkeypatch.setattr(profiling, "_measure", stop_on_third)
    result = sweep("digits-mlp", batch_sizes=[1, 2, 3, 4], progress=False, **FAST)
    assert result.interrupted and len(result.profiles) == 2
    assert len(RunStore(db_path).runs(sweep_id=result.sweep_id)) == 2


SWEEP_SCRIPT = textwrap.dedent(
    """
    from workbench.measure.profiling import sweep
    sweep("digits-mlp", batch_sizes=list(range(1, 41)), sweep_id="killme", progress=False,
          iterations=400, warmup=1, max_seconds=0.3, operators=False)
    """
)


@pytest.mark.reliability
def test_sigkill_mid_sweep_keeps_finished_rows(db_path):
    load = subprocess.run(
        [
            sys.executable,
            "-c",
            "from workbench.models import load_model; load_model('digits-mlp').onnx()",
        ],
        check=True,
        env=os.environ,
    )
    assert load.returncode == 0
    proc = subprocess.Popen([sys.executable, "-c", SWEEP_SCRIPT], env=os.environ)
    try:
        deadline = time.monotonic() + 120
        stored = 0
        while time.monotonic() < deadline and stored < 3:
            time.sleep(0.2)
            if os.path.exists(db_path):
                with RunStore(db_path) as store:
                    stored = len(store.runs(sweep_id="killme"))
            assert proc.poll() is None, "the sweep ended before it could be killed"
        assert stored >= 3, "the sweep stored nothing in time"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with RunStore(db_path) as store:
        rows = store.runs(sweep_id="killme")
        assert len(rows) >= 3
        sizes = sorted(r.config["batch_size"] for r in rows)
        assert sizes == list(range(1, len(rows) + 1))  # every finished configuration, in order
        assert all(r.metrics["latency_ms_p50"] > 0 for r in rows)
    resumed = sweep(
        "digits-mlp",
        batch_sizes=[1, 2, 3],
        sweep_id="killme",
        progress=False,
        iterations=5,
        warmup=0,
        operators=False,
    )
    assert len(resumed.resumed_run_ids) == 3 and resumed.profiles == []


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_cuda_profile_where_a_gpu_is_present(backend):
    import onnxruntime as ort

    from workbench.measure.backends import cuda_available

    if not cuda_available():
        pytest.skip("no CUDA GPU on this machine")
    if backend == "onnxruntime" and "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is not installed (the 'gpu' extra)")
    p = profile("digits-cnn", backend=backend, device="cuda", batch_size=8, store=False, **FAST)
    from workbench.measure.profiling import memory_method_for

    assert p.device == "cuda" and p.memory_method == memory_method_for(backend, "cuda")
    assert p.latency_ms_p50 <= p.latency_ms_p99 <= p.latency_ms_max
    assert p.operators


def test_energy_estimated_end_to_end_profile_frame_store(db_path):
    from workbench.energy import EstimateMeter

    p = profile(
        "digits-mlp",
        energy=True,
        meter=EstimateMeter(tdp_w=10.0),
        idle_seconds=0.2,
        energy_min_seconds=0.5,
        carbon_region="FRA",
        **FAST,
    )
    assert p.energy is not None and p.energy.method == "estimated"
    assert p.iterations >= 30 and sum(p.latencies_ms) >= 500 * 0.9  # the window ran >= 0.5 s
    assert p.energy.items == p.iterations * p.batch_size
    assert p.energy.energy_j_per_item == pytest.approx(p.energy.energy_j / p.energy.items)
    row = p.to_frame().iloc[0]
    assert row["energy_method"] == "estimated" and row["energy_j_per_item"] > 0
    assert row["energy_method.cpu"] == "estimated"
    stored = RunStore(db_path).get(p.run_id).metrics
    assert stored["energy_method"] == "estimated"
    assert stored["co2e_g_per_1m"] == pytest.approx(p.energy.g_co2e_per_million)
    assert stored["carbon_g_per_kwh"] == p.energy.g_co2e_per_kwh


def test_meter_failing_mid_run_falls_back_to_estimate_and_keeps_latencies():
    from workbench.energy import EnergyFallbackWarning, Meter

    class Flaky(Meter):
        """A meter whose hardware read fails when the window ends (a counter file vanished)."""

        name = "flaky"

        def _begin(self, name):
            return None

        def _end(self, name, token, duration_s):
            raise OSError("counter vanished")

    flaky = Flaky()
    with pytest.warns(EnergyFallbackWarning, match="counter vanished"):
        p = profile(
            "digits-mlp",
            energy=True,
            meter=flaky,
            idle_seconds=0,
            store=False,
            energy_min_seconds=0.3,
            **FAST,
        )
    assert p.latency_ms_p50 > 0 and len(p.latencies_ms) == p.iterations
    assert p.energy.method == "estimated"
    assert p.energy.meter == "estimate (fallback for flaky)"


def test_cli_energy_table_says_estimated(db_path):
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "workbench.cli",
            "profile",
            "digits-mlp",
            "--energy",
            "--iterations",
            "20",
            "--max-seconds",
            "2",
        ],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "J/item" in out.stdout and "gCO2e/1M" in out.stdout
    assert "estimated" in out.stdout
    (run,) = RunStore(db_path).runs()
    assert run.metrics["energy_method"] == "estimated"


def test_input_the_backend_rejects_is_one_clear_error(tmp_path):
    import torch
    from torch import nn

    from workbench.errors import InputShapeError
    from workbench.models import load_model

    path = tmp_path / "linear.onnx"
    torch.onnx.export(
        nn.Linear(4, 2),
        (torch.randn(1, 4),),
        str(path),
        input_names=["x"],
        dynamic_axes={"x": {0: "b", 1: "features"}},
        dynamo=False,
    )
    handle = load_model(path, input_shapes={"x": (1, 5)})  # the graph allows it, the weights not
    for backend_run in (dict(operators=False), dict(operators=True, warmup=0)):
        with pytest.raises(InputShapeError, match=r"linear rejected the input .* x\[None, None\]"):
            profile(handle, store=False, **backend_run)
