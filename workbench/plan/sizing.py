"""Right-sizing: the cheapest serving configuration that meets a load and a p99 latency target.

Candidates are every hardware entry of an editable table (``workbench/data/hardware.csv``: name,
kind, cores, $/h, idle and max watts, an optional latency scale, sources) x every thread count with
a latency curve x every instance count that fits the entry's cores (``instances x threads <=
cores``; one instance per GPU). For each, :func:`right_size` finds the fewest machines whose
simulated p99 (a seeded Poisson trace at ``rate_per_s / machines`` through
:func:`workbench.plan.simulator.simulate`) meets the SLO with no drops and utilisation at most
``max_utilisation`` (headroom), then prices it:

- ``usd_per_million = machines x usd_per_h / (rate_per_s x 3600) x 1e6``;
- energy: each machine draws ``idle_w`` plus ``(max_w - idle_w)`` in proportion to the share of its
  cores busy (``threads / cores`` per busy instance on a CPU; the whole device on a GPU), the
  linear utilisation model of Cloud Carbon Footprint; ``kwh_per_million`` follows, always
  ``estimated``.

Latency on other hardware: the curve measured here is used as is for the entry named
``measured_on``; every other entry scales it by its ``latency_scale`` (``latency_scale=`` argument,
else the table's column) and is labelled ``estimated``. An entry with no scale is skipped with
the reason given (measure the model there, or set a scale).

Which constraint binds (``SizingResult.binding``): ``"slo"`` if a configuration whose capacity
bound was cheaper than the winner was ruled out, or needed more machines, because of the latency
target; else ``"capacity"`` if one machine fewer of the winner would drop requests or exceed
``max_utilisation``; else ``"cost"``: the winner is a single machine with slack in capacity and
latency, so its price is the floor. Each candidate's own ``binding`` says what stops one machine
fewer of it (``"cost"`` when it is one machine).

Example
-------
>>> from workbench.plan.batch_curve import BatchLatencyCurve
>>> curve = BatchLatencyCurve.from_points({1: 1.0, 8: 2.0}, method="measured", threads=1)
>>> result = right_size(curve, rate_per_s=3000, slo_p99_ms=20, requests=2000,
...                     server=ServerConfig(max_batch_rows=8))
>>> best = result.best
>>> best.hardware, best.threads, best.instances, best.machines, result.binding
('aws-c6i.large', 1, 2, 1, 'cost')
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from importlib import resources
from io import StringIO
from pathlib import Path

import pandas as pd

from workbench.checks import fraction, number, whole
from workbench.errors import ConfigError
from workbench.plan.batch_curve import BatchLatencyCurve
from workbench.plan.simulator import PowerModel, ServerConfig, simulate
from workbench.plan.traces import poisson_trace
from workbench.provenance import METHODS
from workbench.units import J_PER_KWH

HARDWARE_COLUMNS = (
    "name",
    "kind",
    "cores",
    "usd_per_h",
    "idle_w",
    "max_w",
    "latency_scale",
    "power_method",
    "source",
)
KINDS = ("cpu", "gpu")


@dataclass(frozen=True)
class HardwareEntry:
    """One row of the hardware table.

    Attributes
    ----------
    cores:
        Logical cores (vCPUs) for model threads.
    usd_per_h:
        Price of one machine per hour (typed in from a price list).
    idle_w, max_w:
        Machine power at 0 % and 100 % utilisation, watts.
    latency_scale:
        Service-time multiplier against the machine the curve was measured on (``None``:
        unknown; the entry is skipped unless a scale or the measured_on name is given).
    power_method:
        ``measured``, ``estimated`` or ``typed in``: where the watts come from.
    """

    name: str
    kind: str
    cores: int
    usd_per_h: float
    idle_w: float
    max_w: float
    latency_scale: float | None = None
    power_method: str = "estimated"
    source: str = ""


def load_hardware(path: str | Path | None = None) -> list[HardwareEntry]:
    """The hardware table: ``path``, or the shipped ``workbench/data/hardware.csv``.

    Every error names the file, line and field.
    """
    if path is None:
        text = resources.files("workbench").joinpath("data/hardware.csv").read_text("utf-8")
        label = "workbench/data/hardware.csv"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the hardware table {path}: {exc.strerror}") from exc
        label = str(path)
    reader = csv.DictReader(StringIO(text))
    missing = [c for c in HARDWARE_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ConfigError(
            f"{label}: missing columns {missing}; the header must be {','.join(HARDWARE_COLUMNS)}"
        )
    entries = [_entry(label, reader.line_num, row) for row in reader]
    if not entries:
        raise ConfigError(f"{label} has no hardware rows; add at least one")
    names = [e.name for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{label}: names {dupes} appear twice; give each row its own name")
    return entries


def _entry(label: str, line: int, row: dict[str, str | None]) -> HardwareEntry:
    name = (row.get("name") or "").strip()
    where = f"{label} line {line}" + (f" ({name})" if name else "")
    if not name:
        raise ConfigError(f"{where}: name is missing; give each row a name")

    def cell(field: str, *, required: bool = True, low: float = 0.0) -> float | None:
        text = (row.get(field) or "").strip()
        if not text:
            if required:
                raise ConfigError(f"{where}: {field} is missing; fill it in ({_FIELD_HELP[field]})")
            return None
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{where}: {field}={text!r} is not a number") from None
        if not math.isfinite(value) or value < low or (field == "latency_scale" and value <= 0):
            raise ConfigError(f"{where}: {field}={text} must be a finite number >= {low:g}")
        return value

    kind = (row.get("kind") or "").strip().lower()
    if kind not in KINDS:
        raise ConfigError(f"{where}: kind={kind!r} must be cpu or gpu")
    cores = cell("cores", low=1)
    if cores != int(cores):  # type: ignore[arg-type]
        raise ConfigError(f"{where}: cores={cores} must be a whole number")
    idle, peak = cell("idle_w"), cell("max_w")
    if peak < idle:  # type: ignore[operator]
        raise ConfigError(f"{where}: max_w={peak} is below idle_w={idle}")
    method = (row.get("power_method") or "estimated").strip()
    if method not in METHODS:
        raise ConfigError(
            f"{where}: power_method={method!r} must be measured, estimated or typed in"
        )
    return HardwareEntry(
        name=name,
        kind=kind,
        cores=int(cores),  # type: ignore[arg-type]
        usd_per_h=cell("usd_per_h"),  # type: ignore[arg-type]
        idle_w=idle,  # type: ignore[arg-type]
        max_w=peak,  # type: ignore[arg-type]
        latency_scale=cell("latency_scale", required=False),
        power_method=method,
        source=(row.get("source") or "").strip(),
    )


_FIELD_HELP = {
    "usd_per_h": "the machine's hourly price in USD from the provider's price list",
    "idle_w": "watts at idle; estimate from the TDP if not measured",
    "max_w": "watts at full load; the TDP is a common estimate",
    "cores": "logical cores (vCPUs)",
}


def hardware_frame(entries: Sequence[HardwareEntry]) -> pd.DataFrame:
    """The table as a DataFrame."""
    return pd.DataFrame([asdict(e) for e in entries])


@dataclass
class SizingCandidate:
    """One configuration tried: hardware x threads x instances per machine x machines."""

    hardware: str
    kind: str
    threads: int
    instances: int
    machines: int | None
    feasible: bool
    reason: str
    usd_per_h: float | None = None
    usd_per_million: float | None = None
    kwh_per_million: float | None = None
    latency_ms_p99: float | None = None
    utilisation: float | None = None
    mean_batch_size: float | None = None
    drop_rate: float | None = None
    binding: str | None = None
    latency_method: str = "estimated"
    energy_method: str = "estimated"


@dataclass
class SizingResult:
    """The cheapest feasible candidate (``best``, ``None`` if none meets the target), which
    constraint binds it, and every candidate considered with its reason."""

    rate_per_s: float
    slo_p99_ms: float
    best: SizingCandidate | None
    binding: str | None
    candidates: list[SizingCandidate]

    #: The columns of :meth:`to_frame` a sizing table shows (the CLI, the batching panel).
    SUMMARY_COLUMNS = (
        "hardware",
        "threads",
        "instances",
        "machines",
        "usd_per_million",
        "kwh_per_million",
        "latency_ms_p99",
        "utilisation",
        "binding",
        "latency_method",
    )

    def to_frame(self) -> pd.DataFrame:
        """Candidates, feasible first and cheapest first."""
        frame = pd.DataFrame([asdict(c) for c in self.candidates])
        return frame.sort_values(
            ["feasible", "usd_per_million", "kwh_per_million"],
            ascending=[False, True, True],
            na_position="last",
        ).reset_index(drop=True)


@dataclass(frozen=True)
class _Target:
    """What every candidate must meet, and how hard :func:`right_size` looks for it."""

    rate_per_s: float
    slo_p99_ms: float
    max_utilisation: float
    max_machines: int
    requests: int
    seed: int


@dataclass(frozen=True)
class _Plan:
    """One candidate to simulate: ``instances`` per machine of ``entry`` at ``threads`` each,
    with the curve scaled to the entry, and the price of its capacity bound (``bound_usd_per_h``).
    """

    bound_usd_per_h: float
    entry: HardwareEntry
    threads: int
    instances: int
    curve: BatchLatencyCurve

    def candidate(self, reason: str = "") -> SizingCandidate:
        """The candidate row, not yet sized."""
        e = self.entry
        return SizingCandidate(
            e.name, e.kind, self.threads, self.instances, None, False, reason,
            latency_method=self.curve.method,
        )  # fmt: skip


def right_size(
    curves: BatchLatencyCurve | Mapping[int, BatchLatencyCurve],
    rate_per_s: float,
    slo_p99_ms: float,
    *,
    hardware: Sequence[HardwareEntry] | None = None,
    server: ServerConfig | None = None,
    measured_on: str | None = None,
    latency_scale: Mapping[str, float] | None = None,
    max_utilisation: float = 0.8,
    max_machines: int = 256,
    requests: int = 5000,
    seed: int = 0,
) -> SizingResult:
    """The cheapest configuration serving ``rate_per_s`` with p99 <= ``slo_p99_ms``.

    Parameters
    ----------
    curves:
        The batch-latency curve, or one per thread count (``{1: curve_t1, 2: curve_t2}``).
    rate_per_s:
        The load to serve, requests per second.
    hardware:
        Entries to consider (default: the shipped table).
    server:
        Batch settings (max batch rows, delay, queue bound, overhead); ``instances`` is searched.
    measured_on:
        Name of the entry the curves were measured on (used unscaled, keeping their method).
    latency_scale:
        Per-entry service-time multipliers overriding the table's column.
    max_utilisation:
        Headroom: the busiest share of instance time a configuration may plan for.
    requests:
        Requests simulated per evaluation (the p99 of fewer is noisy).
    """
    target = _Target(rate_per_s, slo_p99_ms, max_utilisation, max_machines, requests, seed)
    _check_target(target)
    by_threads = _curves_by_threads(curves)
    entries = list(hardware) if hardware is not None else load_hardware()
    base = server or ServerConfig()
    scales = dict(latency_scale or {})
    unknown = sorted(set(scales) - {e.name for e in entries})
    if unknown or (measured_on is not None and measured_on not in {e.name for e in entries}):
        raise ConfigError(
            f"hardware names {unknown or [measured_on]} are not in the table; use names from it"
        )
    candidates: list[SizingCandidate] = []
    plans: list[_Plan] = []
    for entry in entries:
        scale = 1.0 if entry.name == measured_on else scales.get(entry.name, entry.latency_scale)
        if scale is None:
            candidates.append(
                SizingCandidate(
                    entry.name, entry.kind, 0, 0, None, False,
                    "no latency curve: measure the model on this hardware (measured_on=) or give "
                    "latency_scale",
                )
            )  # fmt: skip
            continue
        method = "estimated" if entry.name != measured_on else None
        plans += _plans(entry, by_threads, scale, method, base, target)
    plans.sort(key=lambda p: (p.bound_usd_per_h, p.entry.name, p.threads, p.instances))
    best, simulated = _search(plans, base, target, candidates)
    return SizingResult(rate_per_s, slo_p99_ms, best, _binding(best, simulated), candidates)


def _check_target(target: _Target) -> None:
    number("rate_per_s", target.rate_per_s, minimum=0, open_low=True, fix="requests per second")
    number("slo_p99_ms", target.slo_p99_ms, minimum=0, open_low=True, fix="the p99 target in ms")
    fraction("max_utilisation", target.max_utilisation, open_low=True, fix="0.8 = 80 % busy")
    whole("requests", target.requests, minimum=100, fix="the p99 of fewer is noisy")


def _plans(
    entry: HardwareEntry,
    by_threads: dict[int, BatchLatencyCurve],
    scale: float,
    method: str | None,
    base: ServerConfig,
    target: _Target,
) -> list[_Plan]:
    """Every thread count x instance count that fits ``entry``, priced at its capacity bound."""
    plans = []
    for threads, curve in by_threads.items():
        if threads > entry.cores:
            continue
        used = curve.scaled(scale, method=method or curve.method)
        counts = [1] if entry.kind == "gpu" else range(1, entry.cores // threads + 1)
        for k in counts:
            capacity = k * _best_throughput(used, base.max_batch_rows) * target.max_utilisation
            low = max(1, math.ceil(target.rate_per_s / capacity))
            plans.append(_Plan(low * entry.usd_per_h, entry, threads, k, used))
    return plans


def _search(
    plans: list[_Plan],
    base: ServerConfig,
    target: _Target,
    candidates: list[SizingCandidate],
) -> tuple[SizingCandidate | None, list[tuple[float, SizingCandidate]]]:
    """Size the plans cheapest bound first, skipping those whose bound already costs more than
    the best found; appends every candidate and returns the best and the simulated ones."""
    best: SizingCandidate | None = None
    simulated: list[tuple[float, SizingCandidate]] = []
    for plan in plans:
        bound = plan.bound_usd_per_h
        if best is not None and bound > best.usd_per_h:  # type: ignore[operator]
            candidates.append(
                plan.candidate(
                    f"not simulated: even at its capacity bound it costs ${bound:.3g}/h, more "
                    f"than the best ${best.usd_per_h:.3g}/h"
                )
            )
            continue
        cand = _size_one(plan, base, target)
        candidates.append(cand)
        simulated.append((bound, cand))
        if cand.feasible and (best is None or _better(cand, best)):
            best = cand
    return best, simulated


def _binding(
    best: SizingCandidate | None, simulated: list[tuple[float, SizingCandidate]]
) -> str | None:
    """The module docstring's binding constraint of the winner."""
    if best is None:
        return None
    price = float(best.usd_per_h or 0.0)
    slo_forced = any(
        bound < price and (c.binding == "slo" or c.reason.startswith("slo"))
        for bound, c in simulated
    )
    return "slo" if slo_forced else best.binding


def _curves_by_threads(
    curves: BatchLatencyCurve | Mapping[int, BatchLatencyCurve],
) -> dict[int, BatchLatencyCurve]:
    if isinstance(curves, BatchLatencyCurve):
        return {curves.threads or 1: curves}
    if not curves:
        raise ConfigError("curves is empty; give at least one batch-latency curve")
    for t in curves:
        whole("threads", t, minimum=1, fix="key the curves by their thread count")
    return dict(sorted(curves.items()))


def _best_throughput(curve: BatchLatencyCurve, max_batch: int) -> float:
    sizes = range(1, min(max_batch, curve.max_batch_size) + 1)
    return max(curve.throughput_items_per_s(b) for b in sizes)


def _better(a: SizingCandidate, b: SizingCandidate) -> bool:
    key = lambda c: (c.usd_per_h, c.kwh_per_million, c.latency_ms_p99)  # noqa: E731
    return key(a) < key(b)


def _size_one(plan: _Plan, base: ServerConfig, target: _Target) -> SizingCandidate:
    """Fewest machines meeting the targets: exponential then binary search on the count."""
    curve = plan.curve
    head = plan.candidate()
    if base.max_batch_rows > curve.max_batch_size:
        head.reason = (
            f"max_batch_rows={base.max_batch_rows} is above the curve's largest batch "
            f"{curve.max_batch_size}"
        )
        return head
    alone = curve.service_ms(1) + base.request_overhead_ms
    if alone > target.slo_p99_ms:
        head.reason = f"slo: one request alone takes {alone:.3g} ms, above {target.slo_p99_ms:g} ms"
        return head
    trial = _Trial(plan, head, base, target)
    capacity = plan.instances * _best_throughput(curve, base.max_batch_rows)
    low = max(1, math.ceil(target.rate_per_s / (capacity * target.max_utilisation)))
    if low > target.max_machines:
        head.reason = f"capacity: needs more than max_machines={target.max_machines} machines"
        return head
    return _fewest_machines(trial, low)


class _Trial:
    """Simulates ``plan`` on a number of machines, remembering each outcome."""

    def __init__(
        self, plan: _Plan, head: SizingCandidate, base: ServerConfig, target: _Target
    ) -> None:
        entry, instances = plan.entry, plan.instances
        self.plan, self.head, self.target = plan, head, target
        self.config = replace(base, instances=instances)
        share = 1.0 if entry.kind == "gpu" else plan.threads / entry.cores
        self.power = PowerModel(
            idle_w=entry.idle_w / instances,
            busy_w=entry.idle_w / instances + (entry.max_w - entry.idle_w) * share,
            method="estimated",
        )
        self.tried: dict[int, tuple[str | None, SizingCandidate]] = {}

    def check(self, machines: int) -> str | None:
        """``None`` if ``machines`` meet every target, else the failing constraint."""
        target, usd_per_h = self.target, self.plan.entry.usd_per_h
        rate = target.rate_per_s / machines
        trace = poisson_trace(rate, target.requests / rate, seed=target.seed)
        fig = simulate(trace, self.plan.curve, self.config, self.power).figures
        cand = replace(
            self.head,
            machines=machines,
            usd_per_h=machines * usd_per_h,
            usd_per_million=machines * usd_per_h / (target.rate_per_s * 3600) * 1e6,
            kwh_per_million=fig.energy_j_per_request * 1e6 / J_PER_KWH,  # type: ignore[operator]
            latency_ms_p99=fig.latency_ms_p99,
            utilisation=fig.utilisation,
            mean_batch_size=fig.mean_batch_size,
            drop_rate=fig.drop_rate,
        )
        failed = None
        if fig.dropped or fig.utilisation > target.max_utilisation:  # type: ignore[operator]
            failed = "capacity"
        elif fig.latency_ms_p99 > target.slo_p99_ms:
            failed = "slo"
        self.tried[machines] = (failed, cand)
        return failed


def _fewest_machines(trial: _Trial, low: int) -> SizingCandidate:
    """Search up from ``low`` (the capacity bound) for the fewest machines that pass."""
    max_machines, tried = trial.target.max_machines, trial.tried
    high = low
    while trial.check(high) is not None:
        if high >= max_machines:
            cand = tried[high][1]
            cand.reason = (
                f"{tried[high][0]}: still failing with max_machines={max_machines} machines"
            )
            return cand
        low, high = high, min(2 * high, max_machines)
    while high - low > 1:  # binary search between a failing and a passing count
        mid = (low + high) // 2
        if trial.check(mid) is None:
            high = mid
        else:
            low = mid
    cand = tried[high][1]
    below = tried.get(high - 1)
    if high == 1:
        cand.binding = "cost"
    elif below is not None and below[0] is not None:
        cand.binding = below[0]
    else:  # one machine fewer was never simulated: its capacity bound already fails
        cand.binding = "capacity"
    cand.feasible = True
    target = trial.target
    cand.reason = (
        f"meets p99 <= {target.slo_p99_ms:g} ms at {target.rate_per_s:g} req/s; "
        f"binding: {cand.binding}"
    )
    return cand
