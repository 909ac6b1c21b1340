"""``auto_meter()``: the best meter this machine allows (RAPL, NVML), with the estimate behind it.

>>> from workbench.energy import auto_meter
>>> auto_meter(rapl_root="/nonexistent").name
'estimate'
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
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
