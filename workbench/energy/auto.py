"""``auto_meter()``: the best meter this machine allows (RAPL, NVML), with the estimate behind it.

``auto_meter_for(devices)`` is the one the profiler and the search use: it adds the GPU
(NVML) whenever a configuration runs on ``cuda``, so a CUDA run is never ranked by a host-CPU
estimate alone; where the GPU cannot be measured, every reading carries a warning saying why.
``gpu_indices_for(devices, visible)`` is its pure decision: which NVML indices those are.

>>> from workbench.energy import auto_meter
>>> auto_meter(rapl_root="/nonexistent").name
'estimate'
>>> gpu_indices_for(["cpu"]), gpu_indices_for(["cpu", "cuda"]), gpu_indices_for(["cuda"], "2,3")
([], [0], [2])
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from workbench.energy.base import CompositeMeter, EnergyFallbackWarning, Meter
from workbench.energy.estimate import EstimateMeter
from workbench.energy.fallback import FallbackMeter
from workbench.energy.nvml import NvmlMeter
from workbench.energy.rapl import RaplMeter
from workbench.errors import BackendUnavailableError, EnergyError, WorkbenchError


def auto_meter(
    *,
    gpu_indices: Sequence[int] | None = None,
    tdp_w: float | None = None,
    cpu_model: str | None = None,
    rapl_root: str | Path = "/sys/class/powercap",
    nvml: Any = None,
) -> Meter:
    """The best meter this machine allows, with an estimate behind it.

    CPU: RAPL if its counters are readable, else ``EstimateMeter``. GPU (only when
    ``gpu_indices`` names some): ``NvmlMeter``; if NVML is unavailable the GPU's energy is left
    out, with a warning in every reading. Anything measured is wrapped in ``FallbackMeter``, so a
    failure mid-window gives the estimate instead of an exception.

    Example
    -------
    >>> meter = auto_meter(rapl_root="/nonexistent")
    >>> meter.name
    'estimate'
    """
    notes: list[str] = []
    standing_warnings: list[str] = []
    rapl: RaplMeter | None = None
    gpu: NvmlMeter | None = None
    try:
        rapl = RaplMeter(rapl_root)
    except BackendUnavailableError as exc:
        notes.append(f"CPU and RAM estimated: {exc}")
    except EnergyError as exc:
        standing_warnings.append(f"CPU and RAM estimated: {exc}")
    if gpu_indices:
        try:
            gpu = NvmlMeter(gpu_indices, nvml)
        except WorkbenchError as exc:
            standing_warnings.append(f"GPU energy is not included: {exc}")
    parts: list[Meter] = [rapl if rapl is not None else EstimateMeter(tdp_w, cpu_model)]
    if gpu is not None:
        parts.append(gpu)
    meter: Meter = parts[0] if len(parts) == 1 else CompositeMeter(parts)
    if rapl is not None or gpu is not None:
        meter = FallbackMeter(meter, EstimateMeter(tdp_w, cpu_model))
    meter.standing_notes.extend(notes)
    meter.standing_warnings.extend(standing_warnings)
    for message in standing_warnings:
        warnings.warn(message, EnergyFallbackWarning, stacklevel=2)
    return meter


def gpu_indices_for(devices: Iterable[str], visible: str | None = None) -> list[int]:
    """NVML indices of the GPUs that configurations on ``devices`` run on; ``[]`` if none is CUDA.

    ``"cuda"`` is CUDA device 0 (what the torch and ONNX Runtime runners use), ``"cuda:N"``
    device N. CUDA numbers only the GPUs ``CUDA_VISIBLE_DEVICES`` (``visible``; ``None``: unset,
    all of them) lists, NVML numbers every GPU, so a CUDA index is mapped back through that
    list. Raises EnergyError when the list names GPUs by UUID (``GPU-...``, ``MIG-...``), which
    cannot be mapped without NVML. (CUDA orders GPUs fastest first unless
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID``; on machines with unlike GPUs set it, so the orders agree.)

    >>> gpu_indices_for(["cuda", "cuda:1"], visible="4,6")
    [4, 6]
    """
    cuda = sorted({_cuda_index(d) for d in devices if d == "cuda" or d.startswith("cuda:")})
    if not cuda or visible is None:
        return cuda
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    if not all(e.isdigit() for e in entries):
        raise EnergyError(
            f"CUDA_VISIBLE_DEVICES={visible!r} names GPUs by UUID, which cannot be matched to "
            "NVML's indices here: set it to NVML indices (as nvidia-smi numbers them), or pass "
            "meter=NvmlMeter([index]) yourself"
        )
    missing = [i for i in cuda if i >= len(entries)]
    if missing:
        raise EnergyError(
            f"CUDA device {missing[0]} is not among the {len(entries)} GPU(s) "
            f"CUDA_VISIBLE_DEVICES={visible!r} lists: use a device it lists"
        )
    return [int(entries[i]) for i in cuda]


def _cuda_index(device: str) -> int:
    _, _, index = device.partition(":")
    return int(index) if index.isdigit() else 0


def auto_meter_for(
    devices: Iterable[str],
    *,
    tdp_w: float | None = None,
    cpu_model: str | None = None,
    rapl_root: str | Path = "/sys/class/powercap",
    nvml: Any = None,
) -> Meter:
    """:func:`auto_meter` with the GPUs that configurations on ``devices`` use (NVML included
    whenever one runs on ``cuda``; see :func:`gpu_indices_for`).

    If the GPU cannot be measured (no NVML, no driver, an index that cannot be mapped), the
    meter still works without it and every reading carries a warning that says why.

    >>> auto_meter_for(["cpu"], rapl_root="/nonexistent").components()
    ['cpu', 'ram']
    """
    devices = list(devices)
    reason = None
    try:
        indices = gpu_indices_for(devices, os.environ.get("CUDA_VISIBLE_DEVICES"))
    except EnergyError as exc:
        indices, reason = [], f"GPU energy is not included: {exc}"
    meter = auto_meter(
        gpu_indices=indices or None,
        tdp_w=tdp_w,
        cpu_model=cpu_model,
        rapl_root=rapl_root,
        nvml=nvml,
    )
    if reason is not None:
        meter.standing_warnings.append(reason)
        warnings.warn(reason, EnergyFallbackWarning, stacklevel=2)
    return meter
