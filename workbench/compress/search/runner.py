"""Automatic optimisation: search variants x batch size x threads, measure each configuration's
quality (held-out data), latency, throughput, memory, size and energy, keep the Pareto frontier,
and recommend one configuration under the user's constraints, saying why it won.

Strategies: ``grid`` measures every configuration for ``measure_seconds``; ``halving``
(successive halving) measures all of them briefly, keeps the best third (constraint-meeting
ones first, then by the objective), measures those three times longer, and so on until a few
remain, measured for ``measure_seconds``. A search stopped by Ctrl-C, by ``stop()`` returning
true, or by its ``budget_s`` keeps every finished measurement and recommends from them.

Every measurement is stored in the run store as a ``variant`` run (profile metrics, quality
figures and method labels; linked by the search id as ``sweep_id``), and the outcome as one
``optimize`` run.

Example
-------
>>> parse_fraction("1%"), parse_ms("20ms"), parse_ms("0.5 s")
(0.01, 20.0, 500.0)
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.compress.quality import Quality, TaskData, evaluate, predict, task_data
from workbench.compress.registry import (
    BuildContext,
    Variant,
    VariantSpec,
    build_variant,
    get_spec,
)
from workbench.errors import ConfigError, ConstraintError, WorkbenchError
from workbench.measure.backends import check_threads, logical_cores, make_runner
from workbench.measure.profiling import Profile, profile
from workbench.measure.store import RunStore, open_store
from workbench.models import ModelHandle, load_model
from workbench.paths import cache_dir

STRATEGIES = ("grid", "halving")
#: What the recommendation minimises (or maximises): metric name and direction.
OBJECTIVES = {
    "energy": ("energy_j_per_item", 1),
    "throughput": ("throughput_items_per_s", -1),
    "latency": ("latency_ms_p99", 1),
    "size": ("size_mb", 1),
}
#: The frontier's axes, all minimised.
PARETO_AXES = ("quality_drop", "latency_ms_p99", "energy_j_per_item", "size_mb")
#: Every registered variant, cheapest to build first (distillation trains longest).
DEFAULT_VARIANTS = (
    "torch-fp32",
    "ort-fp32",
    "ort-fp32-opt-extended",
    "ort-fp32-opt-basic",
    "ort-fp32-opt-disabled",
    "ort-int8-dynamic",
    "ort-int8-dynamic-per-channel",
    "ort-int8-weight-only",
    "ort-int4-weight-only",
    "ort-int8-mixed",
    "ort-int8-static-minmax",
    "ort-int8-static-minmax-per-channel",
    "ort-int8-static-entropy",
    "ort-int8-static-percentile",
    "torch-bf16",
    "torch-fp16-cuda",
    "ort-fp16-cuda",
    "torch-int8-dynamic",
    "torch-prune-magnitude",
    "torch-prune-structured",
    "ort-prune-structured",
    "torch-distill",
    "ort-distill",
)
HALVING_ETA = 3
MIN_MEASURE_SECONDS = 0.1


# ------------------------------------------------------------------------- units


def parse_fraction(value: str | float, field_name: str = "max_quality_drop") -> float:
    """``"1%"`` -> 0.01; a bare number is a fraction in [0, 1] (``0.01``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number, percent = float(value), False
    else:
        text = str(value).strip().replace(" ", "")
        match = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)(%?)", text, flags=re.I)
        if not match:
            raise ConfigError(
                f"{field_name}={value!r} is not a share: write a percentage such as 1% or a "
                "fraction such as 0.01"
            )
        number, percent = float(match.group(1)), bool(match.group(2))
    fraction = number / 100 if percent else number
    if not 0 <= fraction <= 1 or math.isnan(fraction):
        hint = f" (did you mean {number:g}%?)" if not percent and 1 < number <= 100 else ""
        raise ConfigError(
            f"{field_name}={value!r} is outside 0..100 %: write 1% or 0.01 for one percent{hint}"
        )
    return fraction


def parse_ms(value: str | float, field_name: str = "slo_p99") -> float:
    """``"20ms"``, ``"0.02s"``, ``"500us"`` or a bare number of milliseconds -> milliseconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        ms = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        match = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)(ms|s|us|µs)?", text)
        if not match:
            raise ConfigError(
                f"{field_name}={value!r} is not a duration: write it with a unit, e.g. 20ms, "
                "0.5s or 800us"
            )
        scale = {"ms": 1.0, None: 1.0, "s": 1e3, "us": 1e-3, "µs": 1e-3}[match.group(2)]
        ms = float(match.group(1)) * scale
    if not ms > 0 or math.isinf(ms):
        raise ConfigError(f"{field_name}={value!r} must be a duration > 0, e.g. 20ms")
    return ms


# ------------------------------------------------------------------------- constraints


@dataclass(frozen=True)
class Check:
    """One constraint against one configuration."""

    constraint: str
    limit: float
    value: float | None
    met: bool
    text: str

    @property
    def excess(self) -> float:
        """How far past the limit, relative to it (0 when met; 1 when no value was measured)."""
        if self.met:
            return 0.0
        if self.value is None:
            return 1.0
        if self.constraint == "min_nn_agreement":
            return (self.limit - self.value) / max(self.limit, 1e-9)
        return (self.value - self.limit) / max(abs(self.limit), 1e-9)


@dataclass(frozen=True)
class Constraints:
    """Limits a recommendation must meet; ``None`` leaves one open.

    ``max_quality_drop``: fraction (0.01 = 1 accuracy point, or 1 - mean cosine 0.01);
    ``slo_p99_ms``: p99 latency of one call (one batch) in ms; ``memory_cap_mb``: the estimated
    footprint (model size + measured peak RSS growth) in MB; ``min_nn_agreement``: for encoders,
    the least share of held-out items whose nearest neighbour stays the same.
    """

    max_quality_drop: float | None = 0.01
    slo_p99_ms: float | None = None
    memory_cap_mb: float | None = None
    min_nn_agreement: float | None = None

    def __post_init__(self) -> None:
        if self.max_quality_drop is not None:
            object.__setattr__(self, "max_quality_drop", parse_fraction(self.max_quality_drop))
        if self.slo_p99_ms is not None:
            object.__setattr__(self, "slo_p99_ms", parse_ms(self.slo_p99_ms))
        if self.memory_cap_mb is not None:
            cap = self.memory_cap_mb
            if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not cap > 0:
                raise ConfigError(f"memory_cap_mb={cap!r} must be a number of MB > 0, e.g. 512")
        if self.min_nn_agreement is not None:
            object.__setattr__(
                self, "min_nn_agreement", parse_fraction(self.min_nn_agreement, "min_nn_agreement")
            )

    def quality_checks(self, quality: Quality) -> list[Check]:
        """The checks known before any timing: quality drop and neighbour agreement."""
        checks = []
        if self.max_quality_drop is not None:
            ok = quality.drop <= self.max_quality_drop + 1e-12
            checks.append(
                Check(
                    "max_quality_drop",
                    self.max_quality_drop,
                    quality.drop,
                    ok,
                    f"quality drop {quality.drop:.2%} {'<=' if ok else '>'} "
                    f"{self.max_quality_drop:.2%}",
                )
            )
        if self.min_nn_agreement is not None:
            nn = quality.nn_agreement
            ok = nn is not None and nn >= self.min_nn_agreement
            shown = "n/a" if nn is None else f"{nn:.1%}"
            checks.append(
                Check(
                    "min_nn_agreement",
                    self.min_nn_agreement,
                    nn,
                    ok,
                    f"NN agreement {shown} {'>=' if ok else '<'} {self.min_nn_agreement:.1%}",
                )
            )
        return checks

    def checks(self, candidate: Candidate) -> list[Check]:
        """Every constraint against one measured configuration."""
        checks = self.quality_checks(candidate.quality)
        p = candidate.profile
        if self.slo_p99_ms is not None:
            value = None if p is None else p.latency_ms_p99
            checks.append(_at_most("slo_p99_ms", self.slo_p99_ms, value, "p99", "ms"))
        if self.memory_cap_mb is not None:
            value = None if p is None else candidate.memory_mb
            checks.append(_at_most("memory_cap_mb", self.memory_cap_mb, value, "memory", "MB"))
        return checks

    def describe(self) -> str:
        parts = []
        if self.max_quality_drop is not None:
            parts.append(f"quality drop <= {self.max_quality_drop:.2%}")
        if self.min_nn_agreement is not None:
            parts.append(f"NN agreement >= {self.min_nn_agreement:.1%}")
        if self.slo_p99_ms is not None:
            parts.append(f"p99 <= {self.slo_p99_ms:g} ms")
        if self.memory_cap_mb is not None:
            parts.append(f"memory <= {self.memory_cap_mb:g} MB")
        return ", ".join(parts) or "no constraints"


def _at_most(name: str, limit: float, value: float | None, label: str, unit: str) -> Check:
    ok = value is not None and value <= limit
    shown = "unmeasured" if value is None else f"{value:.3g} {unit}"
    return Check(name, limit, value, ok, f"{label} {shown} {'<=' if ok else '>'} {limit:g} {unit}")


# ------------------------------------------------------------------------- candidates


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
        return float("nan") if self.profile is None else float(getattr(self.profile, attr))

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


# ------------------------------------------------------------------------- recommendation


@dataclass
class Recommendation:
    """The chosen configuration, the checks it passed, and why it won."""

    candidate: Candidate
    reason: str
    checks: list[Check]
    objective: str
    runner_up: Candidate | None = None
    baseline: Candidate | None = None

    @property
    def items_per_joule_gain(self) -> float | None:
        """Items per joule against the baseline (both from the same meter and method)."""
        if self.baseline is None:
            return None
        return self.candidate.items_per_joule / self.baseline.items_per_joule

    @property
    def throughput_gain(self) -> float | None:
        if self.baseline is None:
            return None
        return self.candidate.throughput_items_per_s / self.baseline.throughput_items_per_s

    def to_dict(self) -> dict[str, Any]:
        row = {f"recommended_{k}": v for k, v in self.candidate.to_dict().items()}
        row.update(
            objective=self.objective,
            reason=self.reason,
            items_per_joule_gain=self.items_per_joule_gain,
            throughput_gain=self.throughput_gain,
        )
        return row


def recommend(
    candidates: Sequence[Candidate],
    constraints: Constraints,
    objective: str = "energy",
    baseline: Candidate | None = None,
) -> Recommendation:
    """The best measured configuration meeting every constraint, by ``objective``.

    Configurations measured longest (the last rung of a halving search) are preferred; raises
    :class:`ConstraintError` naming the unmet constraint(s) and the closest candidate.
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective={objective!r} is not one of {', '.join(OBJECTIVES)}")
    measured = [c for c in candidates if c.profile is not None]
    if not measured:
        raise ConstraintError(
            "no configuration was measured (every variant was skipped or the search stopped "
            "first): see the skipped list, or give the search more time (budget_s)"
        )
    feasible = [c for c in measured if all(ch.met for ch in constraints.checks(c))]
    if not feasible:
        raise ConstraintError(unmet_message(measured, constraints))
    top_rung = max(c.rung for c in feasible)
    deepest = min(c.measure_seconds for c in feasible if c.rung == top_rung)
    pool = sorted(
        (c for c in feasible if c.rung == top_rung or c.measure_seconds >= deepest),
        key=lambda c: (c.objective(objective), -c.throughput_items_per_s),
    )
    best = pool[0]
    runner_up = pool[1] if len(pool) > 1 else None
    checks = constraints.checks(best)
    metric, _ = OBJECTIVES[objective]
    reason = (
        f"{best.label} ({best.variant.backend}): the {_objective_words(objective)} "
        f"({_show(best, metric)}) of {len(pool)} configurations measured for "
        f"{deepest:g} s that meet every constraint"
        + (f" ({'; '.join(ch.text for ch in checks)})" if checks else "")
    )
    if baseline is not None and baseline.profile is not None:
        reason += (
            f"; {best.items_per_joule / baseline.items_per_joule:.1f}x items per joule "
            f"({best.energy_method}) and "
            f"{best.throughput_items_per_s / baseline.throughput_items_per_s:.1f}x throughput "
            f"of {baseline.label}"
        )
    if runner_up is not None:
        reason += f"; runner-up {runner_up.label} ({_show(runner_up, metric)})"
    return Recommendation(best, reason, checks, objective, runner_up, baseline)


def _objective_words(objective: str) -> str:
    return {
        "energy": "lowest energy per inference",
        "throughput": "highest throughput",
        "latency": "lowest p99 latency",
        "size": "smallest model",
    }[objective]


def _show(c: Candidate, metric: str) -> str:
    value = getattr(c, metric)
    unit = {
        "energy_j_per_item": " J/inference",
        "throughput_items_per_s": " items/s",
        "latency_ms_p99": " ms p99",
        "size_mb": " MB",
    }[metric]
    return f"{value:.4g}{unit}"


def unmet_message(candidates: Sequence[Candidate], constraints: Constraints) -> str:
    """Which constraint(s) nothing meets, and the closest candidate with what it misses."""
    per: dict[str, int] = {}
    texts: dict[str, str] = {}
    for c in candidates:
        for ch in constraints.checks(c):
            per[ch.constraint] = per.get(ch.constraint, 0) + ch.met
            texts[ch.constraint] = ch.text
    never = [k for k, n in per.items() if n == 0]
    closest = min(candidates, key=lambda c: sum(ch.excess for ch in constraints.checks(c)))
    missed = [ch for ch in constraints.checks(closest) if not ch.met]
    if never:
        head = (
            f"no configuration meets {', '.join(_constraint_words(k, constraints) for k in never)}"
        )
    else:
        head = "each constraint is met by some configuration but none meets them all"
    counts = ", ".join(
        f"{_constraint_words(k, constraints)}: {n} of {len(candidates)}" for k, n in per.items()
    )
    fix = "; ".join(_relax(ch) for ch in missed)
    return (
        f"{head} ({counts}). Closest candidate: {closest.label} "
        f"({'; '.join(ch.text for ch in missed)}). To accept it: {fix}"
    )


def _constraint_words(key: str, c: Constraints) -> str:
    return {
        "max_quality_drop": f"max quality drop {c.max_quality_drop:.2%}",
        "min_nn_agreement": f"min NN agreement {c.min_nn_agreement or 0:.1%}",
        "slo_p99_ms": f"p99 SLO {c.slo_p99_ms} ms",
        "memory_cap_mb": f"memory cap {c.memory_cap_mb} MB",
    }[key]


def _relax(ch: Check) -> str:
    if ch.value is None:
        return f"{ch.constraint} could not be measured for it"
    return {
        "max_quality_drop": f"allow a quality drop of {math.ceil(ch.value * 1e4) / 100:g}%",
        "min_nn_agreement": f"accept NN agreement {ch.value:.1%}",
        "slo_p99_ms": f"set the p99 SLO to {ch.value * 1.05:.3g} ms",
        "memory_cap_mb": f"raise the memory cap to {math.ceil(ch.value)} MB",
    }[ch.constraint]


# ------------------------------------------------------------------------- the search


@dataclass
class SearchResult:
    """What a search measured, skipped and recommended."""

    search_id: str
    model: str
    strategy: str
    objective: str
    constraints: Constraints
    candidates: list[Candidate]
    skipped: list[dict[str, str]]
    baseline: Candidate | None
    recommendation: Recommendation | None = None
    unmet: str | None = None
    interrupted: bool = False
    stopped: str | None = None
    seconds: float = 0.0

    def to_frame(self) -> pd.DataFrame:
        """One row per measured configuration."""
        return pd.DataFrame([c.to_dict() for c in self.candidates if c.profile is not None])

    def frontier(self) -> pd.DataFrame:
        """The Pareto frontier over quality drop, p99, J/inference and size."""
        frame = self.to_frame()
        return frame if frame.empty else pareto_frontier(frame).sort_values("energy_j_per_item")

    def variants_frame(self) -> pd.DataFrame:
        """One row per built variant: quality figures, size, and what was done."""
        seen: dict[str, Candidate] = {}
        for c in self.candidates:
            seen.setdefault(c.name, c)
        return pd.DataFrame(
            [
                {
                    "variant": c.name,
                    "family": c.variant.family,
                    "backend": c.variant.backend,
                    "size_mb": c.size_mb,
                    **c.quality.to_dict(),
                }
                for c in seen.values()
            ]
        )

    def summary(self) -> dict[str, Any]:
        """JSON-able outcome (stored as the ``optimize`` run)."""
        rec = self.recommendation
        out: dict[str, Any] = {
            "search_id": self.search_id,
            "model": self.model,
            "strategy": self.strategy,
            "objective": self.objective,
            "constraints": dataclasses.asdict(self.constraints),
            "search_seconds": self.seconds,
            "configurations_measured": len(self.to_frame()),
            "variants_skipped": len(self.skipped),
            "interrupted": self.interrupted,
            "stopped": self.stopped,
            "unmet": self.unmet,
        }
        if rec is not None:
            out.update(rec.to_dict())
        if self.baseline is not None and self.baseline.profile is not None:
            out.update({f"baseline_{k}": v for k, v in self.baseline.to_dict().items()})
        return out


def default_threads() -> list[int]:
    cores = logical_cores()
    return sorted({1, cores})


def optimize(
    model: Any,
    *,
    max_quality_drop: float | str | None = 0.01,
    slo_p99_ms: float | str | None = None,
    memory_cap_mb: float | None = None,
    min_nn_agreement: float | str | None = None,
    variants: Sequence[str | VariantSpec | Callable[..., Any]] | None = None,
    extra_variants: Sequence[str | VariantSpec | Callable[..., Any]] = (),
    batch_sizes: Sequence[int] = (1, 8, 32),
    threads: Sequence[int] | None = None,
    strategy: str = "halving",
    objective: str = "energy",
    budget_s: float | None = None,
    measure_seconds: float = 1.0,
    data: TaskData | Mapping[str, Any] | None = None,
    store: RunStore | str | Path | bool | None = None,
    meter: Any = None,
    seed: int = 0,
    work_dir: Path | None = None,
    progress: bool = True,
    stop: Callable[[], bool] | None = None,
) -> SearchResult:
    """Search compression variants x batch size x threads and recommend one configuration.

    Parameters
    ----------
    model: anything :func:`workbench.models.handle.load_model` takes.
    max_quality_drop, slo_p99_ms, memory_cap_mb, min_nn_agreement: see :class:`Constraints`;
        strings with units work (``"1%"``, ``"20ms"``).
    variants: names (see :func:`workbench.compress.registry.variant_specs`), specs, or callables
        ``fn(model) -> model``; default :data:`DEFAULT_VARIANTS`. ``extra_variants`` adds to it.
    batch_sizes, threads: the other axes (threads default: 1 and all cores).
    strategy: ``grid`` or ``halving``; objective: ``energy``, ``throughput``, ``latency`` or
        ``size``; budget_s: wall-clock budget of the whole search (stops and keeps results).
    measure_seconds: timing (and energy) window of a final measurement per configuration.
    data: held-out, calibration and training data (built in for the demo models): a
        :class:`~workbench.compress.quality.TaskData`, or the keyword arguments of
        :func:`~workbench.compress.quality.task_data` (``{"held_out": X, "labels": y}``).
    store: run store (``None``: default store; ``False``: none).
    stop: called between steps; returning true stops the search, keeping what finished.

    Example
    -------
    >>> result = optimize("digits-mlp", variants=["ort-int8-dynamic-per-channel"],
    ...                   batch_sizes=[8], threads=[1], measure_seconds=0.1, store=False,
    ...                   progress=False)  # doctest: +SKIP
    >>> result.recommendation.candidate.label  # doctest: +SKIP
    'ort-int8-dynamic-per-channel b=8 t=1'
    """
    constraints = Constraints(max_quality_drop, slo_p99_ms, memory_cap_mb, min_nn_agreement)
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy={strategy!r} is not one of {', '.join(STRATEGIES)}")
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective={objective!r} is not one of {', '.join(OBJECTIVES)}")
    if budget_s is not None and not budget_s > 0:
        raise ConfigError(f"budget_s={budget_s!r} must be > 0 seconds (or None for no limit)")
    if not measure_seconds >= MIN_MEASURE_SECONDS:
        raise ConfigError(f"measure_seconds={measure_seconds!r} must be >= {MIN_MEASURE_SECONDS}")
    batches = _check_batch_sizes(batch_sizes)
    thread_counts = sorted({check_threads(t) for t in (threads or default_threads())})
    specs = [get_spec(v) for v in (variants if variants is not None else DEFAULT_VARIANTS)]
    specs += [get_spec(v) for v in extra_variants]
    if not specs:
        raise ConfigError("variants is empty: name at least one variant to measure")

    run = _Search(
        constraints, strategy, objective, budget_s, measure_seconds, meter, store, progress, stop
    )
    return run.execute(model, specs, batches, thread_counts, data, seed, work_dir)


def _check_batch_sizes(values: Sequence[int]) -> list[int]:
    out = []
    for b in values:
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
            raise ConfigError(f"batch size {b!r} must be a whole number >= 1")
        out.append(int(b))
    if not out:
        raise ConfigError("batch_sizes is empty: give at least one, e.g. [1, 8, 32]")
    return sorted(set(out))


def measure_window(
    handle: ModelHandle,
    seconds: float,
    *,
    backend: str,
    batch_size: int,
    threads: int,
    device: str = "cpu",
    meter: Any = None,
) -> Profile:
    """How the search measures one configuration: back-to-back calls for ``seconds`` with energy
    over the same window, no idle baseline, no operator pass, nothing stored. Baselines compared
    with search results must be measured this way too."""
    return profile(
        handle,
        backend=backend,
        device=device,
        batch_size=batch_size,
        threads=threads,
        warmup=3,
        iterations=10**7,
        min_iterations=3,
        max_seconds=seconds,
        energy=True,
        energy_min_seconds=seconds,
        idle_seconds=0,
        operators=False,
        store=False,
        meter=meter,
    )


class _Search:
    """One search's state: the clock, the store, the skipped list and the measurements."""

    def __init__(
        self,
        constraints: Constraints,
        strategy: str,
        objective: str,
        budget_s: float | None,
        measure_seconds: float,
        meter: Any,
        store: Any,
        progress: bool,
        stop: Callable[[], bool] | None,
    ) -> None:
        self.constraints = constraints
        self.strategy = strategy
        self.objective = objective
        self.budget_s = budget_s
        self.measure_seconds = float(measure_seconds)
        self.meter = meter
        self.store_arg = store
        self.progress = progress
        self.stop_fn = stop
        self.start = time.monotonic()
        self.skipped: list[dict[str, str]] = []
        self.stopped: str | None = None
        self.search_id = uuid.uuid4().hex[:12]

    # -- control

    def should_stop(self) -> bool:
        if self.stopped:
            return True
        if self.budget_s is not None and time.monotonic() - self.start > self.budget_s:
            self.stopped = f"budget of {self.budget_s:g} s spent"
        elif self.stop_fn is not None and self.stop_fn():
            self.stopped = "stopped by the caller"
        return self.stopped is not None

    def skip(self, variant: str, stage: str, exc: BaseException) -> None:
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if not isinstance(exc, WorkbenchError):
            text = f"{type(exc).__name__}: {text}"
        self.skipped.append({"variant": variant, "stage": stage, "reason": text[:500]})

    # -- the steps

    def execute(
        self,
        model: Any,
        specs: list[VariantSpec],
        batches: list[int],
        threads: list[int],
        data: TaskData | Mapping[str, Any] | None,
        seed: int,
        work_dir: Path | None,
    ) -> SearchResult:
        from tqdm.auto import tqdm

        from workbench.energy import auto_meter

        handle = load_model(model)
        if not isinstance(data, TaskData):
            data = task_data(handle, seed=seed, **(data or {}))
        # time real held-out items (length-bucketed sentences), not synthetic inputs
        base = dataclasses.replace(handle, make_inputs=data.held_out.example_feed)
        work = work_dir or cache_dir() / "variants" / f"{handle.name}-{handle.fingerprint[:12]}"
        ctx = BuildContext(data, Path(work), seed)
        self.meter = self.meter or auto_meter()
        ref_backend = "torch" if base.torch_module is not None else "onnxruntime"
        ref_runner = make_runner(base, ref_backend)
        try:
            reference = predict(ref_runner, data.held_out)
        finally:
            ref_runner.close()

        candidates: list[Candidate] = []
        baseline: Candidate | None = None
        interrupted = False
        with open_store(self.store_arg) as db:
            self.db = None if self.store_arg is False else db  # False: keep no record
            try:
                bar = tqdm(
                    specs,
                    desc=f"building {handle.name} variants",
                    unit="variant",
                    disable=not self.progress,
                )
                built: list[tuple[Variant, Quality]] = []
                for spec in bar:
                    if self.should_stop():
                        break
                    bar.set_postfix_str(spec.name)
                    got = self.build(spec, base, ctx, reference, data)
                    if got is not None:
                        built.append(got)
                bar.close()
                baseline = self.baseline(base, ctx, reference, data, built)
                for variant, quality in built:
                    device_threads = threads if variant.device == "cpu" else [threads[-1]]
                    for b in batches:
                        for t in device_threads:
                            candidates.append(Candidate(variant, quality, b, t))
                if baseline is not None:
                    same = [c for c in candidates if _same_config(c, baseline)]
                    if same:
                        candidates[candidates.index(same[0])] = baseline
                    else:
                        candidates.insert(0, baseline)
                if self.strategy == "grid":
                    self.rung(candidates, self.measure_seconds, 0, handle.name)
                else:
                    self.halving(candidates, handle.name)
            except KeyboardInterrupt:
                interrupted = True
            result = SearchResult(
                self.search_id,
                handle.name,
                self.strategy,
                self.objective,
                self.constraints,
                candidates,
                self.skipped,
                baseline,
                interrupted=interrupted,
                stopped=self.stopped,
            )
            try:
                result.recommendation = recommend(
                    candidates, self.constraints, self.objective, baseline
                )
            except ConstraintError as exc:
                result.unmet = str(exc)
            result.seconds = time.monotonic() - self.start
            if db is not None:
                frontier = result.frontier().to_dict(orient="records")
                db.add(
                    "optimize",
                    model=handle.name,
                    fingerprint=handle.fingerprint,
                    config={
                        "strategy": self.strategy,
                        "objective": self.objective,
                        "constraints": dataclasses.asdict(self.constraints),
                        "variants": [s.name for s in specs],
                        "batch_sizes": batches,
                        "threads": threads,
                    },
                    metrics=result.summary(),
                    sweep_id=self.search_id,
                    details={"skipped": self.skipped, "frontier": frontier},
                )
        return result

    def build(
        self,
        spec: VariantSpec,
        base: ModelHandle,
        ctx: BuildContext,
        reference: np.ndarray,
        data: TaskData,
    ) -> tuple[Variant, Quality] | None:
        started = time.monotonic()
        try:
            variant = build_variant(spec, base, ctx)
            variant.metadata["build_seconds"] = round(time.monotonic() - started, 3)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # VariantSkipped, or a conversion failure: the search goes on
            self.skip(spec.name, "build", exc)
            return None
        try:
            runner = make_runner(variant.handle, variant.backend, variant.device)
            try:
                outputs = predict(runner, data.held_out)
            finally:
                runner.close()
            quality = evaluate(outputs, reference, data)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            self.skip(spec.name, "quality", exc)
            return None
        return variant, quality

    def baseline(
        self,
        base: ModelHandle,
        ctx: BuildContext,
        reference: np.ndarray,
        data: TaskData,
        built: list[tuple[Variant, Quality]],
    ) -> Candidate | None:
        """fp32 PyTorch eager at batch 1 on all cores, measured for the full window."""
        if base.torch_module is None:
            return None
        found = next(((v, q) for v, q in built if v.name == "torch-fp32"), None)
        if found is None:
            found = self.build(get_spec("torch-fp32"), base, ctx, reference, data)
            if found is None:
                return None
        cand = Candidate(found[0], found[1], 1, logical_cores())
        if not self.should_stop():
            self.measure(cand, self.measure_seconds, 0, base.name)
        return cand

    def halving(self, candidates: list[Candidate], model: str) -> None:
        n = len(candidates)
        rungs = max(0, math.ceil(math.log(max(n, 1) / HALVING_ETA, HALVING_ETA))) + 1
        alive = list(candidates)
        for k in range(rungs):
            seconds = max(
                MIN_MEASURE_SECONDS, self.measure_seconds / HALVING_ETA ** (rungs - 1 - k)
            )
            self.rung(alive, seconds, k, model)
            if k == rungs - 1 or self.stopped:
                return
            ranked = sorted(alive, key=self.rank_key)
            alive = ranked[: max(1, math.ceil(len(alive) / HALVING_ETA))]

    def rank_key(self, c: Candidate) -> tuple[int, float, float]:
        if c.profile is None:
            return (2, float("inf"), float("inf"))
        checks = self.constraints.checks(c)
        excess = sum(ch.excess for ch in checks)
        return (0 if excess == 0 else 1, excess, c.objective(self.objective))

    def rung(self, alive: list[Candidate], seconds: float, k: int, model: str) -> None:
        from tqdm.auto import tqdm

        todo = [c for c in alive if c.measure_seconds < seconds]
        if not todo:
            return
        bar = tqdm(
            todo, desc=f"rung {k}: {seconds:.2g} s each", unit="config", disable=not self.progress
        )
        for c in bar:
            if self.should_stop():
                break
            bar.set_postfix_str(c.label)
            self.measure(c, seconds, k, model)
        bar.close()

    def measure(self, c: Candidate, seconds: float, rung: int, model: str) -> None:
        try:
            p = measure_window(
                c.variant.handle,
                seconds,
                backend=c.variant.backend,
                device=c.variant.device,
                batch_size=c.batch_size,
                threads=c.threads,
                meter=self.meter,
            )
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            self.skip(c.label, "profile", exc)
            return
        c.profile, c.rung, c.measure_seconds = p, rung, seconds
        if self.db is not None:
            c.run_id = self.db.add(
                "variant",
                model=model,
                fingerprint=c.variant.handle.fingerprint,
                config={
                    **p.config_dict(),
                    "variant": c.name,
                    "family": c.variant.family,
                    "params": c.variant.params,
                    "strategy": self.strategy,
                    "rung": rung,
                    "measure_seconds": seconds,
                },
                metrics={
                    **p.metrics_dict(),
                    **c.quality.to_dict(),
                    "variant": c.name,
                    "memory_mb": c.memory_mb,
                    "memory_method": "estimated: model size + measured peak RSS growth",
                    "items_per_joule": c.items_per_joule,
                },
                environment=p.environment,
                sweep_id=self.search_id,
                details={"variant_metadata": c.variant.metadata},
            )


def _same_config(a: Candidate, b: Candidate) -> bool:
    return (a.name, a.batch_size, a.threads) == (b.name, b.batch_size, b.threads)
