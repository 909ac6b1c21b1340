"""NvmlMeter against a fake NVML module: honest counter and power values from a scripted curve."""

from __future__ import annotations

import math
import sys
import threading
import time
import types

import pytest

from workbench.energy import (
    EnergyFallbackWarning,
    FallbackMeter,
    NvmlMeter,
    auto_meter,
)
from workbench.errors import BackendUnavailableError, ConfigError, EnergyError


class FakeNvml:
    """The pynvml functions NvmlMeter uses, for GPUs whose power follows ``power_w(t)``.

    ``nvmlDeviceGetPowerUsage`` returns the power at the moment of the call in integer
    milliwatts; ``nvmlDeviceGetTotalEnergyConsumption`` returns the exact integral of the same
    curve since start-up in integer millijoules (or NOT_SUPPORTED for GPUs without the counter).
    Every call is logged with its time.
    """

    NVML_ERROR_NOT_SUPPORTED = 3
    NVML_ERROR_LIBRARY_NOT_FOUND = 12
    NVML_ERROR_GPU_IS_LOST = 15

    class NVMLError(Exception):
        def __init__(self, value: int) -> None:
            names = {3: "Not Supported", 12: "NVML Shared Library Not Found", 15: "GPU is lost"}
            super().__init__(names[value])
            self.value = value

    def __init__(self, gpus: int = 2, counter_gpus: tuple[int, ...] = (0, 1)) -> None:
        self.gpus = gpus
        self.counter_gpus = counter_gpus
        self.start = time.perf_counter()
        self.calls: list[tuple[str, int, float]] = []
        self.lost: set[int] = set()
        self.library_missing = False
        self.shutdowns = 0
        self._lock = threading.Lock()

    # the scripted power curve of GPU i: a slow wave on a ramp, scaled per GPU
    @staticmethod
    def power_w(index: int, t: float) -> float:
        return (1 + index) * (120.0 + 40.0 * math.sin(math.pi * t) + 30.0 * t)

    @staticmethod
    def energy_j(index: int, t: float) -> float:
        return (1 + index) * (120.0 * t + 40.0 / math.pi * (1 - math.cos(math.pi * t)) + 15 * t * t)

    def _now(self, name: str, index: int) -> float:
        t = time.perf_counter() - self.start
        with self._lock:
            self.calls.append((name, index, t))
        if index in self.lost:
            raise self.NVMLError(self.NVML_ERROR_GPU_IS_LOST)
        return t

    def nvmlInit(self) -> None:
        if self.library_missing:
            raise self.NVMLError(self.NVML_ERROR_LIBRARY_NOT_FOUND)

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return self.gpus

    def nvmlDeviceGetHandleByIndex(self, index: int) -> tuple[str, int]:
        if not 0 <= index < self.gpus:
            raise self.NVMLError(self.NVML_ERROR_NOT_SUPPORTED)
        return ("handle", index)

    def nvmlDeviceGetPowerUsage(self, handle: tuple[str, int]) -> int:
        index = handle[1]
        return round(self.power_w(index, self._now("power", index)) * 1000)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: tuple[str, int]) -> int:
        index = handle[1]
        if index not in self.counter_gpus:
            raise self.NVMLError(self.NVML_ERROR_NOT_SUPPORTED)
        return math.floor(self.energy_j(index, self._now("energy", index)) * 1000)

    def window_edges(self, kind: str, index: int) -> tuple[float, float]:
        """Times of the first and last call of ``kind`` for GPU ``index`` in the log."""
        times = [t for name, i, t in self.calls if name == kind and i == index]
        return times[0], times[-1]


def busy_wait(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        time.sleep(0.002)


def test_counter_and_sampling_paths_match_the_analytic_integral() -> None:
    fake = FakeNvml(gpus=2, counter_gpus=(0,))  # GPU 0 has the counter, GPU 1 must be sampled
    meter = NvmlMeter(nvml=fake, sample_interval_s=0.01)
    assert meter.counter_gpus == [0]
    fake.calls.clear()

    meter.begin_window("w")
    busy_wait(0.6)
    reading = meter.end_window("w")
    meter.close()

    for index, kind in ((0, "energy"), (1, "power")):
        t0, t1 = fake.window_edges(kind, index)
        analytic = fake.energy_j(index, t1) - fake.energy_j(index, t0)
        assert reading.energy_j_by_component[f"gpu:{index}"] == pytest.approx(analytic, rel=1e-3)
    assert reading.method == "measured"
    assert reading.method_by_component == {"gpu:0": "measured", "gpu:1": "measured"}
    samples = [t for name, i, t in fake.calls if name == "power" and i == 1]
    assert len(samples) / reading.duration_s >= 10  # at least 10 Hz
    assert any("counter" in n for n in reading.notes)
    assert any("100 Hz" in n and "trapezoid" in n for n in reading.notes)


def test_sampling_at_the_default_rate_is_within_a_tenth_of_a_percent() -> None:
    fake = FakeNvml(gpus=1, counter_gpus=())
    with NvmlMeter([0], nvml=fake) as meter, meter.window("w") as window:
        busy_wait(0.5)
    t0, t1 = fake.window_edges("power", 0)
    analytic = fake.energy_j(0, t1) - fake.energy_j(0, t0)
    assert window.reading.energy_j == pytest.approx(analytic, rel=1e-3)
    assert window.reading.duration_s == pytest.approx(t1 - t0, abs=0.01)
    calls = len(fake.calls)
    time.sleep(0.1)
    assert len(fake.calls) == calls  # the sampler stopped with the last window


def test_use_energy_counter_false_forces_sampling() -> None:
    fake = FakeNvml(gpus=1, counter_gpus=(0,))
    meter = NvmlMeter(nvml=fake, use_energy_counter=False, sample_interval_s=0.02)
    assert meter.counter_gpus == []
    with meter.window("w") as window:
        busy_wait(0.2)
    t0, t1 = fake.window_edges("power", 0)
    analytic = fake.energy_j(0, t1) - fake.energy_j(0, t0)
    assert window.reading.energy_j == pytest.approx(analytic, rel=1e-3)


def test_unknown_gpu_index_lists_the_available_ones() -> None:
    fake = FakeNvml(gpus=2)
    with pytest.raises(EnergyError) as info:
        NvmlMeter([0, 5], nvml=fake)
    assert "unknown GPU index 5" in str(info.value)
    assert "[0, 1]" in str(info.value)
    assert fake.shutdowns == 1
    with pytest.raises(EnergyError, match=r"indices \[0, 1\]"):
        NvmlMeter([], nvml=fake)


def test_no_driver_or_no_gpu_is_backend_unavailable() -> None:
    fake = FakeNvml()
    fake.library_missing = True
    with pytest.raises(BackendUnavailableError, match="NVML Shared Library Not Found"):
        NvmlMeter(nvml=fake)
    with pytest.raises(BackendUnavailableError, match="no NVIDIA GPU"):
        NvmlMeter(nvml=FakeNvml(gpus=0))


def test_sampling_rate_below_10_hz_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"sample_interval_s=0\.5"):
        NvmlMeter(nvml=FakeNvml(), sample_interval_s=0.5)


@pytest.mark.parametrize("counter_gpus", [(0,), ()], ids=["counter", "sampling"])
def test_gpu_lost_mid_window_is_an_error_and_a_fallback(counter_gpus) -> None:
    fake = FakeNvml(gpus=1, counter_gpus=counter_gpus)
    meter = NvmlMeter(nvml=fake, sample_interval_s=0.01)
    meter.begin_window("w")
    fake.lost.add(0)
    time.sleep(0.03)
    with pytest.raises(EnergyError, match=r"NVML failed during window 'w' .*GPU is lost"):
        meter.end_window("w")

    fake.lost.clear()
    guarded = FallbackMeter(meter)
    guarded.begin_window("w")
    fake.lost.add(0)
    with pytest.warns(EnergyFallbackWarning, match="nvml energy meter failed during window 'w'"):
        reading = guarded.end_window("w")
    assert reading.warnings[-1].endswith("which does not include gpu:0")
    assert reading.method == "estimated"
    assert "gpu:0" not in reading.energy_j_by_component


def test_cuda_is_synchronised_at_both_edges_before_reading(monkeypatch) -> None:
    fake = FakeNvml(gpus=1, counter_gpus=(0,))
    synced: list[int] = []

    def synchronize(device: int) -> None:
        synced.append(device)
        fake.calls.append(("sync", device, time.perf_counter() - fake.start))

    cuda = types.SimpleNamespace(
        is_initialized=lambda: True, device_count=lambda: 2, synchronize=synchronize
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    meter = NvmlMeter(nvml=fake)
    fake.calls.clear()
    with meter.window("w"):
        pass
    assert [name for name, _, _ in fake.calls] == [
        "sync",
        "sync",
        "energy",
        "sync",
        "sync",
        "energy",
    ]
    assert synced == [0, 1, 0, 1]


def test_torch_is_not_imported_by_the_meter(monkeypatch) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    meter = NvmlMeter(nvml=FakeNvml(gpus=1))
    with meter.window("w"):
        pass
    assert "torch" not in sys.modules


def test_auto_meter_adds_the_gpu_and_keeps_an_estimate_behind(tmp_path) -> None:
    fake = FakeNvml(gpus=2, counter_gpus=(0, 1))
    meter = auto_meter(gpu_indices=[1], rapl_root=tmp_path / "none", nvml=fake, tdp_w=8.0)
    assert meter.name == "estimate+nvml"
    with meter.window("w") as window:
        busy_wait(0.05)
    reading = window.reading
    assert set(reading.energy_j_by_component) == {"cpu", "ram", "gpu:1"}
    assert reading.method_by_component["gpu:1"] == "measured"
    assert reading.method == "estimated"  # the CPU part is an estimate


def test_auto_meter_without_nvml_warns_that_gpu_energy_is_missing(tmp_path) -> None:
    fake = FakeNvml()
    fake.library_missing = True
    with pytest.warns(EnergyFallbackWarning, match="GPU energy is not included"):
        meter = auto_meter(gpu_indices=[0], rapl_root=tmp_path, nvml=fake)
    with meter.window("w") as window:
        pass
    assert any("GPU energy is not included" in w for w in window.reading.warnings)
