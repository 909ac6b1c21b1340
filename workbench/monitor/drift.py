"""Drift: live figures against what the bundle was exported with, and the monitor's report.

:class:`Baseline` reads a bundle's manifest: the profile's ``energy_j_per_item`` and
``latency_ms_p99``, the SLO's ``p99_ms``, and the cost per 1M predictions (the manifest's
``cost.usd_per_million``, the plan; else ``cost.instance_usd_per_h`` / the profile's
``throughput_items_per_s``). :func:`compare` flags a live figure beyond its :class:`Thresholds`
(defaults: J/prediction and cost per 1M +20 %; p99 over the SLO or +50 % over the profile's p99);
a figure the bundle lacks is shown, never flagged. :class:`MonitorReport` holds the windows, the
whole period and the verdict; ``.to_frame()`` gives one row per window beside the profile.

>>> base = Baseline(j_per_prediction=0.01, latency_ms_p99=2.0, slo_p99_ms=None, usd_per_1m=None)
>>> [d.figure for d in compare({"j_per_prediction": 0.013, "latency_ms_p99": 2.5}, base)
...  if d.drifted]
['J/prediction']
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from workbench.checks import number
from workbench.monitor.window import Window
from workbench.provenance import MEASURED, METHODS, TYPED_IN, weakest_method


@dataclass(frozen=True)
class Thresholds:
    """The largest rise over the profile that is not drift, in percent."""

    max_energy_increase_pct: float = 20.0
    max_cost_increase_pct: float = 20.0
    max_p99_increase_pct: float = 50.0

    def __post_init__(self) -> None:
        for name in ("max_energy_increase_pct", "max_cost_increase_pct", "max_p99_increase_pct"):
            number(name, getattr(self, name), minimum=0, owner="Thresholds",
                   fix="give a percentage, e.g. 20")  # fmt: skip


@dataclass(frozen=True)
class Baseline:
    """The bundle's own figures (None: the bundle does not have it)."""

    j_per_prediction: float | None
    latency_ms_p99: float | None
    slo_p99_ms: float | None
    usd_per_1m: float | None
    usd_per_h: float | None = None
    energy_method: str = ""
    cost_method: str = ""

    @classmethod
    def from_manifest(cls, manifest: Any) -> Baseline:
        """The figures a :class:`serving.manifest.Manifest` was exported with."""
        profile, cost = manifest.profile, manifest.cost
        usd_per_1m, cost_method = cost.usd_per_million, cost.method
        throughput = profile.get("throughput_items_per_s")
        if usd_per_1m is None and cost.instance_usd_per_h and throughput:
            usd_per_1m = cost.instance_usd_per_h / (float(throughput) * 3600) * 1e6
            timed = profile.get("latency_method", MEASURED)
            cost_method = weakest_method(TYPED_IN, timed) if timed in METHODS else TYPED_IN
        return cls(
            j_per_prediction=_float(profile.get("energy_j_per_item")),
            latency_ms_p99=_float(profile.get("latency_ms_p99")),
            slo_p99_ms=_float(manifest.slo.p99_ms),
            usd_per_1m=_float(usd_per_1m),
            usd_per_h=_float(cost.instance_usd_per_h),
            energy_method=str(profile.get("energy_method", "")),
            cost_method=str(cost_method or ""),
        )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class Drift:
    """One figure compared: live against expected, and the limit it may not pass."""

    figure: str
    live: float
    expected: float | None
    limit: float | None
    drifted: bool
    reason: str

    def line(self) -> str:
        return f"{self.figure}: {self.reason}"


def _rise(figure: str, unit: str, live: float, expected: float | None, pct: float) -> Drift:
    if expected is None or not expected > 0:
        return Drift(figure, live, expected, None, False, "the bundle has no profile figure")
    limit = expected * (1 + pct / 100)
    if math.isnan(live):
        return Drift(figure, live, expected, limit, False, "no live figure (no predictions)")
    change = (live / expected - 1) * 100
    words = f"live {live:.4g} {unit} is {change:+.0f} % against the profile's {expected:.4g}"
    return Drift(figure, live, expected, limit, live > limit, f"{words} (limit +{pct:g} %)")


def _p99(live: float, base: Baseline, t: Thresholds) -> Drift:
    drift = _rise("p99", "ms", live, base.latency_ms_p99, t.max_p99_increase_pct)
    slo = base.slo_p99_ms
    if slo is not None and not math.isnan(live) and live > slo:
        return Drift("p99", live, drift.expected, slo, True,
                     f"live {live:.4g} ms is over the SLO's {slo:.4g} ms")  # fmt: skip
    return drift


def compare(live: dict[str, float], base: Baseline, t: Thresholds | None = None) -> list[Drift]:
    """J/prediction, cost per 1M and p99 of ``live`` (a :class:`Window`'s fields) against the
    bundle's figures."""
    t = t or Thresholds()
    nan = math.nan
    return [
        _rise("J/prediction", "J", live.get("j_per_prediction", nan), base.j_per_prediction,
              t.max_energy_increase_pct),
        _rise("cost per 1M", "USD", live.get("usd_per_1m", nan), base.usd_per_1m,
              t.max_cost_increase_pct),
        _p99(live.get("latency_ms_p99", nan), base, t),
    ]  # fmt: skip


@dataclass
class MonitorReport:
    """A monitoring run: each window, the whole period (``overall``) and its drift verdict."""

    #: The columns of :meth:`to_frame` a table of windows shows (the CLI, the monitor panel).
    SUMMARY_COLUMNS = (
        "window",
        "requests_per_s",
        "latency_ms_p99",
        "j_per_prediction",
        "power_w",
        "idle_share",
        "usd_per_1m",
        "energy_method",
        "drift",
    )

    url: str
    bundle: str
    model: str
    baseline: Baseline
    thresholds: Thresholds
    windows: list[Window] = field(default_factory=list)
    overall: Window | None = None
    run_ids: list[int] = field(default_factory=list)
    fingerprint: str = ""

    @property
    def drifts(self) -> list[Drift]:
        """The whole period's figures against the bundle's (empty before the first window)."""
        if self.overall is None:
            return []
        return compare(self.overall.to_dict(), self.baseline, self.thresholds)

    @property
    def drifted(self) -> list[Drift]:
        return [d for d in self.drifts if d.drifted]

    def summary(self) -> str:
        """One line: the drifted figures, or that none drifted."""
        if self.overall is None:
            return f"{self.model}: no window finished; monitor for longer than one interval"
        bad = self.drifted
        if bad:
            return f"drift on {self.model}: " + "; ".join(d.line() for d in bad)
        w = self.overall
        if not w.predictions > 0:
            return f"no drift on {self.model}: no prediction in {w.seconds:.0f} s to compare"
        return (
            f"no drift on {self.model} over {w.seconds:.0f} s: {w.j_per_prediction:.4g} J/"
            f"prediction ({w.energy_method or 'no live energy'}), p99 {w.latency_ms_p99:.4g} ms, "
            f"idle share {w.idle_share:.0%}"
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per window: its figures, the profile's beside them, and what drifted."""
        base = self.baseline
        rows = []
        for i, w in enumerate(self.windows):
            drifted = [d.figure for d in compare(w.to_dict(), base, self.thresholds) if d.drifted]
            rows.append({
                "window": i + 1,
                **w.to_dict(),
                "profile_j_per_prediction": base.j_per_prediction,
                "profile_latency_ms_p99": base.latency_ms_p99,
                "profile_usd_per_1m": base.usd_per_1m,
                "slo_p99_ms": base.slo_p99_ms,
                "drift": ", ".join(drifted),
            })  # fmt: skip
        return pd.DataFrame(rows)
