"""The user's limits on a recommendation, and the units they are written in.

``parse_fraction`` and ``parse_ms`` read a share (``"1%"``, ``0.01``) and a duration (``"20ms"``,
``"0.5 s"``, ``"800us"``); :class:`Constraints` holds the limits (``None`` leaves one open) and
checks a measured configuration against them, one :class:`Check` per limit.

Example
-------
>>> parse_fraction("1%"), parse_ms("20ms"), parse_ms("0.5 s")
(0.01, 20.0, 500.0)
>>> Constraints(max_quality_drop="1%", slo_p99_ms="20ms").describe()
'quality drop <= 1.00%, p99 <= 20 ms'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from workbench.checks import duration
from workbench.compress.quality import Quality
from workbench.errors import ConfigError

if TYPE_CHECKING:
    from workbench.compress.search.candidates import Candidate


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
    return duration(
        field_name,
        value,
        unit="ms",
        units=("ms", "s", "us", "µs"),
        fix="give a duration > 0 with a unit, e.g. 20ms, 0.5s or 800us",
    )


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
