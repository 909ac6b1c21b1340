"""The energy interface: ``Meter`` (two verbs, ``begin_window`` / ``end_window``), the
``EnergyReading`` it returns, and ``CompositeMeter`` (several meters as one; ``FallbackMeter`` is in
:mod:`workbench.energy.fallback`).

A reading gives joules in total and by component, the window's duration, average watts, and how
each figure was obtained: ``method`` is ``"measured"`` when every component comes from a hardware
counter or sensor, ``"estimated"`` otherwise; ``method_by_component`` says it per component. The
meters themselves live beside this module (``rapl``, ``nvml``, ``estimate``, ``codecarbon``) and
import it; :mod:`workbench.energy` exports them all.

Example
-------
>>> from workbench.energy import EstimateMeter
>>> meter = EstimateMeter(tdp_w=10.0)
>>> meter.begin_window("predict")
>>> _ = sum(i * i for i in range(10_000))
>>> reading = meter.end_window("predict")
>>> reading.method, sorted(reading.energy_j_by_component)
('estimated', ['cpu', 'ram'])
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from workbench.checks import number
from workbench.errors import ConfigError, EnergyError
from workbench.provenance import ESTIMATED, MEASURED


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
        idle = number("idle_power_w", idle_power_w, minimum=0,
                      fix="pass watts (measure them with idle_baseline(meter))")  # fmt: skip
        return replace(self, idle_power_w=idle)

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
    number("seconds", seconds, minimum=0, open_low=True, fix="pass a duration in seconds, e.g. 1.0")
    name = f"idle-baseline-{uuid.uuid4().hex[:8]}"
    meter.begin_window(name)
    time.sleep(seconds)
    return meter.end_window(name).power_w_avg
