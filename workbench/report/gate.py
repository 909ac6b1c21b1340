"""A deployment gate on cost and latency: repeated candidate runs against repeated baseline runs.

:func:`compare_runs` reads profile runs from the run store (one or more baseline runs and one or
more candidate runs) and checks the candidate against thresholds: **cost per million
predictions** (from :mod:`workbench.cost.model` on each side's measured throughput and energy) and
**p99 latency** may rise by at most a given percent. The result is a :class:`Gate`;
:meth:`Gate.raise_for_regression` raises :class:`~workbench.errors.RegressionError`, so a notebook
run by papermill (and ``workbench report``) fails and CI or cron can stop a deployment.
:func:`workbench.report.html.write_html_report` writes the gate as one self-contained HTML file.

One host
--------
Timings from two machines are not comparable. Every run stores its environment; the gate reads
each run's host fingerprint (:func:`workbench.report.host.host_fingerprint`: CPU model, logical
cores, memory, GPU, OS and architecture) and refuses, with :class:`~workbench.errors.ConfigError`
naming both fingerprints, a baseline and a candidate from different (or unrecorded) hosts.
``allow_other_host=True`` compares them anyway and says so loudly in the summary, the notes and
the report.

Repeats and the interval
------------------------
A single pair of runs cannot tell a regression from noise: on a shared machine p99 moves by tens
of percent between two runs of the same model. Each side's figure is the mean over its runs; a
seeded bootstrap (:mod:`workbench.report.interval`: runs resampled with replacement, and each run's
stored latency samples within it) gives a 95 % interval of each percent change. A gated check
**fails only when the interval's lower bound is beyond the limit**, a rise noise alone does not
explain; its message says which bound decided. ``workbench report --repeats N`` profiles the
candidate N times; the baseline may be several run ids.

Cost per million predictions
----------------------------
Both sides are costed by :func:`workbench.cost.model.compute_cost` with the same traffic, price
and grid: inference inputs come from :func:`workbench.cost.scenarios.inference_inputs_from_run`
(measured ``throughput_items_per_s`` and ``energy_j_per_item``, the mean over the side's runs),
the price of one instance-hour from :class:`Pricing` (by default the list price of
``aws-c6i.large`` in the shipped hardware table, typed in). Instances come in whole numbers, so at
low traffic one instance serves everything and a slower model costs the same; unless
``requests_per_day`` is given, the traffic is set **at scale**, to what :data:`AT_SCALE_INSTANCES`
baseline instances serve at the target utilisation, where whole-instance rounding moves the
figure by under 1 %. The figure is ``estimated``: a measured throughput times a typed-in price.

Rehearsing the gate
-------------------
:func:`with_extra_work` writes a copy of a model whose every forward pass also runs a chain of
real matrix multiplications (their result is added to the output times zero, so predictions do
not change). Profiling it is a real, measured regression, for checking that a gate trips.

Example
-------
>>> from workbench.measure.store import RunStore
>>> store = RunStore(":memory:")
>>> env = {"cpu_model": "Example CPU", "logical_cores": 2, "gpu": None, "os": "Linux-x86_64"}
>>> def add(throughput, p99):
...     return store.add("profile", model="m", fingerprint="f", config={"batch_size": 1},
...                      metrics={"throughput_items_per_s": throughput, "latency_ms_p99": p99,
...                               "energy_j_per_item": 1e-3, "energy_method": "estimated"},
...                      environment=env)
>>> base, slow = [add(1000.0, 2.0), add(990.0, 2.1)], [add(500.0, 4.0), add(520.0, 4.1)]
>>> gate = compare_runs(store, base, slow, Thresholds(max_cost_increase_pct=10))
>>> gate.passed, [round(c.change_pct) for c in gate.gated], [c.decided_by for c in gate.gated]
(False, [96, 98], ['lower bound', 'lower bound'])
>>> gate.host.same_host
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.checks import number, whole
from workbench.cost.model import CostReport, GridInputs, InferenceInputs, Scenario, compute_cost
from workbench.cost.scenarios import inference_inputs_from_run, measured_figures
from workbench.energy.carbon import carbon_intensity
from workbench.errors import ConfigError, RegressionError
from workbench.measure.store import Run, RunStore
from workbench.provenance import weakest_method
from workbench.report.host import HostCheck, compare_hosts
from workbench.report.interval import (
    Replicates,
    SideSamples,
    change_interval,
    resample_side,
)

#: Baseline instances whose capacity sets the traffic "at scale" (rounding under 1 %).
AT_SCALE_INSTANCES = 100
#: Hardware-table entry whose list price is the default instance price (2 vCPU, like a laptop).
DEFAULT_HARDWARE = "aws-c6i.large"
#: Configuration fields that should match for a like-for-like comparison.
LIKE_FOR_LIKE = ("backend", "device", "batch_size", "threads")
#: Bootstrap draws per verdict: enough for a stable 95 % interval, under a second to compute.
RESAMPLES = 1000


@dataclass(frozen=True)
class Thresholds:
    """How much worse the candidate may be than the baseline, in percent (0 = no worse)."""

    max_cost_increase_pct: float = 10.0
    max_p99_increase_pct: float = 20.0

    def __post_init__(self) -> None:
        for name in ("max_cost_increase_pct", "max_p99_increase_pct"):
            fix = "give the percent the candidate may be worse than the baseline, e.g. 10"
            number(name, getattr(self, name), minimum=0, fix=fix)


@dataclass(frozen=True)
class Pricing:
    """Traffic, price and grid used to cost both runs the same way.

    ``instance_usd_per_h=None`` takes the list price of :data:`DEFAULT_HARDWARE`;
    ``requests_per_day=None`` sets the traffic at scale (see the module docstring).
    """

    instance_usd_per_h: float | None = None
    utilisation: float = 0.5
    requests_per_day: float | None = None
    lifetime_months: float = 12.0
    electricity_usd_per_kwh: float = 0.15
    pue: float = 1.4
    region: str | None = None

    def usd_per_h(self) -> tuple[float, str]:
        """The instance price and where it came from."""
        if self.instance_usd_per_h is not None:
            return float(self.instance_usd_per_h), "typed in"
        from workbench.plan.sizing import load_hardware

        entry = next(h for h in load_hardware() if h.name == DEFAULT_HARDWARE)
        return entry.usd_per_h, f"{DEFAULT_HARDWARE} list price (hardware table)"


@dataclass(frozen=True)
class Check:
    """One metric of the candidate against the baseline; ``limit_pct=None`` is shown, not gated.

    ``baseline`` and ``candidate`` are each side's mean over its runs; ``low_pct``/``high_pct``
    the bootstrap interval of the percent change (``None``: no interval, the point decides).
    """

    metric: str
    label: str
    unit: str
    baseline: float
    candidate: float
    limit_pct: float | None
    method: str
    higher_is_better: bool = False
    low_pct: float | None = None
    high_pct: float | None = None
    confidence: float = 0.95

    @property
    def change_pct(self) -> float:
        """Percent change from baseline to candidate (+ means the figure went up)."""
        return (self.candidate / self.baseline - 1.0) * 100.0 if self.baseline else math.inf

    def _worse(self) -> tuple[float, float, str, str]:
        """The interval as "percent worse": (least worse, most worse) and the bounds' names."""
        if self.low_pct is None or self.high_pct is None:
            worse = -self.change_pct if self.higher_is_better else self.change_pct
            return worse, worse, "point figure", "point figure"
        if self.higher_is_better:
            return -self.high_pct, -self.low_pct, "upper bound", "lower bound"
        return self.low_pct, self.high_pct, "lower bound", "upper bound"

    @property
    def passed(self) -> bool:
        """Gated checks fail only when even the least-worse end of the interval is too bad."""
        if self.limit_pct is None:
            return True
        return self._worse()[0] <= self.limit_pct

    @property
    def decided_by(self) -> str | None:
        """Which bound decided the verdict (``lower bound`` for a rise; ``None`` if not gated)."""
        if self.limit_pct is None:
            return None
        _, most, least_name, most_name = self._worse()
        return most_name if most <= self.limit_pct else least_name

    def describe(self) -> str:
        """``p99 latency +412% (95% interval +380% to +450%, limit +20%: the lower bound is
        beyond the limit; 0.11 -> 0.56 ms)``."""
        figures = f"{self.baseline:.4g} -> {self.candidate:.4g} {self.unit}"
        interval = ""
        if self.low_pct is not None and self.high_pct is not None:
            interval = (
                f"{self.confidence:.0%} interval {self.low_pct:+,.1f}% to {self.high_pct:+,.1f}%"
            )
        if self.limit_pct is None:
            inside = "; ".join(filter(None, [interval, figures]))
            return f"{self.label} {self.change_pct:+,.0f}% ({inside})"
        _, most, least_name, _ = self._worse()
        if not self.passed:
            verdict = f"the {least_name} is beyond the limit"
        elif most <= self.limit_pct:
            verdict = f"the {self.decided_by} is within the limit"
        else:
            verdict = f"the {least_name} is within the limit: noise could explain the rise"
        limit = f"limit +{self.limit_pct:g}%: {verdict}"
        inside = ", ".join(filter(None, [interval, limit]))
        return f"{self.label} {self.change_pct:+,.0f}% ({inside}; {figures})"


def _ids(runs: Sequence[Run]) -> str:
    return ("run " if len(runs) == 1 else "runs ") + ", ".join(str(r.id) for r in runs)


@dataclass
class Gate:
    """The verdict on a candidate: its checks, the runs, hosts and cost reports behind them."""

    baseline_runs: list[Run]
    candidate_runs: list[Run]
    checks: list[Check]
    costs: dict[str, CostReport] = field(repr=False)
    requests_per_day: float
    price_source: str
    host: HostCheck
    notes: list[str] = field(default_factory=list)

    @property
    def baseline(self) -> Run:
        """The first baseline run (its model names the report)."""
        return self.baseline_runs[0]

    @property
    def candidate(self) -> Run:
        """The first candidate run."""
        return self.candidate_runs[0]

    @property
    def gated(self) -> list[Check]:
        """The checks with a threshold (cost per 1M predictions and p99 latency)."""
        return [c for c in self.checks if c.limit_pct is not None]

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        """One line: the verdict, the gated figures and, across hosts, the warning."""
        runs = f"{_ids(self.candidate_runs)} against baseline {_ids(self.baseline_runs)}"
        warning = f"; {self.host.warning}" if self.host.warning else ""
        if self.passed:
            checks = "; ".join(c.describe() for c in self.gated)
            return f"gate passed: {runs}: {checks}{warning}"
        return f"regression: {runs}: " + "; ".join(c.describe() for c in self.failures) + warning

    def to_frame(self) -> pd.DataFrame:
        """One row per check, with the change, its interval, the limit and the verdict."""
        return pd.DataFrame(
            [
                {
                    "metric": c.label,
                    "unit": c.unit,
                    "baseline": c.baseline,
                    "candidate": c.candidate,
                    "change_pct": c.change_pct,
                    "interval_low_pct": c.low_pct,
                    "interval_high_pct": c.high_pct,
                    "limit_pct": c.limit_pct,
                    "passed": c.passed if c.limit_pct is not None else None,
                    "decided_by": c.decided_by,
                    "method": c.method,
                }
                for c in self.checks
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able verdict for CI logs."""
        return {
            "passed": self.passed,
            "summary": self.summary(),
            "baseline_run_id": self.baseline.id,
            "candidate_run_id": self.candidate.id,
            "baseline_run_ids": [r.id for r in self.baseline_runs],
            "candidate_run_ids": [r.id for r in self.candidate_runs],
            "host": self.host.to_dict(),
            "requests_per_day": self.requests_per_day,
            "price_source": self.price_source,
            "checks": self.to_frame().replace({np.nan: None}).to_dict(orient="records"),
            "notes": list(self.notes),
        }

    def raise_for_regression(self) -> None:
        """Raise :class:`~workbench.errors.RegressionError` (one line) if a check failed."""
        if not self.passed:
            raise RegressionError(self.summary())


def _grid(pricing: Pricing) -> GridInputs:
    g_per_kwh, _ = carbon_intensity(pricing.region)
    return GridInputs(
        electricity_usd_per_kwh=pricing.electricity_usd_per_kwh,
        pue=pricing.pue,
        carbon_g_per_kwh=g_per_kwh,
        region=pricing.region or "WORLD",
        carbon_method="estimated",
    )


def _inference(store: RunStore, run_id: int, pricing: Pricing, requests_per_day: float):
    usd_per_h, _ = pricing.usd_per_h()
    return inference_inputs_from_run(
        store,
        run_id,
        requests_per_day=requests_per_day,
        lifetime_months=pricing.lifetime_months,
        instance_usd_per_h=usd_per_h,
        utilisation=pricing.utilisation,
    )


def run_cost(
    store: RunStore, run_id: int, pricing: Pricing, requests_per_day: float, name: str = ""
) -> CostReport:
    """The lifecycle cost of serving with one run's measured figures (see the module docstring)."""
    inference = _inference(store, run_id, pricing, requests_per_day)
    return compute_cost(
        Scenario(name=name or f"run {run_id}", inference=inference, grid=_grid(pricing))
    )


@dataclass(frozen=True)
class _Side:
    """One side of the comparison: its runs, their figures and how to cost any pair of them."""

    name: str
    runs: list[Run]
    samples: SideSamples
    inference: InferenceInputs
    energy_method: str

    def cost(self, grid: GridInputs, throughput: float, energy_j: float) -> CostReport:
        inference = replace(
            self.inference, throughput_items_per_s=throughput, energy_j_per_item=energy_j
        )
        name = f"{self.name} ({_ids(self.runs)})"
        return compute_cost(Scenario(name=name, inference=inference, grid=grid))


def _load_runs(store: RunStore, run_ids: int | Sequence[int], side: str) -> list[Run]:
    """The side's runs, each a profile run with p99, throughput and energy figures."""
    ids = [run_ids] if isinstance(run_ids, (int, np.integer, str)) else list(run_ids)
    if not ids:
        raise ConfigError(
            f"no {side} run ids given; pass at least one (`workbench runs` lists them)"
        )
    runs = [store.get(int(i)) for i in ids]
    for run in runs:
        if run.metrics.get("latency_ms_p99") is None:
            raise ConfigError(
                f"run {run.id} ({run.kind}, {run.model}) has no latency_ms_p99; compare profile "
                "runs (`workbench runs --kind profile` lists them)"
            )
        measured_figures(store, run.id)  # a clear error if energy or throughput is missing
    return runs


def _side(store: RunStore, name: str, runs: list[Run], pricing: Pricing, requests_per_day: float):
    figures = [measured_figures(store, r.id) for r in runs]
    samples = SideSamples.from_figures(
        [r.id for r in runs],
        [r.details.get("latencies_ms") or [] for r in runs],
        p99_ms=[float(r.metrics["latency_ms_p99"]) for r in runs],
        throughput_items_per_s=[float(f["throughput_items_per_s"]) for f in figures],
        energy_j_per_item=[float(f["energy_j_per_item"]) for f in figures],
    )
    inference = _inference(store, runs[0].id, pricing, requests_per_day)
    method = weakest_method(*(f["energy_method"] for f in figures))
    return _Side(name, runs, samples, replace(inference, energy_method=method), method)


def compare_runs(
    store: RunStore,
    baseline_run_ids: int | Sequence[int],
    candidate_run_ids: int | Sequence[int],
    thresholds: Thresholds | None = None,
    pricing: Pricing | None = None,
    *,
    allow_other_host: bool = False,
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Gate:
    """Check candidate profile runs against baseline runs from the run store.

    Parameters
    ----------
    store:
        The run store holding the runs (each needs ``throughput_items_per_s``,
        ``energy_j_per_item`` and ``latency_ms_p99``: ``profile(..., energy=True)`` records them,
        and the raw latency samples the interval resamples).
    baseline_run_ids, candidate_run_ids:
        A run id or a list of run ids, the repeats of each side (``workbench runs`` lists them).
    thresholds:
        Largest allowed rise of cost per 1M predictions and of p99 latency, in percent; a check
        fails when the lower bound of its interval is beyond it.
    pricing:
        Traffic, instance price and grid, the same for both sides.
    allow_other_host:
        Compare runs from different hosts anyway (refused by default), with a loud warning.
    confidence, resamples, seed:
        The bootstrap interval: its coverage, its number of draws and the generator's seed.

    Returns
    -------
    Gate
        ``gate.passed``, ``gate.summary()``; ``gate.raise_for_regression()`` for CI.

    Example
    -------
    See the module docstring.
    """
    thresholds = thresholds or Thresholds()
    pricing = pricing or Pricing()
    base_runs = _load_runs(store, baseline_run_ids, "baseline")
    cand_runs = _load_runs(store, candidate_run_ids, "candidate")
    host = compare_hosts(
        [(r.id, r.environment) for r in base_runs],
        [(r.id, r.environment) for r in cand_runs],
        allow_other_host=allow_other_host,
    )
    requests_per_day = pricing.requests_per_day
    if requests_per_day is None:
        throughput = float(np.mean([r.metrics.get("throughput_items_per_s") or 0.0
                                    for r in base_runs]))  # fmt: skip
        requests_per_day = AT_SCALE_INSTANCES * 86400.0 * throughput * pricing.utilisation
    base = _side(store, "baseline", base_runs, pricing, requests_per_day)
    cand = _side(store, "candidate", cand_runs, pricing, requests_per_day)
    rng = np.random.default_rng(seed)
    reps = tuple(resample_side(s.samples, resamples, rng) for s in (base, cand))
    grid = _grid(pricing)
    costs = {
        s.name: s.cost(grid, float(s.samples.throughput_items_per_s.mean()),
                       float(s.samples.energy_j_per_item.mean()))
        for s in (base, cand)
    }  # fmt: skip
    checks = _checks((base, cand), reps, costs, grid, thresholds, confidence)
    price, price_source = pricing.usd_per_h()
    notes = [host.warning] if host.warning else []
    notes += _like_for_like_notes(base_runs, cand_runs)
    notes.append(_interval_note((base, cand), resamples, seed, confidence))
    notes.append(
        f"cost: {requests_per_day:,.0f} requests/day for {pricing.lifetime_months:g} months at "
        f"{price:g} USD per instance-hour ({price_source}), {pricing.utilisation:.0%} target "
        "utilisation"
    )
    return Gate(base_runs, cand_runs, checks, costs, requests_per_day, price_source, host, notes)


def _cost_replicates(side: _Side, reps: Replicates, grid: GridInputs) -> np.ndarray:
    """Cost per 1M predictions of every bootstrap replicate of one side."""
    return np.array(
        [
            side.cost(grid, float(t), float(e)).inference_usd_per_million
            for t, e in zip(reps.throughput_items_per_s, reps.energy_j_per_item, strict=True)
        ]
    )


def _checks(
    sides: tuple[_Side, _Side],
    reps: tuple[Replicates, Replicates],
    costs: dict[str, CostReport],
    grid: GridInputs,
    thresholds: Thresholds,
    confidence: float,
) -> list[Check]:
    """Cost per 1M predictions and p99 latency, gated; throughput and energy, shown."""
    (base, cand), (rb, rc) = sides, reps
    b, c = costs["baseline"], costs["candidate"]

    def interval(baseline: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
        low, high = change_interval(baseline, candidate, confidence)
        return {"low_pct": low, "high_pct": high, "confidence": confidence}

    cost_interval = interval(_cost_replicates(base, rb, grid), _cost_replicates(cand, rc, grid))
    return [
        Check("usd_per_1m_predictions", "cost per 1M predictions", "USD",
              b.inference_usd_per_million, c.inference_usd_per_million,
              thresholds.max_cost_increase_pct, weakest_method("typed in", c.inference_method),
              **cost_interval),
        Check("latency_ms_p99", "p99 latency", "ms", float(base.samples.p99_ms.mean()),
              float(cand.samples.p99_ms.mean()), thresholds.max_p99_increase_pct, "measured",
              **interval(rb.p99_ms, rc.p99_ms)),
        Check("throughput_items_per_s", "throughput", "items/s",
              float(base.samples.throughput_items_per_s.mean()),
              float(cand.samples.throughput_items_per_s.mean()), None, "measured",
              higher_is_better=True,
              **interval(rb.throughput_items_per_s, rc.throughput_items_per_s)),
        Check("energy_j_per_item", "energy per prediction", "J",
              float(base.samples.energy_j_per_item.mean()),
              float(cand.samples.energy_j_per_item.mean()), None,
              weakest_method(base.energy_method, cand.energy_method),
              **interval(rb.energy_j_per_item, rc.energy_j_per_item)),
    ]  # fmt: skip


def _interval_note(sides: tuple[_Side, _Side], resamples: int, seed: int, confidence: float) -> str:
    """How the interval was made, and what noise it cannot see on this data."""
    counts = " and ".join(f"{len(s.runs)} {s.name} run{'s' if len(s.runs) > 1 else ''}"
                          for s in sides)  # fmt: skip
    note = (
        f"interval: {confidence:.0%} bootstrap over {counts} ({resamples} draws, seed {seed}): "
        "runs drawn with replacement and each run's stored latency samples within it; a gated "
        "check fails only when its lower bound is beyond the limit"
    )
    if any(len(s.runs) == 1 for s in sides):
        note += "; a side with one run shows no between-run noise: repeat it (--repeats)"
    missing = [r.id for s in sides for r, x in zip(s.runs, s.samples.latencies_ms) if not x.size]
    if missing:
        note += f"; runs {missing} store no latency samples: their within-run noise is not seen"
    return note


def _like_for_like_notes(base: list[Run], cand: list[Run]) -> list[str]:
    """A note for each configuration field, and for the model, that differs between the sides."""

    def values(runs: list[Run], key: str) -> str:
        seen = list(dict.fromkeys(repr(r.config.get(key)) for r in runs))
        return ", ".join(seen)

    notes = [
        f"{key} differs: baseline {values(base, key)}, candidate {values(cand, key)}; "
        "the comparison is not like for like"
        for key in LIKE_FOR_LIKE
        if values(base, key) != values(cand, key)
    ]
    base_fp = {r.fingerprint for r in base}
    if base_fp != {r.fingerprint for r in cand} or len(base_fp) > 1:
        notes.append(
            "the models differ: baseline "
            + ", ".join(sorted({f"{r.model} ({r.fingerprint[:12]})" for r in base}))
            + ", candidate "
            + ", ".join(sorted({f"{r.model} ({r.fingerprint[:12]})" for r in cand}))
        )
    return notes


# -- rehearsing the gate ---------------------------------------------------------------------


def with_extra_work(
    model: Any, matmuls: int = 8, width: int = 512, out_dir: str | Path | None = None
) -> Any:
    """A copy of ``model`` (anything ``load_model`` takes) whose every forward pass also runs
    ``matmuls`` real ``width x width`` matrix multiplications; outputs are unchanged.

    The extra chain reads the first input (flattened, cast to float), so ONNX Runtime cannot fold
    it away; its sum is added to the first output times zero. Use it to rehearse a gate with a
    real, measured slowdown.

    Example
    -------
    >>> slow = with_extra_work("digits-mlp", matmuls=2, width=64)  # doctest: +SKIP
    >>> slow.name  # doctest: +SKIP
    'digits-mlp-extra2x64'
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from workbench.models import load_model
    from workbench.paths import cache_dir

    whole("matmuls", matmuls, minimum=1, fix="give the number of extra multiplications, e.g. 8")
    whole("width", width, minimum=1, fix="give the side of each square matrix, e.g. 512")
    handle = load_model(model)
    proto = onnx.load(str(handle.onnx()))
    graph = proto.graph
    first_in, out = graph.input[0].name, graph.output[0]
    if out.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ConfigError(
            f"{handle.name}: extra work is added to a float32 first output, and "
            f"{out.name!r} is not float32; rehearse the gate with another model"
        )
    features = int(np.prod(handle.example_inputs(1)[first_in].shape[1:]))
    rng = np.random.default_rng(0)
    orig = f"{out.name}__before_extra_work"
    for node in graph.node:
        node.output[:] = [orig if o == out.name else o for o in node.output]
        node.input[:] = [orig if i == out.name else i for i in node.input]
    p = "extra_work_"
    nodes = [
        helper.make_node("Cast", [first_in], [p + "x"], to=TensorProto.FLOAT),
        helper.make_node("Flatten", [p + "x"], [p + "h0"], axis=1),
    ]
    shapes = [(features, width)] + [(width, width)] * (matmuls - 1)
    for i, shape in enumerate(shapes):
        weight = (rng.standard_normal(shape) / math.sqrt(shape[0])).astype(np.float32)
        graph.initializer.append(numpy_helper.from_array(weight, p + f"w{i}"))
        nodes.append(helper.make_node("MatMul", [p + f"h{i}", p + f"w{i}"], [p + f"m{i}"]))
        nodes.append(helper.make_node("Tanh", [p + f"m{i}"], [p + f"h{i + 1}"]))
    graph.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), p + "zero"))
    nodes += [
        helper.make_node("ReduceSum", [p + f"h{matmuls}"], [p + "sum"], keepdims=0),
        helper.make_node("Mul", [p + "sum", p + "zero"], [p + "nothing"]),
        helper.make_node("Add", [orig, p + "nothing"], [out.name]),
    ]
    graph.node.extend(nodes)
    onnx.checker.check_model(proto)
    name = f"{handle.name}-extra{matmuls}x{width}"
    folder = Path(out_dir) if out_dir is not None else cache_dir() / "onnx"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}-{handle.fingerprint[:12]}.onnx"
    onnx.save(proto, str(target))
    slow = load_model(target)
    slow.name = name
    slow.metadata = {**handle.metadata, "extra_work": {"matmuls": matmuls, "width": width}}
    return slow
