"""NVML: NVIDIA GPU energy, from the total-energy counter or from sampled power.

Measured, whole GPU. One of the meters of :mod:`workbench.energy`; import it from there. Needs
the ``gpu`` extra (``nvidia-ml-py``, imported as ``pynvml``) unless an NVML module object is
passed in.

Example
-------
>>> from workbench.energy import NvmlMeter
>>> with NvmlMeter([0]) as meter:  # doctest: +SKIP
...     with meter.window("predict") as w:
...         run_batch()
>>> w.reading.energy_j_by_component  # doctest: +SKIP
{'gpu:0': 131.0}
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from workbench.checks import number
from workbench.energy.base import EnergyReading, Meter
from workbench.errors import BackendUnavailableError, EnergyError, MissingExtraError
from workbench.provenance import MEASURED


def _import_pynvml() -> Any:
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        raise MissingExtraError("gpu", "nvidia-ml-py", "Measuring GPU energy") from None


def _synchronize_cuda() -> None:
    """Wait for queued CUDA work, if this process has started CUDA through torch."""
    torch = sys.modules.get("torch")  # never import torch just to find nothing to wait for
    cuda = getattr(torch, "cuda", None)
    if cuda is not None and cuda.is_initialized():
        for device in range(cuda.device_count()):
            cuda.synchronize(device)


class _PowerIntegrator:
    """Cumulative energy per GPU from sampled power (trapezoid rule), sampled by a thread while
    any window is open and once more at each window edge."""

    def __init__(self, nvml: Any, handles: dict[int, Any], interval_s: float) -> None:
        self._nvml = nvml
        self._handles = handles
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self.energy_j = dict.fromkeys(handles, 0.0)
        self._last: dict[int, tuple[float, float]] = {}
        self._users = 0
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.samples = 0

    def _sample(self) -> None:
        for index, handle in self._handles.items():
            power_w = self._nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
            now = time.perf_counter()
            if index in self._last:
                then, power_then = self._last[index]
                self.energy_j[index] += (power_then + power_w) / 2.0 * (now - then)
            self._last[index] = (now, power_w)
        self.samples += 1

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval_s):
            with self._lock:
                if stop.is_set():
                    return
                try:
                    self._sample()
                except Exception as exc:  # reported by the next window end
                    self.error = exc
                    return

    def acquire(self) -> dict[int, float]:
        """A window begins: sample now, make sure the thread runs; cumulative joules so far."""
        with self._lock:
            if self._users == 0:
                self._last.clear()
                self.error = None
            self._sample()
            if self._users == 0:
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(self._stop,), name="nvml-power-sampler", daemon=True
                )
                self._thread.start()
            self._users += 1
            return dict(self.energy_j)

    def release(self) -> dict[int, float]:
        """A window ends: sample now; cumulative joules; stop the thread if no window is open."""
        thread = None
        try:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._stop is not None:
                    self._stop.set()
                    thread, self._thread = self._thread, None
                if self.error is not None:
                    raise self.error
                self._sample()
                return dict(self.energy_j)
        finally:
            if thread is not None:
                thread.join()

    def stop(self) -> None:
        with self._lock:
            self._users = 0
            if self._stop is not None:
                self._stop.set()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()


class NvmlMeter(Meter):
    """NVIDIA GPU energy through NVML, per GPU index.

    Uses ``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since the driver loaded; Volta and
    newer) where the GPU supports it, otherwise samples ``nvmlDeviceGetPowerUsage`` (milliwatts)
    every ``sample_interval_s`` on a background thread, plus once at each window edge, and
    integrates by the trapezoid rule. CUDA work queued by torch is synchronised at both edges
    (torch is only consulted if the process already imported it). Indices are NVML's, as
    ``nvidia-smi`` numbers them; ``CUDA_VISIBLE_DEVICES`` does not renumber them.

    Parameters
    ----------
    gpu_indices : GPUs to measure; ``None`` measures all.
    nvml : the NVML module (``pynvml`` from ``nvidia-ml-py`` when ``None``); tests pass a fake.
    sample_interval_s : seconds between power samples, at most 0.1 (at least 10 Hz).
    use_energy_counter : ``False`` forces the sampling path.

    Example
    -------
    >>> with NvmlMeter([0]) as meter:  # doctest: +SKIP
    ...     with meter.window("predict") as w:
    ...         run_batch()
    >>> w.reading.energy_j_by_component["gpu:0"]  # doctest: +SKIP
    """

    name = "nvml"

    def __init__(
        self,
        gpu_indices: Sequence[int] | None = None,
        nvml: Any = None,
        *,
        sample_interval_s: float = 0.05,
        use_energy_counter: bool = True,
    ) -> None:
        super().__init__()
        number("sample_interval_s", sample_interval_s, minimum=0, maximum=0.1, open_low=True,
               fix="sample at least 10 times a second")  # fmt: skip
        self._nvml = _import_pynvml() if nvml is None else nvml
        try:
            self._nvml.nvmlInit()
        except self._nvml.NVMLError as exc:
            raise BackendUnavailableError(
                f"NVML cannot start ({exc}): no working NVIDIA driver on this machine; measure "
                "without GPU energy (auto_meter() without gpu_indices) or install the driver"
            ) from exc
        count = self._nvml.nvmlDeviceGetCount()
        available = list(range(count))
        indices = available if gpu_indices is None else [int(i) for i in gpu_indices]
        unknown = [i for i in indices if i not in available]
        if not count or unknown or not indices:
            self._nvml.nvmlShutdown()
        if not count:
            raise BackendUnavailableError(
                "NVML finds no NVIDIA GPU on this machine; measure without GPU energy "
                "(auto_meter() without gpu_indices)"
            )
        if unknown or not indices:
            bad = f"GPU index {unknown[0]!r}" if len(unknown) == 1 else f"GPU indices {unknown}"
            raise EnergyError(
                f"unknown {bad}: this machine's NVIDIA GPUs have indices {available} (NVML "
                "numbering, as nvidia-smi shows them); pass gpu_indices from that list, or None "
                "for all"
            )
        self.gpu_indices = indices
        handles = {i: self._nvml.nvmlDeviceGetHandleByIndex(i) for i in indices}
        self.counter_gpus: list[int] = []
        for index, handle in handles.items():
            if use_energy_counter:
                try:
                    self._nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
                except self._nvml.NVMLError:
                    continue  # not supported on this GPU: sample its power instead
                self.counter_gpus.append(index)
        self._handles = handles
        self._sampled_gpus = [i for i in indices if i not in self.counter_gpus]
        sampled = {i: handles[i] for i in self._sampled_gpus}
        self._integrator = _PowerIntegrator(self._nvml, sampled, sample_interval_s)

    def components(self) -> list[str]:
        return [f"gpu:{i}" for i in self.gpu_indices]

    def _read_energy_j(self) -> dict[int, float]:
        read = self._nvml.nvmlDeviceGetTotalEnergyConsumption
        return {i: read(self._handles[i]) / 1000.0 for i in self.counter_gpus}

    def _begin(self, name: str) -> tuple[dict[int, float], dict[int, float]]:
        _synchronize_cuda()
        try:
            counters = self._read_energy_j()
            integrated = self._integrator.acquire() if self._sampled_gpus else {}
        except self._nvml.NVMLError as exc:
            raise EnergyError(f"NVML failed at the start of window {name!r}: {exc}") from exc
        return counters, integrated

    def _end(self, name: str, token: Any, duration_s: float) -> EnergyReading:
        _synchronize_cuda()
        counters0, integrated0 = token
        try:
            integrated1 = self._integrator.release() if self._sampled_gpus else {}
            counters1 = self._read_energy_j()
        except Exception as exc:
            raise EnergyError(
                f"NVML failed during window {name!r} ({type(exc).__name__}: {exc}); wrap the "
                "meter in FallbackMeter (auto_meter() does) to get an estimate instead"
            ) from exc
        energy = {
            f"gpu:{i}": (
                counters1[i] - counters0[i] if i in counters0 else integrated1[i] - integrated0[i]
            )
            for i in self.gpu_indices
        }
        notes = []
        if self.counter_gpus:
            notes.append(f"GPUs {self.counter_gpus}: NVML total-energy counter")
        if self._sampled_gpus:
            hz = 1.0 / self._integrator.interval_s
            notes.append(
                f"GPUs {self._sampled_gpus}: NVML power sampled at {hz:g} Hz, trapezoid rule"
            )
        return EnergyReading.from_components(
            duration_s, energy, dict.fromkeys(energy, MEASURED), self.name, notes=notes
        )

    def close(self) -> None:
        self._integrator.stop()
        with contextlib.suppress(Exception):
            self._nvml.nvmlShutdown()
