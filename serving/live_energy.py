"""Live energy: the runtime meters itself while it serves, with the meters that exist where it runs.

Meters (:func:`discover_meters` finds them at start):

- ``rapl``: the CPU package and DRAM counters under ``/sys/class/powercap`` (env
  ``SERVING_RAPL_ROOT`` points elsewhere, e.g. at a test's tree), in microjoules, unwrapped at
  ``max_energy_range_uj``. Measured, whole socket (every process on the machine counts);
  components ``cpu_package:N`` and ``dram:N`` (``core``/``uncore`` lie inside the package and
  ``psys`` is the platform, so they are not summed).
- ``nvml``: each NVIDIA GPU's total-energy counter (millijoules, Volta and newer), else its power
  sampled at every tick. Measured, whole GPU; components ``gpu:N``. Needs ``pynvml``, which is
  optional and never a requirement of the bundle; env ``SERVING_NVML_MODULE`` names another
  module with the same functions (a test's fake), or ``none`` to skip NVML.
- ``process-cpu``, where RAPL is absent or unreadable: this process's CPU seconds
  (``time.process_time``, user + system, every thread) x watts per logical core. The watts are
  the bundle's ``energy.cpu_tdp_w / energy.logical_cores`` (written at export from the
  workbench's TDP table) when this machine's CPU is the one the bundle names, else 4 W per
  logical core. Estimated,
  this process's share only; component ``cpu``.

:class:`LiveMeter` reads every meter each ``interval_s`` on the event loop (a sysfs read or
``time.process_time()``: microseconds) and at each ``/metrics`` scrape, so the energy and the
prediction counts of one exposition are from the same moment. It adds each interval's joules to
``serving_live_energy_joules_total`` and ``joules x idle fraction`` to
``serving_live_idle_energy_joules_total``, where the idle fraction is the share of the interval
during which no inference request was in flight (:class:`BusyClock`, two clock reads per busy
period: the only per-request work). See :mod:`serving.metrics` for the series.

Example
-------
>>> cpu = [0.0]
>>> meter = ProcessCpuEstimate(w_per_core=2.5, cpu_seconds=lambda: cpu[0])
>>> cpu[0] = 4.0
>>> meter.delta(1.0)
{'cpu': 10.0}
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import math
import os
import platform
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from serving.manifest import Manifest
from serving.metrics import ServingMetrics

MEASURED, ESTIMATED = "measured", "estimated"
RAPL_ROOT = "/sys/class/powercap"
DEFAULT_W_PER_LOGICAL_CORE = 4.0
"""CPU watts per logical core when the bundle carries no TDP for this CPU (CodeCarbon's default,
as in the workbench's estimate)."""
NO_NVML = ("", "none", "off")
_RAPL_ZONE = re.compile(r"(?:intel|amd)-rapl:(\d+)(?::(\d+))?")
log = logging.getLogger("serving")


class MeterUnavailable(Exception):
    """A meter that does not exist or cannot be read here; the message says why and the fix."""


class Meter(Protocol):
    """What :class:`LiveMeter` reads: joules per component since the previous call."""

    meter: str
    method: str

    def components(self) -> list[str]: ...

    def delta(self, dt: float) -> dict[str, float]: ...


class BusyClock:
    """Seconds during which at least one request was in flight (event-loop thread only).

    >>> t = [0.0]
    >>> busy = BusyClock(lambda: t[0])
    >>> busy.enter(); t[0] = 1.0; busy.enter(); t[0] = 3.0; busy.leave(); busy.leave()
    >>> t[0] = 5.0
    >>> busy.busy_s(t[0])
    3.0
    """

    __slots__ = ("_busy_s", "_clock", "_since", "in_flight")

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.in_flight = 0
        self._since = 0.0
        self._busy_s = 0.0
        self._clock = clock

    def enter(self, now: float | None = None) -> None:
        """A request starts (at ``now``, a reading of this clock the caller already took)."""
        if self.in_flight == 0:
            self._since = self._clock() if now is None else now
        self.in_flight += 1

    def leave(self, now: float | None = None) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._busy_s += (self._clock() if now is None else now) - self._since

    def busy_s(self, now: float) -> float:
        """Busy seconds up to ``now`` (a reading of the same clock), the open period included."""
        return self._busy_s + (now - self._since if self.in_flight else 0.0)


# -- the meters --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RaplZone:
    """One summed RAPL domain: its component name, counter file and counter range."""

    component: str
    energy_path: Path
    max_energy_range_uj: int


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except PermissionError:
        raise MeterUnavailable(
            f"cannot read {path}: permission denied (root only since Linux 5.10); for measured "
            f"CPU energy grant read access (`sudo chmod o+r {path.parent.parent}/*/energy_uj`)"
        ) from None
    except (OSError, ValueError) as exc:
        raise MeterUnavailable(f"cannot read the RAPL counter {path} ({exc})") from None


def rapl_zones(root: Path) -> list[RaplZone]:
    """The package and DRAM zones under ``root`` (raises :class:`MeterUnavailable` if none)."""
    zones: list[RaplZone] = []
    entries = sorted(root.iterdir()) if root.is_dir() else []
    for path in entries:
        match = _RAPL_ZONE.fullmatch(path.name)
        if not match:
            continue
        try:
            kind = (path / "name").read_text().strip()
        except OSError:
            continue
        socket = match.group(1)
        component = {"dram": f"dram:{socket}"}.get(kind)
        if kind.startswith("package"):
            component = f"cpu_package:{socket}"
        if component is None or any(z.component == component for z in zones):
            continue
        zones.append(
            RaplZone(component, path / "energy_uj", _read_int(path / "max_energy_range_uj"))
        )
    if not zones:
        raise MeterUnavailable(f"no RAPL package or DRAM counters under {root}")
    return zones


class RaplCounters:
    """RAPL package and DRAM counters; :meth:`delta` unwraps one wrap-around per interval."""

    meter, method = "rapl", MEASURED

    def __init__(self, root: str | Path = RAPL_ROOT) -> None:
        self.zones = rapl_zones(Path(root))
        self._last = {z.component: _read_int(z.energy_path) for z in self.zones}

    def components(self) -> list[str]:
        return [z.component for z in self.zones]

    def delta(self, dt: float) -> dict[str, float]:
        out = {}
        for z in self.zones:
            now, last = _read_int(z.energy_path), self._last[z.component]
            uj = now - last if now >= last else now + z.max_energy_range_uj - last
            self._last[z.component] = now
            out[z.component] = uj / 1e6
        return out


class NvmlCounters:
    """Every GPU NVML sees: the total-energy counter (mJ), else sampled power (trapezoids)."""

    meter, method = "nvml", MEASURED

    def __init__(self, nvml: Any) -> None:
        try:
            nvml.nvmlInit()
            count = int(nvml.nvmlDeviceGetCount())
            self._handles = {f"gpu:{i}": nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)}
        except Exception as exc:  # NVMLError: no driver, no GPU
            raise MeterUnavailable(f"NVML did not start ({exc}): no GPU energy") from None
        if not self._handles:
            raise MeterUnavailable("NVML sees no GPU: no GPU energy")
        self._nvml = nvml
        self._last_mj: dict[str, int | None] = {}
        self._last_w: dict[str, float] = {}
        for component, handle in self._handles.items():
            try:
                self._last_mj[component] = int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
            except Exception:  # an older GPU without the counter: integrate its power
                self._last_mj[component] = None
                self._last_w[component] = nvml.nvmlDeviceGetPowerUsage(handle) / 1e3

    def components(self) -> list[str]:
        return list(self._handles)

    def delta(self, dt: float) -> dict[str, float]:
        out = {}
        for component, handle in self._handles.items():
            last = self._last_mj[component]
            if last is None:
                watts = self._nvml.nvmlDeviceGetPowerUsage(handle) / 1e3
                out[component] = (watts + self._last_w[component]) / 2 * dt
                self._last_w[component] = watts
                continue
            now = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
            out[component] = max(now - last, 0) / 1e3  # a driver reload restarts it from 0
            self._last_mj[component] = now
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._nvml.nvmlShutdown()


def process_cpu_s() -> float:
    """This process's CPU seconds, user + system, every thread (``CLOCK_PROCESS_CPUTIME_ID``:
    nanoseconds, where ``os.times`` counts in 10 ms ticks that leave a 1 s window nearly empty)."""
    return time.process_time()


class ProcessCpuEstimate:
    """``joules = CPU seconds of this process x w_per_core``: the estimate where RAPL is not."""

    meter, method = "process-cpu", ESTIMATED

    def __init__(self, w_per_core: float, cpu_seconds: Callable[[], float] = process_cpu_s) -> None:
        self.w_per_core = w_per_core
        self._cpu_seconds = cpu_seconds
        self._last = cpu_seconds()

    def components(self) -> list[str]:
        return ["cpu"]

    def delta(self, dt: float) -> dict[str, float]:
        now = self._cpu_seconds()
        spent, self._last = max(now - self._last, 0.0), now
        return {"cpu": spent * self.w_per_core}


def detect_cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else ``platform.processor()``), as the
    workbench names it in the bundle's ``energy.cpu_model``."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def watts_per_logical_core(
    manifests: Sequence[Manifest], cpu_model: str | None = None
) -> tuple[float, str]:
    """Watts per logical core for the estimate, and where they came from.

    >>> from serving.manifest import Energy, Manifest, ModelFile
    >>> m = Manifest("m", (ModelFile("m", "m.onnx"),), energy=Energy(40.0, "X 1", 8, "table"))
    >>> watts_per_logical_core([m], cpu_model="X 1")[0]
    5.0
    >>> watts_per_logical_core([m], cpu_model="Y 2")[0]
    4.0
    """
    here = detect_cpu_model() if cpu_model is None else cpu_model
    default = DEFAULT_W_PER_LOGICAL_CORE
    for m in manifests:
        e = m.energy
        if e.cpu_tdp_w is None or not e.logical_cores:
            continue
        if e.cpu_model and e.cpu_model != here:
            return default, (
                f"the bundle's TDP is for {e.cpu_model!r} but this CPU is {here!r}: "
                f"{default:g} W per logical core; re-export on this machine for its TDP"
            )
        watts = e.cpu_tdp_w / e.logical_cores
        return watts, (
            f"{e.cpu_tdp_w:g} W / {e.logical_cores} logical cores = {watts:g} W per logical core "
            f"({e.tdp_source or 'the bundle'})"
        )
    return default, (
        f"the bundle has no energy.cpu_tdp_w: {default:g} W per logical core; re-export it with "
        "this workbench for its CPU's TDP"
    )


def discover_meters(
    manifests: Sequence[Manifest], env: Mapping[str, str] = os.environ
) -> tuple[list[Meter], list[str]]:
    """The meters that exist here, and one note per meter missing or estimated (for the log).

    The CPU: RAPL, else the process-CPU estimate; the GPUs: NVML where it starts.
    """
    meters: list[Meter] = []
    notes: list[str] = []
    try:
        meters.append(RaplCounters(env.get("SERVING_RAPL_ROOT") or RAPL_ROOT))
    except MeterUnavailable as exc:
        notes.append(str(exc))
    name = env.get("SERVING_NVML_MODULE", "pynvml")
    if name.strip().lower() not in NO_NVML:
        try:
            module = importlib.import_module(name)
        except ImportError:
            notes.append(f"no GPU energy: {name} is not installed (pip install nvidia-ml-py)")
        else:
            try:
                meters.append(NvmlCounters(module))
            except MeterUnavailable as exc:
                notes.append(str(exc))
    if not any(m.meter == "rapl" for m in meters):
        watts, note = watts_per_logical_core(manifests)
        meters.append(ProcessCpuEstimate(watts))
        notes.append(f"CPU energy estimated from this process's CPU time: {note}")
    return meters, notes


# -- the sampler -------------------------------------------------------------------------------


class LiveMeter:
    """Reads ``meters`` every ``interval_s`` and at each scrape; exports the live series.

    Parameters
    ----------
    meters : from :func:`discover_meters` (or fakes with honest values, in tests).
    metrics : the server's metrics; the live series are added to them.
    interval_s : seconds between readings (short enough that RAPL wraps at most once).
    instance_usd_per_h : the instance price, for the live cost per 1M predictions.
    clock : monotonic seconds, shared with :attr:`busy`.
    notes : why meters are missing or estimated, logged when the meter starts.
    """

    def __init__(
        self,
        meters: Sequence[Meter],
        metrics: ServingMetrics,
        *,
        interval_s: float = 1.0,
        instance_usd_per_h: float | None = None,
        clock: Callable[[], float] = time.perf_counter,
        notes: Sequence[str] = (),
    ) -> None:
        if not (isinstance(interval_s, (int, float)) and interval_s > 0):
            raise ValueError(f"meter interval {interval_s!r} must be > 0 seconds")
        self.meters = list(meters)
        self.metrics, self.series = metrics, metrics.enable_live()
        self.interval_s, self.instance_usd_per_h = float(interval_s), instance_usd_per_h
        self.busy = BusyClock(clock)
        self._clock = clock
        self.notes = list(notes)
        methods = {m.method for m in self.meters}
        self.method = ESTIMATED if ESTIMATED in methods or not methods else MEASURED
        self.energy_j = 0.0
        self._last: tuple[float, float] | None = None  # (time, busy seconds) at the last reading
        self._started_at, self._predictions_at_start = 0.0, 0.0
        self._anchor: tuple[float, dict[tuple[str, ...], float]] = (0.0, {})
        self._handle: asyncio.TimerHandle | None = None
        self._failed: set[str] = set()
        for m in self.meters:
            for component in m.components():
                self.series.info.set((m.meter, m.method, component), 1)
                key = (component, m.method, m.meter)
                self.series.energy.inc(key, 0.0)
                self.series.idle_energy.inc(key, 0.0)


    @classmethod
    def for_endpoints(
        cls, endpoints: Sequence[Any], metrics: ServingMetrics, *, interval_s: float = 1.0
    ) -> LiveMeter:
        """The meters found on this machine for the bundles ``endpoints`` serve, priced at the
        first instance price their manifests give (``python -m serving`` and Ray Serve)."""
        manifests = [e.manifest for e in endpoints]
        meters, notes = discover_meters(manifests)
        prices = [
            m.cost.instance_usd_per_h for m in manifests if m.cost.instance_usd_per_h is not None
        ]
        return cls(
            meters,
            metrics,
            interval_s=interval_s,
            instance_usd_per_h=prices[0] if prices else None,
            notes=notes,
        )
    def describe(self) -> list[str]:
        """``meter/method/component`` of each series, for the start-up log line."""
        return [f"{m.meter}/{m.method}/{c}" for m in self.meters for c in m.components()]

    def begin(self) -> None:
        """Start counting now: what the meters counted before (warm-up) is dropped."""
        now = self._clock()
        for m in self.meters:
            self._delta(m, 0.0)
        self._last = (now, self.busy.busy_s(now))
        self._started_at, self._predictions_at_start = now, self._predictions()
        self._anchor = (now, dict(self.series.energy.values))
        self._update_gauges(now)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """:meth:`begin`, then read the meters every ``interval_s`` on ``loop``; log what it
        found (``{"msg": "live meter", "meters": [...], "notes": [...]}``)."""
        log.info(
            "live meter",
            extra={"meters": self.describe(), "interval_s": self.interval_s, "notes": self.notes},
        )
        self.begin()
        self._loop = loop
        self._handle = loop.call_later(self.interval_s, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._last is not None:
            self.sample()
        for m in self.meters:
            close = getattr(m, "close", None)
            if close is not None:
                close()

    def _tick(self) -> None:
        try:
            self.sample()
        finally:
            self._handle = self._loop.call_later(self.interval_s, self._tick)

    def sample(self) -> None:
        """Read every meter: add the interval's joules, and their idle share, to the counters."""
        if self._last is None:
            return  # not begun
        now = self._clock()
        last_t, last_busy = self._last
        dt = now - last_t
        if dt <= 0:  # the same moment: only the predictions can have moved
            self._update_gauges(now)
            return
        busy = self.busy.busy_s(now)
        idle = min(max(1.0 - (busy - last_busy) / dt, 0.0), 1.0)
        self._last = (now, busy)
        s = self.series
        for m in self.meters:
            for component, joules in self._delta(m, dt).items():
                key = (component, m.method, m.meter)
                s.energy.inc(key, joules)
                s.idle_energy.inc(key, joules * idle)
                self.energy_j += joules
        self._update_gauges(now)

    def _delta(self, m: Meter, dt: float) -> dict[str, float]:
        try:
            return m.delta(dt)
        except Exception as exc:  # a counter that vanished: keep serving, say it once
            if m.meter not in self._failed:
                self._failed.add(m.meter)
                log.warning(f"live meter {m.meter}: reading failed ({exc}); its energy pauses")
            return {}

    def _predictions(self) -> float:
        return float(sum(self.metrics.predictions.values.values()))

    def _update_gauges(self, now: float) -> None:
        s = self.series
        at, energy_then = self._anchor
        if now - at >= 0.5 * self.interval_s:  # power over about one interval, not a scrape's
            for key, joules in s.energy.values.items():
                s.power.set(key, (joules - energy_then.get(key, 0.0)) / (now - at))
            self._anchor = (now, dict(s.energy.values))
        n = self._predictions() - self._predictions_at_start
        s.energy_per_prediction.set((self.method,), self.energy_j / n if n else math.nan)
        if self.instance_usd_per_h is not None:
            hours = (now - self._started_at) / 3600
            cost = self.instance_usd_per_h * hours / n * 1e6 if n else math.nan
            s.cost_per_1m.set((MEASURED,), cost)
