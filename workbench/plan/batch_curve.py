"""Static batch sweep and the batch-latency curve that feeds the serving simulator.

:func:`batch_sweep` measures latency and throughput per batch size with the profiler
(:func:`workbench.measure.profiling.sweep`) and marks the knee; :func:`sweep_from_store` rebuilds
the same result from a stored sweep. :class:`BatchLatencyCurve` maps a batch size to the time one
batch takes (and optionally the energy it uses); build it from a sweep, from stored runs, or from
typed-in points.

The knee
--------
The knee is the **smallest batch size whose throughput reaches 90 % of the best measured
throughput** (``knee_fraction``). Past it, bigger batches buy little throughput and cost latency.
This rule is used rather than a curvature method (Kneedle) because it reads the same on every
curve, needs no smoothing, and says what it means in one sentence; for a model that batching does
not help (compute-bound, as MiniLM on 2 cores) it gives batch 1.

Service time
------------
The curve takes each batch size's **mean** latency per call (so that ``batch / mean`` is the
measured throughput); between measured sizes it interpolates linearly; below the smallest measured
size it uses the smallest size's time (a conservative choice); above the largest it refuses
(:meth:`BatchLatencyCurve.service_s` raises ConfigError), because extrapolated batching is a guess.

Example
-------
>>> curve = BatchLatencyCurve.from_points({1: 2.0, 8: 4.0})
>>> round(curve.service_ms(4), 4)  # 2 + (4 - 1) * (4 - 2) / (8 - 1)
2.8571
>>> knee_batch_size([1, 2, 4, 8], [100.0, 180.0, 300.0, 320.0])
4
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import ConfigError
from workbench.measure.store import RunStore
from workbench.provenance import METHODS

KNEE_FRACTION = 0.9


@dataclass(frozen=True)
class BatchLatencyCurve:
    """Time (and optionally energy) of one batch, by batch size (rows).

    Attributes
    ----------
    batch_sizes:
        Sizes with a known service time, ascending.
    service_times_ms:
        Wall-clock time of one batch of each size, ms.
    energy_j_per_batch:
        Energy of one batch of each size, J (``None`` if unknown).
    method:
        ``"measured"``, ``"estimated"`` (e.g. scaled to other hardware) or ``"typed in"``.
    energy_method:
        Method of ``energy_j_per_batch`` (``None`` if there is none).
    threads:
        Intra-op threads the curve was measured with, if known.
    source:
        Where the points came from (a sweep id, ``"typed in"``, ...).
    """

    batch_sizes: tuple[int, ...]
    service_times_ms: tuple[float, ...]
    energy_j_per_batch: tuple[float, ...] | None = None
    method: str = "typed in"
    energy_method: str | None = None
    threads: int | None = None
    source: str = "typed in"

    def __post_init__(self) -> None:
        sizes, times = self.batch_sizes, self.service_times_ms
        if len(sizes) == 0 or len(sizes) != len(times):
            raise ConfigError(
                f"a batch-latency curve needs one service time per batch size, got "
                f"{len(sizes)} sizes and {len(times)} times"
            )
        for b in sizes:
            if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
                raise ConfigError(
                    f"batch size {b!r} in the latency curve must be a whole number >= 1"
                )
        if list(sizes) != sorted(set(sizes)):
            raise ConfigError(
                f"batch sizes {list(sizes)} must be distinct and ascending; give one time per size"
            )
        for b, t in zip(sizes, times, strict=True):
            if not (isinstance(t, (int, float, np.floating)) and math.isfinite(t) and t > 0):
                raise ConfigError(
                    f"service time {t!r} ms for batch size {b} must be a finite number > 0"
                )
        if self.energy_j_per_batch is not None:
            if len(self.energy_j_per_batch) != len(sizes):
                raise ConfigError("energy_j_per_batch needs one value per batch size")
            if not all(math.isfinite(e) and e >= 0 for e in self.energy_j_per_batch):
                raise ConfigError("energy_j_per_batch values must be finite numbers >= 0")
        for name in ("method", "energy_method"):
            value = getattr(self, name)
            if value is not None and value not in METHODS:
                raise ConfigError(f"{name}={value!r} must be one of {', '.join(METHODS)}")

    @classmethod
    def from_points(
        cls,
        points: Mapping[int, float] | Iterable[tuple[int, float]],
        *,
        energy_j_per_batch: Mapping[int, float] | None = None,
        method: str = "typed in",
        energy_method: str | None = None,
        threads: int | None = None,
        source: str = "typed in",
    ) -> BatchLatencyCurve:
        """A curve from ``{batch_size: service_ms}`` (or pairs), in any order."""
        pairs = sorted(dict(points).items())
        energy = None
        if energy_j_per_batch is not None:
            missing = [b for b, _ in pairs if b not in energy_j_per_batch]
            if missing:
                raise ConfigError(f"energy_j_per_batch lacks batch sizes {missing}")
            energy = tuple(float(energy_j_per_batch[b]) for b, _ in pairs)
            energy_method = energy_method or method
        return cls(
            batch_sizes=tuple(int(b) for b, _ in pairs),
            service_times_ms=tuple(float(t) for _, t in pairs),
            energy_j_per_batch=energy,
            method=method,
            energy_method=energy_method,
            threads=threads,
            source=source,
        )

    @classmethod
    def from_rows(
        cls,
        rows: Sequence[Mapping[str, Any]] | pd.DataFrame,
        *,
        backend: str | None = None,
        threads: int | None = None,
        source: str = "profile sweep",
    ) -> BatchLatencyCurve:
        """A measured curve from profile rows (``Profile.to_dict()`` or stored runs' ``flat()``):
        ``batch_size`` and ``latency_ms_mean`` per row; ``energy_j_per_item`` is used when every
        row has it. Rows of several backends or thread counts must be narrowed with ``backend=``
        and ``threads=``."""
        frame = _select(pd.DataFrame(rows), backend=backend, threads=threads)
        frame = frame.sort_values("batch_size").drop_duplicates("batch_size", keep="last")
        energy = None
        energy_method = None
        if "energy_j_per_item" in frame and frame["energy_j_per_item"].notna().all():
            per_batch = frame["energy_j_per_item"] * frame["batch_size"]
            energy = dict(zip(frame["batch_size"], per_batch, strict=True))
            methods = set(frame.get("energy_method", pd.Series(["estimated"])).dropna())
            energy_method = "measured" if methods == {"measured"} else "estimated"
        return cls.from_points(
            zip(
                frame["batch_size"].astype(int), frame["latency_ms_mean"].astype(float), strict=True
            ),
            energy_j_per_batch=energy,
            method="measured",
            energy_method=energy_method,
            threads=int(frame["threads"].iloc[0]) if "threads" in frame else None,
            source=source,
        )

    @property
    def max_batch_size(self) -> int:
        return self.batch_sizes[-1]

    def service_ms(self, batch_size: int) -> float:
        """Time of one batch of ``batch_size`` rows, ms (see the module docstring)."""
        if batch_size > self.max_batch_size:
            raise ConfigError(
                f"batch size {batch_size} is above the largest measured size "
                f"{self.max_batch_size} of the latency curve; measure larger batches or lower "
                "max_batch_rows"
            )
        return float(np.interp(batch_size, self.batch_sizes, self.service_times_ms))

    def service_s(self, batch_size: int) -> float:
        """Time of one batch of ``batch_size`` rows, seconds."""
        return self.service_ms(batch_size) / 1e3

    def energy_j(self, batch_size: int) -> float:
        """Energy of one batch of ``batch_size`` rows, J (interpolated as the service time)."""
        if self.energy_j_per_batch is None:
            raise ConfigError(
                "this latency curve has no energy per batch; give busy_w in the PowerModel or "
                "build the curve from runs measured with an energy meter"
            )
        self.service_ms(batch_size)  # the same range check
        return float(np.interp(batch_size, self.batch_sizes, self.energy_j_per_batch))

    def throughput_items_per_s(self, batch_size: int) -> float:
        """Items per second of one instance kept busy with batches of ``batch_size``."""
        return batch_size / self.service_s(batch_size)

    def scaled(self, factor: float, method: str = "estimated") -> BatchLatencyCurve:
        """The same curve with every time (and energy) multiplied by ``factor``: a stand-in for
        hardware the model was not measured on, labelled ``estimated``."""
        if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
            raise ConfigError(f"latency scale factor {factor!r} must be a finite number > 0")
        if factor == 1 and method == self.method:
            return self
        energy = self.energy_j_per_batch
        return replace(
            self,
            service_times_ms=tuple(t * factor for t in self.service_times_ms),
            energy_j_per_batch=None if energy is None else tuple(e * factor for e in energy),
            method=method,
            energy_method=None if energy is None else "estimated",
            source=f"{self.source} x{factor:g}",
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per batch size: service time, throughput, energy per batch."""
        frame = pd.DataFrame(
            {
                "batch_size": self.batch_sizes,
                "service_ms": self.service_times_ms,
                "throughput_items_per_s": [
                    b / (t / 1e3)
                    for b, t in zip(self.batch_sizes, self.service_times_ms, strict=True)
                ],
            }
        )
        if self.energy_j_per_batch is not None:
            frame["energy_j_per_batch"] = self.energy_j_per_batch
        frame["method"] = self.method
        return frame


def _select(frame: pd.DataFrame, *, backend: str | None, threads: int | None) -> pd.DataFrame:
    need = {"batch_size", "latency_ms_mean"}
    if frame.empty or not need <= set(frame.columns):
        raise ConfigError(
            f"profile rows need the columns {sorted(need)}; got {sorted(frame.columns)}: "
            "pass Profile.to_dict() rows or runs of kind 'profile'"
        )
    for col, want in (("backend", backend), ("threads", threads)):
        if want is not None and col in frame:
            frame = frame[frame[col] == want]
            if frame.empty:
                raise ConfigError(f"no profile rows with {col}={want!r}")
    groups = [c for c in ("backend", "device", "threads") if c in frame and frame[c].nunique() > 1]
    if groups:
        combos = frame[groups].drop_duplicates().to_dict("records")
        raise ConfigError(
            f"the rows mix several configurations {combos}; pick one with backend= and threads="
        )
    return frame


def knee_batch_size(
    batch_sizes: Sequence[int], throughputs: Sequence[float], fraction: float = KNEE_FRACTION
) -> int:
    """The smallest batch size whose throughput reaches ``fraction`` of the best one."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"knee fraction={fraction!r} must lie in (0, 1]")
    if len(batch_sizes) == 0 or len(batch_sizes) != len(throughputs):
        raise ConfigError("knee_batch_size needs one throughput per batch size")
    best = max(throughputs)
    return int(
        min(b for b, x in zip(batch_sizes, throughputs, strict=True) if x >= fraction * best)
    )


@dataclass
class BatchSweep:
    """Latency and throughput per batch size, the knee marked, and the curve for the simulator.

    ``frame`` holds one row per batch size with the profiler's columns plus
    ``share_of_max_throughput`` and ``is_knee``; every figure in it is measured.
    ``idle_power_w`` is the median idle baseline of a sweep run with ``energy=True`` (``None``
    otherwise), labelled like the curve's energy (``curve.energy_method``): the ``idle_w`` of a
    :class:`workbench.plan.simulator.PowerModel` whose busy energy comes from the curve.
    """

    model: str
    sweep_id: str | None
    frame: pd.DataFrame
    knee_batch_size: int
    curve: BatchLatencyCurve
    knee_rule: str
    idle_power_w: float | None = None

    #: The columns of :meth:`to_frame` a sweep table shows (the CLI, the batching panel).
    SUMMARY_COLUMNS = (
        "batch_size",
        "threads",
        "latency_ms_p50",
        "latency_ms_p99",
        "throughput_items_per_s",
        "share_of_max_throughput",
        "is_knee",
        "run_id",
    )

    def to_frame(self) -> pd.DataFrame:
        return self.frame.copy()


def sweep_from_rows(
    model: str,
    rows: Sequence[Mapping[str, Any]] | pd.DataFrame,
    *,
    sweep_id: str | None = None,
    backend: str | None = None,
    threads: int | None = None,
    knee_fraction: float = KNEE_FRACTION,
) -> BatchSweep:
    """A :class:`BatchSweep` from profile rows (one backend and thread count)."""
    frame = _select(pd.DataFrame(rows), backend=backend, threads=threads)
    frame = frame.sort_values("batch_size").drop_duplicates("batch_size", keep="last")
    frame = frame.reset_index(drop=True)
    thr = frame["throughput_items_per_s"].astype(float)
    knee = knee_batch_size(list(frame["batch_size"]), list(thr), knee_fraction)
    frame["share_of_max_throughput"] = thr / thr.max()
    frame["is_knee"] = frame["batch_size"] == knee
    curve = BatchLatencyCurve.from_rows(frame, source=f"sweep {sweep_id}" if sweep_id else "sweep")
    rule = f"smallest batch reaching {knee_fraction:.0%} of the best throughput"
    idle = None
    if curve.energy_j_per_batch is not None and "idle_power_w" in frame:
        idle = float(frame["idle_power_w"].median())
    return BatchSweep(model, sweep_id, frame, knee, curve, rule, idle)


def batch_sweep(
    model: Any,
    *,
    batch_sizes: Sequence[int] = (1, 2, 4, 8, 16, 32),
    backend: str = "onnxruntime",
    threads: int | None = None,
    store: RunStore | str | Path | bool | None = None,
    sweep_id: str | None = None,
    progress: bool = True,
    knee_fraction: float = KNEE_FRACTION,
    **settings: Any,
) -> BatchSweep:
    """Measure each batch size with the profiler (stored like any sweep) and mark the knee.

    ``settings`` go to :func:`workbench.measure.profiling.sweep` (``max_seconds=``, ``iterations=``,
    ...); ``energy=True`` also measures energy per item, which the curve turns into energy per batch
    (the gross figure: a batch's energy includes the idle draw while it runs, and the simulator adds
    idle power only in the gaps). Resuming a stored ``sweep_id`` reads the finished sizes back from
    the store.
    """
    from workbench.measure.profiling import sweep

    settings.setdefault("operators", False)
    result = sweep(
        model,
        batch_sizes=list(batch_sizes),
        backends=[backend],
        threads=[threads],
        store=store,
        sweep_id=sweep_id,
        progress=progress,
        **settings,
    )
    rows = [p.to_dict() for p in result.profiles]
    if result.resumed_run_ids:
        db = store if isinstance(store, RunStore) else RunStore(_store_path(store))
        rows += [db.get(run_id).flat() for run_id in result.resumed_run_ids]
        if db is not store:
            db.close()
    if not rows:
        raise ConfigError("the sweep finished no batch size; run it again (it resumes)")
    name = rows[0]["model"]
    return sweep_from_rows(name, rows, sweep_id=result.sweep_id, knee_fraction=knee_fraction)


def sweep_from_store(
    store: RunStore | str | Path | None,
    sweep_id: str,
    *,
    backend: str | None = None,
    threads: int | None = None,
    knee_fraction: float = KNEE_FRACTION,
) -> BatchSweep:
    """The :class:`BatchSweep` of a stored profile sweep (``workbench runs --sweep-id ID``)."""
    db = store if isinstance(store, RunStore) else RunStore(_store_path(store))
    try:
        runs = db.runs(sweep_id=sweep_id, kind="profile")
    finally:
        if db is not store:
            db.close()
    if not runs:
        raise ConfigError(
            f"no profile runs with sweep id {sweep_id!r} in the run store; list sweeps with "
            "`workbench runs` or measure one with `workbench batching MODEL`"
        )
    return sweep_from_rows(
        runs[0].model,
        [r.flat() for r in runs],
        sweep_id=sweep_id,
        backend=backend,
        threads=threads,
        knee_fraction=knee_fraction,
    )


def _store_path(store: RunStore | str | Path | bool | None) -> str | Path | None:
    """``None``/``True`` mean the default store, as in :func:`workbench.measure.profiling.sweep`."""
    return None if store is None or isinstance(store, bool) else store
