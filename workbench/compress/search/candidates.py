"""The configurations a search measures, and the frontier among them.

A :class:`Candidate` is one variant at one batch size and thread count, with its quality on
held-out data and, once timed, its profile; its properties are the figures the search compares
(``latency_ms_p99``, ``energy_j_per_item``, ...; NaN until measured). :func:`pareto_frontier`
keeps the rows of a table no other row beats on every axis of :data:`PARETO_AXES`.

Example
-------
>>> frame = pd.DataFrame({"quality_drop": [0.0, 0.004, 0.02], "latency_ms_p99": [5.0, 2.0, 2.5],
...                       "energy_j_per_item": [0.1, 0.05, 0.06], "size_mb": [1.0, 0.3, 0.3]})
>>> pareto_frontier(frame).index.tolist()
[0, 1]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workbench.compress.quality import Quality
from workbench.compress.registry import Variant
from workbench.measure.profiling import Profile

#: What the recommendation minimises (or maximises): metric name and direction.
OBJECTIVES = {
    "energy": ("energy_j_per_item", 1),
    "throughput": ("throughput_items_per_s", -1),
    "latency": ("latency_ms_p99", 1),
    "size": ("size_mb", 1),
}
#: The frontier's axes, all minimised.
PARETO_AXES = ("quality_drop", "latency_ms_p99", "energy_j_per_item", "size_mb")


@dataclass
class Candidate:
    """One configuration: a variant at a batch size and thread count, with its measurements."""

    variant: Variant = field(repr=False)
    quality: Quality = field(repr=False)
    batch_size: int
    threads: int
    profile: Profile | None = field(default=None, repr=False)
    rung: int = -1
    measure_seconds: float = 0.0
    run_id: int | None = None

    @property
    def name(self) -> str:
        return self.variant.name

    @property
    def label(self) -> str:
        return f"{self.name} b={self.batch_size} t={self.threads}"

    @property
    def quality_drop(self) -> float:
        return self.quality.drop

    def _p(self, attr: str) -> float:
        value = None if self.profile is None else getattr(self.profile, attr)
        return float("nan") if value is None else float(value)  # None: not measured / unknown

    @property
    def latency_ms_p99(self) -> float:
        return self._p("latency_ms_p99")

    @property
    def throughput_items_per_s(self) -> float:
        return self._p("throughput_items_per_s")

    @property
    def energy_j_per_item(self) -> float:
        if self.profile is None or self.profile.energy is None:
            return float("nan")
        return float(self.profile.energy.energy_j_per_item)

    @property
    def items_per_joule(self) -> float:
        j = self.energy_j_per_item
        return 1 / j if j > 0 else float("nan")

    @property
    def size_mb(self) -> float:
        return self.variant.size_mb

    @property
    def memory_mb(self) -> float:
        """Estimated footprint: the model's size plus the measured peak RSS growth of the run."""
        return self.size_mb + self._p("memory_peak_mb")

    @property
    def energy_method(self) -> str:
        if self.profile is None or self.profile.energy is None:
            return "unmeasured"
        return self.profile.energy.method

    def objective(self, objective: str) -> float:
        metric, sign = OBJECTIVES[objective]
        value = getattr(self, metric)
        return float("inf") if value != value else sign * value

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.name,
            "family": self.variant.family,
            "backend": self.variant.backend,
            "device": self.variant.device,
            "batch_size": self.batch_size,
            "threads": self.threads,
            "quality_metric": self.quality.metric,
            "quality_value": self.quality.value,
            "quality_drop": self.quality_drop,
            "nn_agreement": self.quality.nn_agreement,
            "cosine_min": self.quality.cosine_min,
            "max_abs_error": self.quality.max_abs_error,
            "latency_ms_p50": self._p("latency_ms_p50"),
            "latency_ms_p99": self.latency_ms_p99,
            "throughput_items_per_s": self.throughput_items_per_s,
            "energy_j_per_item": self.energy_j_per_item,
            "items_per_joule": self.items_per_joule,
            "energy_method": self.energy_method,
            "size_mb": self.size_mb,
            "memory_mb": self.memory_mb,
            "rung": self.rung,
            "measure_seconds": self.measure_seconds,
            "run_id": self.run_id,
        }


def pareto_frontier(frame: pd.DataFrame, axes: Sequence[str] = PARETO_AXES) -> pd.DataFrame:
    """Rows no other row beats on every axis (all minimised) and strictly on one.

    >>> f = pd.DataFrame({"a": [1, 2, 3], "b": [3, 2, 4]})
    >>> pareto_frontier(f, ["a", "b"]).index.tolist()
    [0, 1]
    """
    if frame.empty:
        return frame
    values = frame[list(axes)].to_numpy(dtype=float)
    values = np.where(np.isnan(values), np.inf, values)
    keep = []
    for row in values:
        dominated = np.any(np.all(values <= row, axis=1) & np.any(values < row, axis=1))
        keep.append(not dominated)
    return frame[np.array(keep)]
