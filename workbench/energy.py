"""Energy meters behind one begin/end-window interface, and joules per inference.

Every meter has two verbs: ``begin_window(name)`` and ``end_window(name) -> EnergyReading``. A
reading gives joules in total and by component, the window's duration, average watts, and how
each figure was obtained: ``method`` is ``"measured"`` when every component comes from a hardware
counter or sensor, ``"estimated"`` otherwise; ``method_by_component`` says it per component.

Meters
------
``RaplMeter``
    CPU package and DRAM energy counters under ``/sys/class/powercap`` (Intel and AMD). Measured,
    whole socket: every process on the machine counts. Components ``cpu_package:<socket>`` and
    ``dram:<socket>``.
``NvmlMeter``
    NVIDIA GPUs through NVML (``nvidia-ml-py``): the total-energy counter where the GPU has one,
    else power sampled by a background thread (20 Hz by default) integrated by the trapezoid rule.
    Measured, whole GPU. Components ``gpu:<index>``.
``EstimateMeter``
    No counters needed: CPU power from a TDP (user setting, else the shipped table
    ``workbench/data/cpu_tdp.csv``, else 4 W per logical core) scaled by this process's CPU
    utilisation, plus 0.375 W per GB of this process's resident memory. Estimated, this process's
    share. Components ``cpu`` and ``ram``.
``CodeCarbonMeter``
    CodeCarbon's ``OfflineEmissionsTracker`` (optional extra ``energy``), process mode, no network,
    no files unless asked. Components ``cpu``, ``ram`` and, with GPUs, ``gpu``.
``CompositeMeter``, ``FallbackMeter``, ``auto_meter()``
    Several meters as one (components side by side); a meter that, if its primary fails inside a
    window, warns and returns the estimate for that window; and the meter this machine supports.

Results
-------
``idle_baseline(meter)`` measures idle watts; ``reading.with_idle(watts)`` then gives both gross
(``energy_j``) and net-of-idle (``energy_j_net``) energy. ``per_inference(reading, items)`` turns a
reading into ``EnergyFigures`` (J per item, W, Wh and gCO2e per million items) whose ``to_dict()``
is flat for the run store's metrics. Grid intensities come from ``workbench.carbon``.

Modules: ``energy_rapl``, ``energy_nvml``, ``energy_estimate``, ``energy_codecarbon`` hold the
meters; import everything from here. Method labels, measurement limits and the CodeCarbon
comparison are explained in ``docs/energy.md``.

Example
-------
>>> from workbench.energy import EstimateMeter, per_inference
>>> meter = EstimateMeter(tdp_w=10.0)
>>> meter.begin_window("predict")
>>> _ = sum(i * i for i in range(10_000))
>>> reading = meter.end_window("predict")
>>> reading.method, sorted(reading.energy_j_by_component)
('estimated', ['cpu', 'ram'])
>>> per_inference(reading, items=100).to_dict()["energy_method"]
'estimated'
"""

from __future__ import annotations

import contextlib
import importlib
import math
import threading
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.carbon import carbon_intensity, co2e_g
from workbench.errors import BackendUnavailableError, ConfigError, EnergyError, WorkbenchError

if TYPE_CHECKING:
    from workbench.energy_codecarbon import (
        CODECARBON_CSV_COLUMNS,
        CodeCarbonMeter,
        codecarbon_row,
        write_codecarbon_csv,
    )
    from workbench.energy_estimate import (
        DEFAULT_W_PER_LOGICAL_CORE,
        RAM_W_PER_GB,
        EstimateMeter,
        cpu_tdp,
        detect_cpu_model,
    )
    from workbench.energy_nvml import NvmlMeter
    from workbench.energy_rapl import RAPL_ROOT, RaplMeter

MEASURED = "measured"
ESTIMATED = "estimated"
J_PER_WH = 3600.0

# Each meter lives in its own module (which imports the interface from here); importing them
# here lazily keeps `from workbench.energy import RaplMeter` working without an import cycle.
_LAZY = {
    "RaplMeter": "workbench.energy_rapl",
    "RAPL_ROOT": "workbench.energy_rapl",
    "NvmlMeter": "workbench.energy_nvml",
    "EstimateMeter": "workbench.energy_estimate",
    "cpu_tdp": "workbench.energy_estimate",
    "detect_cpu_model": "workbench.energy_estimate",
    "RAM_W_PER_GB": "workbench.energy_estimate",
    "DEFAULT_W_PER_LOGICAL_CORE": "workbench.energy_estimate",
    "CodeCarbonMeter": "workbench.energy_codecarbon",
    "codecarbon_row": "workbench.energy_codecarbon",
    "write_codecarbon_csv": "workbench.energy_codecarbon",
    "CODECARBON_CSV_COLUMNS": "workbench.energy_codecarbon",
}

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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class EnergyFallbackWarning(UserWarning):
    """A meter failed or is unavailable; an estimate stands in for what it would have measured."""


# --------------------------------------------------------------------------------------- results


@dataclass
class EnergyReading:
    """The energy of one measurement window.

    Attributes
    ----------
    duration_s : wall-clock length of the window, in seconds.
    energy_j : total energy in joules, the sum of ``energy_j_by_component``.
    energy_j_by_component : joules per component (``cpu_package:0``, ``dram:0``, ``gpu:0``,
        ``cpu``, ``ram``).
    power_w_avg : ``energy_j / duration_s``, in watts.
    method : ``"measured"`` when every component was measured, else ``"estimated"``.
    method_by_component : ``"measured"`` or ``"estimated"`` per component.
    meter : name of the meter that produced the reading.
    warnings : what went wrong or limits the figures (a fallback, a missing GPU, ...).
    notes : how each figure was obtained (counters used, TDP and its source, utilisation).
    idle_power_w : idle baseline in watts (see ``with_idle``); 0 means none subtracted.
    """

    duration_s: float
    energy_j: float
    energy_j_by_component: dict[str, float]
    power_w_avg: float
    method: str
    method_by_component: dict[str, str]
    meter: str
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    idle_power_w: float = 0.0

    @classmethod
    def from_components(
        cls,
        duration_s: float,
        energy_j_by_component: dict[str, float],
        method_by_component: dict[str, str],
        meter: str,
        warnings: Iterable[str] = (),
        notes: Iterable[str] = (),
    ) -> EnergyReading:
        """Build a reading: total, average power and overall method follow from the parts."""
        total = float(sum(energy_j_by_component.values()))
        methods = list(method_by_component.values())
        overall = MEASURED if methods and all(m == MEASURED for m in methods) else ESTIMATED
        return cls(
            duration_s=duration_s,
            energy_j=total,
            energy_j_by_component=dict(energy_j_by_component),
            power_w_avg=total / duration_s if duration_s > 0 else 0.0,
            method=overall,
            method_by_component=dict(method_by_component),
            meter=meter,
            warnings=list(warnings),
            notes=list(notes),
        )

    @property
    def energy_j_net(self) -> float:
        """Energy above the idle baseline, in joules (never below zero)."""
        return max(self.energy_j - self.idle_power_w * self.duration_s, 0.0)

    def with_idle(self, idle_power_w: float) -> EnergyReading:
        """A copy with an idle baseline (watts, e.g. from ``idle_baseline``) to subtract."""
        if not (idle_power_w >= 0 and math.isfinite(idle_power_w)):
            raise ConfigError(
                f"idle_power_w={idle_power_w!r} is not a power; pass watts >= 0 "
                "(measure them with idle_baseline(meter))"
            )
        return replace(self, idle_power_w=float(idle_power_w))

    def to_dict(self) -> dict[str, Any]:
        """Flat dict: totals, then ``energy_j.<component>`` and ``method.<component>``."""
        row: dict[str, Any] = {
            "duration_s": self.duration_s,
            "energy_j": self.energy_j,
            "energy_j_net": self.energy_j_net,
            "power_w_avg": self.power_w_avg,
            "idle_power_w": self.idle_power_w,
            "method": self.method,
            "meter": self.meter,
        }
        row.update({f"energy_j.{k}": v for k, v in self.energy_j_by_component.items()})
        row.update({f"method.{k}": v for k, v in self.method_by_component.items()})
        row["warnings"] = "; ".join(self.warnings)
        return row


def combine(readings: Sequence[EnergyReading], duration_s: float, meter: str) -> EnergyReading:
    """Readings of different components over the same window, as one reading."""
    energy: dict[str, float] = {}
    methods: dict[str, str] = {}
    for reading in readings:
        for component, joules in reading.energy_j_by_component.items():
            if component in energy:
                raise EnergyError(
                    f"two meters both report component {component!r}; combine meters that "
                    "measure different parts (e.g. RaplMeter with NvmlMeter, not two CPU meters)"
                )
            energy[component] = joules
            methods[component] = reading.method_by_component[component]
    return EnergyReading.from_components(
        duration_s,
        energy,
        methods,
        meter,
        warnings=[w for r in readings for w in r.warnings],
        notes=[n for r in readings for n in r.notes],
    )


# ----------------------------------------------------------------------------------- interface


@dataclass
class Window:
    """Handle given by ``Meter.window``; ``reading`` is set when the ``with`` block ends."""

    name: str
    reading: EnergyReading | None = None


class Meter:
    """Base class: window bookkeeping and its errors; subclasses implement ``_begin``/``_end``.

    Windows are independent and may overlap or nest (each has its own name). ``standing_notes``
    and ``standing_warnings`` are added to every reading (``auto_meter`` uses them to say which
    hardware it could not use).
    """

    name = "meter"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, tuple[Any, float] | None] = {}
        self._ended: set[str] = set()
        self.standing_notes: list[str] = []
        self.standing_warnings: list[str] = []

    def begin_window(self, name: str) -> None:
        """Start measuring a window called ``name``."""
        with self._lock:
            if name in self._open:
                raise EnergyError(
                    f"energy window {name!r} is already open on the {self.name} meter; end it "
                    f"with end_window({name!r}) first, or give the new window another name"
                )
            self._open[name] = None
            self._ended.discard(name)
        try:
            token = self._begin(name)
        except BaseException:
            with self._lock:
                del self._open[name]
            raise
        with self._lock:
            self._open[name] = (token, time.perf_counter())

    def end_window(self, name: str) -> EnergyReading:
        """Stop measuring window ``name`` and return its reading."""
        end = time.perf_counter()
        with self._lock:
            state = self._open.get(name)
            if state is None:
                raise EnergyError(self._not_open_message(name))
            del self._open[name]
            self._ended.add(name)
        token, start = state
        reading = self._end(name, token, end - start)
        reading.notes.extend(self.standing_notes)
        reading.warnings.extend(self.standing_warnings)
        return reading

    def _not_open_message(self, name: str) -> str:
        if name in self._ended:
            return (
                f"energy window {name!r} was already ended on the {self.name} meter; call "
                f"begin_window({name!r}) again to measure a new window"
            )
        if name in self._open:
            return f"energy window {name!r} is still being begun on another thread; end it after"
        others = ", ".join(map(repr, sorted(self._open)))
        others = f" (open windows: {others})" if others else ""
        return (
            f"energy window {name!r} was never begun on the {self.name} meter{others}; call "
            f"begin_window({name!r}) before end_window({name!r})"
        )

    @contextlib.contextmanager
    def window(self, name: str) -> Iterator[Window]:
        """``with meter.window("x") as w: ...``, then ``w.reading``; ends the window on errors."""
        handle = Window(name)
        self.begin_window(name)
        try:
            yield handle
        finally:
            handle.reading = self.end_window(name)

    def components(self) -> list[str]:
        """The components this meter reports, where known before a window ends."""
        return []

    def close(self) -> None:
        """Release hardware handles and threads; the meter is not used afterwards."""

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _begin(self, name: str) -> Any:
        raise NotImplementedError

    def _end(self, name: str, token: Any, duration_s: float) -> EnergyReading:
        raise NotImplementedError


# ------------------------------------------------------------------------------------ combinators


class CompositeMeter(Meter):
    """Several meters of different components as one (e.g. RAPL for the CPU, NVML for the GPU).

    If one meter fails at a window's end the others are still ended, then the first error is
    raised (wrap the composite in ``FallbackMeter`` to get an estimate instead).
    """

    def __init__(self, meters: Sequence[Meter]) -> None:
        super().__init__()
        if not meters:
            raise ConfigError("CompositeMeter needs at least one meter; pass a list of meters")
        self.meters = list(meters)
        self.name = "+".join(m.name for m in self.meters)

    def _begin(self, name: str) -> None:
        begun: list[Meter] = []
        try:
            for meter in self.meters:
                meter.begin_window(name)
                begun.append(meter)
        except BaseException:
            for meter in begun:
                with contextlib.suppress(Exception):
                    meter.end_window(name)
            raise

    def _end(self, name: str, token: None, duration_s: float) -> EnergyReading:
        readings, errors = [], []
        for meter in self.meters:
            try:
                readings.append(meter.end_window(name))
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        return combine(readings, duration_s, self.name)

    def components(self) -> list[str]:
        return [c for meter in self.meters for c in meter.components()]

    def close(self) -> None:
        for meter in self.meters:
            meter.close()


class FallbackMeter(Meter):
    """A meter that never fails mid-window: if ``primary`` raises, the ``fallback`` estimate for
    the same window is returned, with a warning (``EnergyFallbackWarning`` and in the reading).

    The fallback (an ``EstimateMeter`` unless given) runs alongside every window. Misuse of
    windows (ended twice, never begun) still raises ``EnergyError``. An estimate covers CPU and
    RAM only: if the primary measured a GPU, that GPU's energy is missing from a fallback
    reading, and its warning says so.
    """

    def __init__(self, primary: Meter, fallback: Meter | None = None) -> None:
        super().__init__()
        self.primary = primary
        if fallback is None:
            from workbench.energy_estimate import EstimateMeter

            fallback = EstimateMeter()
        self.fallback = fallback
        self.name = primary.name

    def components(self) -> list[str]:
        return self.primary.components()

    def _failed(self, name: str, stage: str, exc: BaseException) -> str:
        message = (
            f"the {self.primary.name} energy meter failed {stage} window {name!r} "
            f"({type(exc).__name__}: {exc}); this window's energy is the {self.fallback.name} "
            "meter's instead"
        )
        covered = set(self.fallback.components())
        lost = [c for c in self.primary.components() if c.startswith("gpu") and c not in covered]
        if lost:
            message += f", which does not include {', '.join(lost)}"
        warnings.warn(message, EnergyFallbackWarning, stacklevel=4)
        return message

    def _begin(self, name: str) -> str | None:
        self.fallback.begin_window(name)
        try:
            self.primary.begin_window(name)
        except Exception as exc:
            return self._failed(name, "at the start of", exc)
        return None

    def _end(self, name: str, failure: str | None, duration_s: float) -> EnergyReading:
        if failure is None:
            try:
                reading = self.primary.end_window(name)
            except Exception as exc:
                failure = self._failed(name, "during", exc)
            else:
                with contextlib.suppress(Exception):
                    self.fallback.end_window(name)
                return reading
        backup = self.fallback.end_window(name)
        return replace(
            backup,
            meter=f"{self.fallback.name} (fallback for {self.primary.name})",
            warnings=[*backup.warnings, failure],
        )

    def close(self) -> None:
        self.primary.close()
        self.fallback.close()


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
    from workbench.energy_estimate import EstimateMeter
    from workbench.energy_nvml import NvmlMeter
    from workbench.energy_rapl import RaplMeter

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


def idle_baseline(meter: Meter, seconds: float = 1.0) -> float:
    """Average watts the meter reads while this process sleeps for ``seconds``.

    Pass the result to ``reading.with_idle`` or ``per_inference(idle_power_w=...)`` to get
    net-of-idle energy. With ``RaplMeter``/``NvmlMeter`` it is the hardware's idle draw (plus
    whatever else runs); with ``EstimateMeter`` it is mostly the RAM share.

    Example
    -------
    >>> from workbench.energy import EstimateMeter
    >>> idle_baseline(EstimateMeter(tdp_w=8.0), seconds=0.05) >= 0
    True
    """
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ConfigError(f"seconds={seconds!r} is not a duration; pass seconds > 0 (e.g. 1.0)")
    name = f"idle-baseline-{uuid.uuid4().hex[:8]}"
    meter.begin_window(name)
    time.sleep(seconds)
    return meter.end_window(name).power_w_avg


# -------------------------------------------------------------------------------- per inference


@dataclass(frozen=True)
class EnergyFigures:
    """Energy and carbon per inference for one measured window.

    ``*_net`` figures subtract the idle baseline (``idle_power_w x duration_s``) first.
    Carbon figures use ``g_co2e_per_kwh`` (source in ``carbon_source``).
    """

    items: int
    duration_s: float
    energy_j: float
    energy_j_per_item: float
    energy_j_per_item_net: float
    energy_j_per_item_by_component: dict[str, float]
    power_w_avg: float
    idle_power_w: float
    wh_per_million: float
    wh_per_million_net: float
    g_co2e_per_million: float
    g_co2e_per_million_net: float
    g_co2e_per_kwh: float
    carbon_source: str
    method: str
    method_by_component: dict[str, str]
    meter: str
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Flat metrics for the run store (``energy_j_per_item``, ``energy_method``, ...)."""
        row: dict[str, Any] = {
            "energy_j_per_item": self.energy_j_per_item,
            "energy_j_per_item_net": self.energy_j_per_item_net,
            "energy_method": self.method,
            "power_w_avg": self.power_w_avg,
            "idle_power_w": self.idle_power_w,
            "energy_wh_per_1m": self.wh_per_million,
            "energy_wh_per_1m_net": self.wh_per_million_net,
            "co2e_g_per_1m": self.g_co2e_per_million,
            "co2e_g_per_1m_net": self.g_co2e_per_million_net,
            "carbon_g_per_kwh": self.g_co2e_per_kwh,
            "carbon_source": self.carbon_source,
            "energy_meter": self.meter,
            "energy_items": self.items,
            "energy_duration_s": self.duration_s,
        }
        for component, joules in self.energy_j_per_item_by_component.items():
            row[f"energy_j_per_item.{component}"] = joules
        for component, method in self.method_by_component.items():
            row[f"energy_method.{component}"] = method
        row["energy_warnings"] = "; ".join(self.warnings)
        return row


def per_inference(
    reading: EnergyReading,
    items: int,
    idle_power_w: float | None = None,
    g_co2e_per_kwh: float | None = None,
    *,
    region: str | None = None,
) -> EnergyFigures:
    """Joules, watts, Wh and gCO2e per inference from a window that ran ``items`` inferences.

    ``idle_power_w`` defaults to the reading's own (``reading.with_idle``), else 0.
    ``g_co2e_per_kwh`` defaults to the grid intensity of ``region`` (``workbench.carbon``;
    ``None`` is the world average).

    Example
    -------
    >>> r = EnergyReading.from_components(2.0, {"cpu": 10.0}, {"cpu": "measured"}, "rapl")
    >>> f = per_inference(r, items=1000, idle_power_w=1.0, g_co2e_per_kwh=360.0)
    >>> f.energy_j_per_item, f.energy_j_per_item_net, f.wh_per_million, f.g_co2e_per_million
    (0.01, 0.008, 2.7777777777777777, 1.0)
    """
    if isinstance(items, bool) or not isinstance(items, int) or items <= 0:
        raise ConfigError(
            f"items={items!r} is not a count of inferences; pass the number of items the "
            "window processed (an int > 0)"
        )
    idle = reading.idle_power_w if idle_power_w is None else idle_power_w
    reading = reading.with_idle(idle)
    if g_co2e_per_kwh is None:
        g_co2e_per_kwh, source = carbon_intensity(region)
    elif g_co2e_per_kwh >= 0 and math.isfinite(g_co2e_per_kwh):
        source = "user setting g_co2e_per_kwh"
    else:
        raise ConfigError(
            f"g_co2e_per_kwh={g_co2e_per_kwh!r} is not a grid intensity; pass grams CO2e per kWh "
            "(>= 0), or a region from workbench.carbon"
        )
    per_item = reading.energy_j / items
    per_item_net = reading.energy_j_net / items
    return EnergyFigures(
        items=items,
        duration_s=reading.duration_s,
        energy_j=reading.energy_j,
        energy_j_per_item=per_item,
        energy_j_per_item_net=per_item_net,
        energy_j_per_item_by_component={
            k: v / items for k, v in reading.energy_j_by_component.items()
        },
        power_w_avg=reading.power_w_avg,
        idle_power_w=idle,
        wh_per_million=per_item * 1e6 / J_PER_WH,
        wh_per_million_net=per_item_net * 1e6 / J_PER_WH,
        g_co2e_per_million=co2e_g(per_item * 1e6, g_co2e_per_kwh),
        g_co2e_per_million_net=co2e_g(per_item_net * 1e6, g_co2e_per_kwh),
        g_co2e_per_kwh=float(g_co2e_per_kwh),
        carbon_source=source,
        method=reading.method,
        method_by_component=dict(reading.method_by_component),
        meter=reading.meter,
        warnings=tuple(reading.warnings),
    )
