"""Energy and carbon: meters behind one begin/end-window interface, and joules per inference.

Every meter has two verbs, ``begin_window(name)`` and ``end_window(name) -> EnergyReading``
(:mod:`workbench.energy.base`). One module per meter:

- ``RaplMeter`` (:mod:`~workbench.energy.rapl`): CPU package and DRAM counters under
  ``/sys/class/powercap``. Measured, whole socket.
- ``NvmlMeter`` (:mod:`~workbench.energy.nvml`): NVIDIA GPUs through NVML, the total-energy
  counter or power sampled at 20 Hz. Measured, whole GPU.
- ``EstimateMeter`` (:mod:`~workbench.energy.estimate`): CPU power from a TDP scaled by this
  process's CPU utilisation plus memory power per GB resident. Estimated, this process's share.
- ``CodeCarbonMeter`` (:mod:`~workbench.energy.codecarbon`): CodeCarbon's offline tracker
  (extra ``energy``).
- ``auto_meter()`` (:mod:`~workbench.energy.auto`): the best this machine allows, with the
  estimate behind it (``FallbackMeter``).

``per_inference(reading, items)`` (:mod:`~workbench.energy.figures`) turns a reading into
J/inference, W, Wh and gCO2e per million; grid intensities come from
:mod:`~workbench.energy.carbon`.
Method labels and limits are explained in ``docs/energy.md``.

Example
-------
>>> from workbench.energy import EstimateMeter, per_inference
>>> meter = EstimateMeter(tdp_w=10.0)
>>> meter.begin_window("predict")
>>> _ = sum(i * i for i in range(10_000))
>>> per_inference(meter.end_window("predict"), items=100).to_dict()["energy_method"]
'estimated'
"""

from workbench.energy.auto import auto_meter
from workbench.energy.base import (
    CompositeMeter,
    EnergyFallbackWarning,
    EnergyReading,
    Meter,
    Window,
    combine,
    idle_baseline,
)
from workbench.energy.codecarbon import (
    CODECARBON_CSV_COLUMNS,
    CodeCarbonMeter,
    codecarbon_row,
    write_codecarbon_csv,
)
from workbench.energy.estimate import (
    DEFAULT_W_PER_LOGICAL_CORE,
    RAM_W_PER_GB,
    EstimateMeter,
    cpu_tdp,
    detect_cpu_model,
)
from workbench.energy.fallback import FallbackMeter
from workbench.energy.figures import EnergyFigures, per_inference
from workbench.energy.nvml import NvmlMeter
from workbench.energy.rapl import RAPL_ROOT, RaplMeter
from workbench.provenance import ESTIMATED, MEASURED

__all__ = [
    "CODECARBON_CSV_COLUMNS",
    "DEFAULT_W_PER_LOGICAL_CORE",
    "ESTIMATED",
    "MEASURED",
    "RAM_W_PER_GB",
    "RAPL_ROOT",
    "CodeCarbonMeter",
    "CompositeMeter",
    "EnergyFallbackWarning",
    "EnergyFigures",
    "EnergyReading",
    "EstimateMeter",
    "FallbackMeter",
    "Meter",
    "NvmlMeter",
    "RaplMeter",
    "Window",
    "auto_meter",
    "codecarbon_row",
    "combine",
    "cpu_tdp",
    "detect_cpu_model",
    "idle_baseline",
    "per_inference",
    "write_codecarbon_csv",
]
