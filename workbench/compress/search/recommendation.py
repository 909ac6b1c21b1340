"""The choice: the best measured configuration that meets every constraint, and why it won.

:func:`recommend` keeps the configurations measured longest that meet every constraint and
picks the best by the objective (``energy``, ``throughput``, ``latency`` or ``size``), with a
reason naming its figures, the runner-up and the gain over the baseline. When nothing meets the
constraints it raises :class:`~workbench.errors.ConstraintError` with :func:`unmet_message`: the
constraint(s) nothing meets, the closest candidate, and the setting that would accept it.

Example
-------
>>> from workbench.compress.quality import Quality
>>> from workbench.compress.registry import Variant
>>> from workbench.compress.search.candidates import Candidate
>>> from workbench.compress.search.constraints import Constraints
>>> int8 = Variant("ort-int8-dynamic", "quantization", {}, None, "onnxruntime", 0.3, 0, None)
>>> quality = Quality("accuracy", 0.95, 0.97, 0.02, 360, 0.1, "digits test split")
>>> print(unmet_message([Candidate(int8, quality, 1, 1)], Constraints(max_quality_drop="1%")))
... # doctest: +NORMALIZE_WHITESPACE
no configuration meets max quality drop 1.00% (max quality drop 1.00%: 0 of 1). Closest
candidate: ort-int8-dynamic b=1 t=1 (quality drop 2.00% > 1.00%). To accept it: allow a quality
drop of 2%
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from workbench.compress.search.candidates import OBJECTIVES, Candidate
from workbench.compress.search.constraints import Check, Constraints
from workbench.errors import ConfigError, ConstraintError


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
