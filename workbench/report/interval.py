"""Bootstrap intervals for the gate: how much of a change between repeated runs noise explains.

One side of a comparison (the baseline or the candidate) is one or more profile runs. Each run
stores its own figures over all its timed calls (``latency_ms_p99``, ``throughput_items_per_s``,
``energy_j_per_item``) and up to 5000 of its raw latency samples (``details["latencies_ms"]``,
evenly thinned). A side's figure is the mean of its runs' figures.

:func:`resample_side` draws ``resamples`` bootstrap replicates of a side, at two levels, because a
shared machine is noisy at both: the **runs** are drawn with replacement (between-run noise:
another process, the CPU's clock), and within each drawn run its **latency samples** are drawn
with replacement (within-run noise); a run's p99 in a replicate is its stored p99 times the ratio
of the resampled p99 to the p99 of its stored samples, its throughput likewise by the ratio of
mean latencies, so the point figures stay exactly the stored ones. Energy is one reading per run,
so it varies between runs only. A run drawn twice in one replicate reuses that replicate's
resample of it, which widens the interval a little: the cautious side for a gate.

:func:`change_interval` turns two sides' replicates into the percentile interval of the percent
change. The generator is seeded (numpy only), so a verdict is reproducible.

Example
-------
>>> rng = np.random.default_rng(0)
>>> def side(scale, run_ids):
...     samples = [rng.lognormal(0.0, 0.3, 2000) * scale for _ in run_ids]
...     return SideSamples.from_figures(run_ids, samples)
>>> base, same, slow = side(1.0, (1, 2, 3)), side(1.0, (4, 5, 6)), side(1.5, (7, 8, 9))
>>> gen = np.random.default_rng(0)
>>> b, s, w = (resample_side(x, 500, gen) for x in (base, same, slow))
>>> low, high = change_interval(b.p99_ms, s.p99_ms)
>>> low < 0 < high  # same distribution: no change is inside the interval
True
>>> change_interval(b.p99_ms, w.p99_ms)[0] > 30  # 1.5x slower: even the lower bound says so
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from workbench.checks import number, whole

#: Most samples drawn at once (replicates x samples of one run), to bound memory.
_CHUNK_DRAWS = 2_000_000


@dataclass(frozen=True)
class SideSamples:
    """One side's runs: their stored figures (one value per run) and raw latency samples."""

    run_ids: tuple[int, ...]
    p99_ms: np.ndarray
    throughput_items_per_s: np.ndarray
    energy_j_per_item: np.ndarray
    latencies_ms: tuple[np.ndarray, ...]

    @classmethod
    def from_figures(
        cls,
        run_ids: Sequence[int],
        latencies_ms: Sequence[Sequence[float]],
        *,
        p99_ms: Sequence[float] | None = None,
        throughput_items_per_s: Sequence[float] | None = None,
        energy_j_per_item: Sequence[float] | None = None,
    ) -> SideSamples:
        """A side from its runs; figures not given are computed from the samples (batch 1)."""
        lat = tuple(np.asarray(x, dtype=np.float64) for x in latencies_ms)
        if p99_ms is None:
            p99_ms = [float(np.percentile(x, 99)) for x in lat]
        if throughput_items_per_s is None:
            throughput_items_per_s = [1e3 / float(x.mean()) for x in lat]
        if energy_j_per_item is None:
            energy_j_per_item = [0.0] * len(lat)
        return cls(
            tuple(int(r) for r in run_ids),
            np.asarray(p99_ms, dtype=np.float64),
            np.asarray(throughput_items_per_s, dtype=np.float64),
            np.asarray(energy_j_per_item, dtype=np.float64),
            lat,
        )

    @property
    def with_samples(self) -> int:
        """How many of the runs store latency samples to resample."""
        return sum(1 for x in self.latencies_ms if x.size)


@dataclass(frozen=True)
class Replicates:
    """Bootstrap replicates of one side's figures: one value per replicate."""

    p99_ms: np.ndarray
    throughput_items_per_s: np.ndarray
    energy_j_per_item: np.ndarray


def _within_run(lat: np.ndarray, resamples: int, rng: np.random.Generator) -> tuple:
    """Per replicate: resampled p99 / stored p99, and stored mean / resampled mean latency."""
    ref_p99, ref_mean = float(np.percentile(lat, 99)), float(lat.mean())
    p99 = np.empty(resamples)
    speed = np.empty(resamples)
    chunk = max(1, _CHUNK_DRAWS // lat.size)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        draw = lat[rng.integers(0, lat.size, size=(stop - start, lat.size))]
        p99[start:stop] = np.percentile(draw, 99, axis=1) / ref_p99 if ref_p99 > 0 else 1.0
        speed[start:stop] = ref_mean / draw.mean(axis=1) if ref_mean > 0 else 1.0
    return p99, speed


def resample_side(side: SideSamples, resamples: int, rng: np.random.Generator) -> Replicates:
    """``resamples`` replicates of the side's mean p99, throughput and energy (see the module)."""
    whole("resamples", resamples, minimum=1, fix="give the number of bootstrap draws, e.g. 1000")
    k = len(side.run_ids)
    chosen = rng.integers(0, k, size=(resamples, k))
    p99_factor = np.ones((k, resamples))
    speed_factor = np.ones((k, resamples))
    for i, lat in enumerate(side.latencies_ms):
        if lat.size:
            p99_factor[i], speed_factor[i] = _within_run(lat, resamples, rng)
    replicate = np.arange(resamples)[:, None]
    return Replicates(
        p99_ms=(side.p99_ms[chosen] * p99_factor[chosen, replicate]).mean(axis=1),
        throughput_items_per_s=(
            side.throughput_items_per_s[chosen] * speed_factor[chosen, replicate]
        ).mean(axis=1),
        energy_j_per_item=side.energy_j_per_item[chosen].mean(axis=1),
    )


def change_interval(
    baseline: np.ndarray, candidate: np.ndarray, confidence: float = 0.95
) -> tuple[float, float]:
    """The ``confidence`` percentile interval of the percent change, candidate over baseline."""
    number("confidence", confidence, minimum=0.5, maximum=0.999, fix="e.g. 0.95")
    base = np.asarray(baseline, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        change = (cand / base - 1.0) * 100.0
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.nanpercentile(change, [tail, 100.0 - tail])
    return float(low), float(high)
