"""GPU paths measured honestly, tested where no GPU is: the meter a CUDA profile or search uses
includes the GPU (a fake NVML module with honest values stands in for the absent hardware), ONNX
Runtime-on-CUDA peak memory is unknown rather than torch's figure, and both backends share one
host-device copy policy (the ORT binding path runs here on the CPU device)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from workbench.energy import EnergyFallbackWarning
from workbench.energy.auto import auto_meter_for, gpu_indices_for
from workbench.errors import EnergyError
from workbench.measure.backends import (
    IO_POLICY_DEVICE,
    IO_POLICY_HOST,
    _ort_bound_io,
    io_policy,
    make_runner,
)
from workbench.measure.profiling import (
    ORT_CUDA_MEMORY_UNKNOWN,
    ProfileConfig,
    _EnergySession,
    _MemoryWatch,
    memory_method_for,
    profile,
)
from workbench.models import load_model


def _fake_nvml_class() -> type:
    """The one fake NVML of the suite (tests/workbench/energy/test_nvml.py), loaded by path."""
    path = Path(__file__).parents[1] / "energy" / "test_nvml.py"
    spec = importlib.util.spec_from_file_location("_workbench_fake_nvml", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FakeNvml


FakeNvml = _fake_nvml_class()


@pytest.fixture
def fake_pynvml(monkeypatch):
    """The fake in place of ``pynvml`` (as the real meter imports it), one GPU with a counter."""
    fake = FakeNvml(gpus=1, counter_gpus=(0,))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return fake


# -- 1. GPU energy in every profile and search on a GPU


def test_gpu_indices_follow_the_devices_and_cuda_visible_devices() -> None:
    assert gpu_indices_for(["cpu"]) == [] and gpu_indices_for([]) == []
    assert gpu_indices_for(["cpu", "cuda", "cuda"]) == [0]
    assert gpu_indices_for(["cuda"], visible="3") == [3]  # NVML numbers ignore the mask
    assert gpu_indices_for(["cuda", "cuda:1"], visible=" 5, 2") == [5, 2]
    assert gpu_indices_for(["cpu"], visible="GPU-1234") == []
    with pytest.raises(EnergyError, match=r"by UUID.*NVML indices"):
        gpu_indices_for(["cuda"], visible="GPU-8f2c6a7e-0000")
    with pytest.raises(EnergyError, match="CUDA device 1 is not among the 1 GPU"):
        gpu_indices_for(["cuda:1"], visible="0")


def test_the_meter_for_cuda_includes_the_gpu_and_for_cpu_does_not(tmp_path) -> None:
    fake = FakeNvml(gpus=2, counter_gpus=(0, 1))
    none = tmp_path / "no-powercap"
    cuda = auto_meter_for(["cpu", "cuda"], rapl_root=none, nvml=fake, tdp_w=8.0)
    cpu = auto_meter_for(["cpu"], rapl_root=none, nvml=fake, tdp_w=8.0)
    assert "gpu:0" in cuda.components() and "gpu:1" not in cuda.components()
    assert not [c for c in cpu.components() if c.startswith("gpu")]
    with cuda.window("w") as window:
        pass
    assert window.reading.method_by_component["gpu:0"] == "measured"


def test_a_gpu_that_cannot_be_mapped_is_left_out_with_a_standing_warning(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-8f2c6a7e-0000")
    with pytest.warns(EnergyFallbackWarning, match=r"GPU energy is not included.*UUID"):
        meter = auto_meter_for(["cuda"], rapl_root=tmp_path, nvml=FakeNvml(gpus=1))
    assert "gpu:0" not in meter.components()
    with meter.window("w") as window:
        pass
    assert any("GPU energy is not included" in w for w in window.reading.warnings)


def test_the_meter_a_cuda_profile_uses_has_gpu_0(fake_pynvml) -> None:
    cuda = _EnergySession.start(ProfileConfig(device="cuda", energy=True), None).meter
    cpu = _EnergySession.start(ProfileConfig(device="cpu", energy=True), None).meter
    assert "gpu:0" in cuda.components()
    assert not [c for c in cpu.components() if c.startswith("gpu")]


def test_the_meter_a_cuda_search_uses_has_gpu_0(fake_pynvml) -> None:
    from workbench.compress.registry import make_variant, torch_copy
    from workbench.compress.search.runner import search_meter

    base = load_model("digits-mlp")
    on_cpu = make_variant(base, "fp32", "custom", {}, torch_copy(base))
    on_gpu = make_variant(base, "fp32-gpu", "custom", {}, torch_copy(base), device="cuda")
    assert "gpu:0" in search_meter([on_cpu, on_gpu]).components()
    assert not [c for c in search_meter([on_cpu]).components() if c.startswith("gpu")]


# -- 2. ONNX Runtime-on-CUDA peak memory


def test_ort_on_cuda_memory_is_unknown_never_torchs() -> None:
    assert memory_method_for("onnxruntime", "cuda") == ORT_CUDA_MEMORY_UNKNOWN
    assert memory_method_for("torch", "cuda") == "cuda-max-allocated"
    assert memory_method_for("onnxruntime", "cpu") == memory_method_for("torch", "cpu")
    assert memory_method_for("torch", "cpu").startswith("rss")
    # the watch for ORT on CUDA reads nothing (torch's allocator never sees ORT's arena)
    assert _MemoryWatch(ORT_CUDA_MEMORY_UNKNOWN).peak_mb() == (None, ORT_CUDA_MEMORY_UNKNOWN)


# -- 3. One host-device copy policy


def test_one_io_policy_for_both_backends_and_recorded_in_the_profile() -> None:
    assert io_policy("onnxruntime", "cuda") == io_policy("torch", "cuda") == IO_POLICY_DEVICE
    assert io_policy("onnxruntime", "cpu") == io_policy("torch", "cpu") == IO_POLICY_HOST
    assert "copies excluded" in IO_POLICY_DEVICE
    for backend in ("onnxruntime", "torch"):
        p = profile("digits-mlp", backend=backend, iterations=5, warmup=1, operators=False,
                    store=False)  # fmt: skip
        assert p.io_policy == IO_POLICY_HOST and p.to_dict()["io_policy"] == IO_POLICY_HOST
        assert p.memory_peak_mb is not None and p.memory_method.startswith("rss")


def test_the_cpu_onnxruntime_path_is_unchanged() -> None:
    handle = load_model("digits-mlp")
    feed = handle.example_inputs(4)
    runner = make_runner(handle, "onnxruntime", threads=1)
    prepared = runner.prepare(feed)
    assert all(isinstance(v, np.ndarray) for v in prepared.values())  # plain host arrays
    assert runner.io_policy == IO_POLICY_HOST
    got = runner.run(prepared)
    assert isinstance(got[0], np.ndarray)
    np.testing.assert_array_equal(got[0], runner.session.run(None, prepared)[0])


def test_the_bound_io_path_gives_the_plain_run_outputs() -> None:
    """The IOBinding path the CUDA runner uses, run on ORT's CPU device: inputs bound once,
    outputs bound to the device, the same numbers as a plain run."""
    import onnxruntime as ort

    handle = load_model("digits-mlp")
    feed = handle.example_inputs(4)
    runner = make_runner(handle, "onnxruntime", threads=1)
    prepare, run = _ort_bound_io(ort, runner.session, runner.prepare, "cpu")
    binding = prepare(feed)
    first = run(binding)
    second = run(binding)  # the binding is reused: the inputs are not copied again
    assert all(isinstance(v, ort.OrtValue) for v in first)
    expected = runner.session.run(None, runner.prepare(feed))[0]
    np.testing.assert_allclose(first[0].numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(second[0].numpy(), expected, rtol=1e-6)


# -- on a real GPU


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_cuda_profile_energy_memory_and_policy_where_a_gpu_is_present(backend) -> None:
    import onnxruntime as ort

    from workbench.measure.backends import cuda_available

    if not cuda_available():
        pytest.skip("no CUDA GPU on this machine")
    if backend == "onnxruntime" and "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is not installed (the 'gpu' extra)")
    pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed (the 'gpu' extra)")
    p = profile("digits-cnn", backend=backend, device="cuda", batch_size=8, energy=True,
                idle_seconds=0, energy_min_seconds=0.5, operators=False, store=False)  # fmt: skip
    assert p.io_policy == IO_POLICY_DEVICE
    assert "gpu:0" in p.energy.energy_j_per_item_by_component
    if backend == "onnxruntime":
        assert p.memory_peak_mb is None and p.memory_method == ORT_CUDA_MEMORY_UNKNOWN
    else:
        assert p.memory_peak_mb >= 0 and p.memory_method == "cuda-max-allocated"
