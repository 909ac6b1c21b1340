"""Where a recommendation's gain comes from: the chain from the baseline to the winner, one change
at a time, each configuration measured.

A search's headline ("12x items per joule over fp32 PyTorch eager at batch 1") mixes several
causes: a faster runtime, another thread count, batching, and the compression itself. This module
splits it. The chain has five configurations, each differing from the one before in ONE of
:data:`STEPS`, in this order:

1. the baseline: fp32 PyTorch eager, batch 1, the baseline's threads (the search's measurement);
2. ``runtime``: the winner's backend and device, fp32, batch 1, the baseline's threads;
3. ``threads``: ... at the winner's thread count;
4. ``batch_size``: ... at the winner's batch size;
5. ``compression``: the winner itself (fp32 -> the winner's variant; the search's measurement).

Each step's ratio is (figure after) / (figure before), for items per joule and items per second;
the ratios multiply to the total gain because every intermediate figure appears once above and
once below the line. :func:`attribute_gain` does the arithmetic on measured configurations and
checks the product against the total (:data:`PRODUCT_TOLERANCE`); :func:`measure_attribution`
builds the chain from a search's baseline and winner and measures the three configurations in
between (reusing a configuration the search measured for the same window, and the previous one
where a step changes nothing: ratio 1, still listed).

Example
-------
>>> base = ChainConfig("torch-fp32", "torch", "cpu", 1, 2)
>>> win = ChainConfig("ort-int8-dynamic", "onnxruntime", "cpu", 32, 1)
>>> configs = chain_configs(base, win)
>>> [c.label for c in configs]  # doctest: +NORMALIZE_WHITESPACE
['torch-fp32 b=1 t=2', 'ort-fp32 b=1 t=2', 'ort-fp32 b=1 t=1', 'ort-fp32 b=32 t=1',
 'ort-int8-dynamic b=32 t=1']
>>> figures = [(100, 1000), (300, 2000), (360, 2000), (720, 6000), (1200, 9000)]
>>> points = [MeasuredConfig(c, j, s, "estimated", 1.0) for c, (j, s) in zip(configs, figures)]
>>> result = attribute_gain(points)
>>> [round(s.items_per_j_ratio, 2) for s in result.steps]
[3.0, 1.2, 2.0, 1.67]
>>> round(result.total_items_per_j_gain, 2), round(result.product, 2), result.consistent
(12.0, 12.0, True)
>>> result.summary()  # doctest: +NORMALIZE_WHITESPACE
'of the 12.0x items/J (estimated), compression itself bought 1.7x; runtime 3.0x, threads 1.2x,
 batch size 2.0x'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import pandas as pd

from workbench.compress.search.candidates import Candidate
from workbench.errors import ConfigError
from workbench.provenance import METHODS, weakest_method

#: The steps of the chain, in order, each with the one field of :class:`ChainConfig` it changes
#: (``runtime`` changes the backend and device together, and with them the fp32 variant's name).
STEPS = ("runtime", "threads", "batch_size", "compression")
_CHANGES = {
    "runtime": {"variant", "backend", "device"},
    "threads": {"threads"},
    "batch_size": {"batch_size"},
    "compression": {"variant"},
}
#: The fp32 form of the model on each backend: what the chain runs before the compression step.
FP32_VARIANTS = {"torch": "torch-fp32", "onnxruntime": "ort-fp32"}
#: Largest relative gap between the product of the step ratios and the total gain (the chain
#: telescopes, so only rounding separates them; a larger gap means the endpoints are not the
#: search's baseline and winner).
PRODUCT_TOLERANCE = 0.01
#: Where a chain figure came from.
SOURCES = ("search baseline", "search winner", "search measurement", "measured", "unchanged")


@dataclass(frozen=True)
class ChainConfig:
    """One configuration of the chain: a variant on a backend and device, batch size, threads."""

    variant: str
    backend: str
    device: str
    batch_size: int
    threads: int

    @property
    def label(self) -> str:
        where = "" if self.device == "cpu" else f" on {self.device}"
        return f"{self.variant} b={self.batch_size} t={self.threads}{where}"

    @classmethod
    def of(cls, c: Candidate) -> ChainConfig:
        return cls(c.name, c.variant.backend, c.variant.device, c.batch_size, c.threads)


@dataclass(frozen=True)
class MeasuredConfig:
    """A chain configuration with its measured figures (``source``: one of :data:`SOURCES`)."""

    config: ChainConfig
    items_per_j: float
    items_per_s: float
    energy_method: str
    measure_seconds: float
    source: str = "measured"

    @classmethod
    def of(cls, c: Candidate, source: str) -> MeasuredConfig:
        """A search candidate's own measurement."""
        return cls(
            ChainConfig.of(c),
            c.items_per_joule,
            c.throughput_items_per_s,
            c.energy_method,
            c.measure_seconds,
            source,
        )


@dataclass(frozen=True)
class GainStep:
    """One step of the chain: what changed, and the ratios of the figures after and before."""

    step: str
    from_config: ChainConfig
    to_config: ChainConfig
    items_per_j_ratio: float
    items_per_s_ratio: float
    energy_method: str  # the weaker of the two items-per-joule figures' methods
    changes: str  # e.g. "threads 2 -> 1", or "no change"

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "from": self.from_config.label,
            "to": self.to_config.label,
            "changes": self.changes,
            "items_per_j_ratio": self.items_per_j_ratio,
            "items_per_s_ratio": self.items_per_s_ratio,
            "energy_method": self.energy_method,
        }


@dataclass
class GainAttribution:
    """The total gain of the winner over the baseline, split into :data:`STEPS`.

    ``total_*`` compare the chain's endpoints directly; ``product`` (items per joule) and
    ``product_items_per_s`` multiply the step ratios; ``consistent`` says both products are within
    :data:`PRODUCT_TOLERANCE` of their totals.
    """

    steps: list[GainStep]
    points: list[MeasuredConfig] = field(repr=False)
    total_items_per_j_gain: float
    total_items_per_s_gain: float
    product: float
    product_items_per_s: float
    consistent: bool
    energy_method: str  # the weakest over every figure in the chain

    #: The columns of :meth:`to_frame` a table shows (the CLI, the compression panel).
    SUMMARY_COLUMNS = (
        "step",
        "from",
        "to",
        "items_per_j_ratio",
        "items_per_s_ratio",
        "energy_method",
    )

    def to_frame(self) -> pd.DataFrame:
        """One row per step: step, from, to, changes, both ratios, energy method."""
        return pd.DataFrame([s.to_dict() for s in self.steps])

    def ratio(self, step: str, metric: str = "items_per_j") -> float:
        """One step's ratio (``metric``: ``items_per_j`` or ``items_per_s``)."""
        found = next((s for s in self.steps if s.step == step), None)
        if found is None:
            raise ConfigError(f"step={step!r} is not one of {', '.join(STEPS)}")
        return found.items_per_j_ratio if metric == "items_per_j" else found.items_per_s_ratio

    def summary(self) -> str:
        """One line: what compression itself bought out of the total, then the other steps."""
        others = ", ".join(
            f"{s.step.replace('_', ' ')} {s.items_per_j_ratio:.1f}x"
            for s in self.steps
            if s.step != "compression"
        )
        return (
            f"of the {self.total_items_per_j_gain:.1f}x items/J ({self.energy_method}), "
            f"compression itself bought {self.ratio('compression'):.1f}x; {others}"
        )

    def check_line(self) -> str:
        """The telescoping check in words: the product of the steps against the total gain."""
        verdict = "ok" if self.consistent else "FAILED"
        return (
            f"product of the steps: {self.product:.3g}x items/J, {self.product_items_per_s:.3g}x "
            f"items/s; total (winner / baseline): {self.total_items_per_j_gain:.3g}x, "
            f"{self.total_items_per_s_gain:.3g}x (within {PRODUCT_TOLERANCE:.0%}: {verdict})"
        )

    def metrics(self) -> dict[str, Any]:
        """Flat scalars for the run store (``attribution_<step>_items_per_j_ratio``, ...)."""
        out: dict[str, Any] = {
            "attribution_total_items_per_j_gain": self.total_items_per_j_gain,
            "attribution_product_items_per_j": self.product,
            "attribution_total_items_per_s_gain": self.total_items_per_s_gain,
            "attribution_product_items_per_s": self.product_items_per_s,
            "attribution_consistent": self.consistent,
            "attribution_energy_method": self.energy_method,
        }
        for s in self.steps:
            out[f"attribution_{s.step}_items_per_j_ratio"] = s.items_per_j_ratio
            out[f"attribution_{s.step}_items_per_s_ratio"] = s.items_per_s_ratio
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: the totals, the steps and every configuration with its figures."""
        return {
            **self.metrics(),
            "summary": self.summary(),
            "steps": [s.to_dict() for s in self.steps],
            "configurations": [
                {**asdict(p.config), **{k: v for k, v in asdict(p).items() if k != "config"}}
                for p in self.points
            ],
        }


def fp32_variant(backend: str) -> str:
    """The fp32 variant on ``backend`` (the chain's configuration before compression)."""
    if backend not in FP32_VARIANTS:
        raise ConfigError(
            f"backend={backend!r} has no fp32 variant to attribute against; backends: "
            f"{', '.join(FP32_VARIANTS)}"
        )
    return FP32_VARIANTS[backend]


def chain_configs(baseline: ChainConfig, winner: ChainConfig) -> list[ChainConfig]:
    """The five configurations from ``baseline`` to ``winner``, one change per step."""
    runtime = replace(
        baseline,
        variant=fp32_variant(winner.backend),
        backend=winner.backend,
        device=winner.device,
    )
    threads = replace(runtime, threads=winner.threads)
    batch = replace(threads, batch_size=winner.batch_size)
    return [baseline, runtime, threads, batch, winner]


def _changes(before: ChainConfig, after: ChainConfig) -> dict[str, tuple[Any, Any]]:
    a, b = asdict(before), asdict(after)
    return {k: (a[k], b[k]) for k in a if a[k] != b[k]}


def _method(*methods: str) -> str:
    """The weakest label; a label outside :data:`~workbench.provenance.METHODS` (``unmeasured``)
    wins, since no figure is worse than a missing one."""
    odd = [m for m in methods if m not in METHODS]
    return odd[0] if odd else weakest_method(*methods)


def _ratio(after: float, before: float) -> float:
    return after / before if before > 0 and math.isfinite(before) else float("nan")


def attribute_gain(points: Sequence[MeasuredConfig]) -> GainAttribution:
    """The table from five measured configurations (the output of :func:`chain_configs`, measured):
    each step's ratios, the totals, their products and the consistency check.

    Raises :class:`ConfigError` if there are not five, or a step changes more than its own field.
    """
    if len(points) != len(STEPS) + 1:
        raise ConfigError(
            f"a gain attribution needs {len(STEPS) + 1} configurations (baseline, one per step "
            f"{', '.join(STEPS)}), got {len(points)}: build them with chain_configs"
        )
    steps = []
    for name, before, after in zip(STEPS, points, points[1:], strict=False):
        changed = _changes(before.config, after.config)
        if not set(changed) <= _CHANGES[name]:
            raise ConfigError(
                f"step {name!r} changes {sorted(changed)}; it may change only "
                f"{sorted(_CHANGES[name])}: build the chain with chain_configs"
            )
        text = "; ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items()) or "no change"
        steps.append(
            GainStep(
                name,
                before.config,
                after.config,
                _ratio(after.items_per_j, before.items_per_j),
                _ratio(after.items_per_s, before.items_per_s),
                _method(before.energy_method, after.energy_method),
                text,
            )
        )
    total_j = _ratio(points[-1].items_per_j, points[0].items_per_j)
    total_s = _ratio(points[-1].items_per_s, points[0].items_per_s)
    product_j = math.prod(s.items_per_j_ratio for s in steps)
    product_s = math.prod(s.items_per_s_ratio for s in steps)
    consistent = all(
        math.isfinite(p) and math.isfinite(t) and abs(p / t - 1) <= PRODUCT_TOLERANCE
        for p, t in ((product_j, total_j), (product_s, total_s))
    )
    return GainAttribution(
        steps,
        list(points),
        total_j,
        total_s,
        product_j,
        product_s,
        consistent,
        _method(*(p.energy_method for p in points)),
    )


def measure_attribution(
    baseline: Candidate,
    winner: Candidate,
    measure: Callable[[ChainConfig], MeasuredConfig],
    measured: Sequence[Candidate] = (),
) -> GainAttribution:
    """The chain from a search's ``baseline`` to its ``winner``, their own measurements at the
    ends, ``measure(config)`` in between.

    An intermediate configuration equal to the one before reuses that figure (the step changes
    nothing: ratio 1); one the search measured for at least the winner's window (in
    ``measured``, the winner included) reuses the search's figure.
    """
    configs = chain_configs(ChainConfig.of(baseline), ChainConfig.of(winner))
    window = winner.measure_seconds
    known = {
        ChainConfig.of(c): c
        for c in measured
        if c.profile is not None and c.measure_seconds >= window
    }
    points = [MeasuredConfig.of(baseline, "search baseline")]
    for config in configs[1:-1]:
        if config == points[-1].config:
            points.append(replace(points[-1], source="unchanged"))
        elif config in known:
            c = known[config]
            source = "search winner" if c is winner else "search measurement"
            points.append(MeasuredConfig.of(c, source))
        else:
            points.append(measure(config))
    points.append(MeasuredConfig.of(winner, "search winner"))
    return attribute_gain(points)
