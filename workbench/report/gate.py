"""A deployment gate on cost and latency: a candidate run against a baseline run.

:func:`compare_runs` reads two profile runs from the run store (a baseline and a candidate) and
checks the candidate against thresholds: **cost per million predictions** (from
:mod:`workbench.cost.model` on each run's measured throughput and energy) and **p99 latency** may
rise by at most a given percent. The result is a :class:`Gate`; :meth:`Gate.raise_for_regression`
raises :class:`~workbench.errors.RegressionError`, so a notebook run by papermill (and
``workbench report``) fails and CI or cron can stop a deployment.
:func:`workbench.report.html.write_html_report` writes the gate as one self-contained HTML file.

Cost per million predictions
----------------------------
Both runs are costed by :func:`workbench.cost.model.compute_cost` with the same traffic, price and
grid: inference inputs come from :func:`workbench.cost.scenarios.inference_inputs_from_run`
(measured ``throughput_items_per_s`` and ``energy_j_per_item``), the price of one instance-hour from
:class:`Pricing` (by default the list price of ``aws-c6i.large`` in the shipped hardware table,
typed in). Instances come in whole numbers, so at low traffic one instance serves everything and a
slower model costs the same; unless ``requests_per_day`` is given, the traffic is set **at
scale**, to what :data:`AT_SCALE_INSTANCES` baseline instances serve at the target utilisation,
where whole-instance rounding moves the figure by under 1 %. The figure is ``estimated``: a
measured throughput times a typed-in price.

Rehearsing the gate
-------------------
:func:`with_extra_work` writes a copy of a model whose every forward pass also runs a chain of
real matrix multiplications (their result is added to the output times zero, so predictions do
not change). Profiling it is a real, measured regression, for checking that a gate trips.

Example
-------
>>> from workbench.measure.store import RunStore
>>> store = RunStore(":memory:")
>>> def add(throughput, p99):
...     return store.add("profile", model="m", fingerprint="f", config={"batch_size": 1},
...                      metrics={"throughput_items_per_s": throughput, "latency_ms_p99": p99,
...                               "energy_j_per_item": 1e-3, "energy_method": "estimated"})
>>> base, slow = add(1000.0, 2.0), add(500.0, 4.0)
>>> gate = compare_runs(store, base, slow, Thresholds(max_cost_increase_pct=10))
>>> gate.passed, [round(c.change_pct) for c in gate.gated]
(False, [100, 100])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.checks import number, whole
from workbench.cost.model import CostReport, GridInputs, Scenario, compute_cost
from workbench.cost.scenarios import inference_inputs_from_run
from workbench.energy.carbon import carbon_intensity
from workbench.errors import ConfigError, RegressionError
from workbench.measure.store import Run, RunStore
from workbench.provenance import weakest_method

#: Baseline instances whose capacity sets the traffic "at scale" (rounding under 1 %).
AT_SCALE_INSTANCES = 100
#: Hardware-table entry whose list price is the default instance price (2 vCPU, like a laptop).
DEFAULT_HARDWARE = "aws-c6i.large"
#: Configuration fields that should match for a like-for-like comparison.
LIKE_FOR_LIKE = ("backend", "device", "batch_size", "threads")


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
    """One metric of the candidate against the baseline; ``limit_pct=None`` is shown, not gated."""

    metric: str
    label: str
    unit: str
    baseline: float
    candidate: float
    limit_pct: float | None
    method: str
    higher_is_better: bool = False

    @property
    def change_pct(self) -> float:
        """Percent change from baseline to candidate (+ means the figure went up)."""
        return (self.candidate / self.baseline - 1.0) * 100.0 if self.baseline else math.inf

    @property
    def passed(self) -> bool:
        if self.limit_pct is None:
            return True
        worse = -self.change_pct if self.higher_is_better else self.change_pct
        return worse <= self.limit_pct

    def describe(self) -> str:
        """``p99 latency +412% (0.11 -> 0.56 ms, limit +20%)``."""
        limit = "" if self.limit_pct is None else f", limit +{self.limit_pct:g}%"
        return (
            f"{self.label} {self.change_pct:+,.0f}% ({self.baseline:.4g} -> "
            f"{self.candidate:.4g} {self.unit}{limit})"
        )


@dataclass
class Gate:
    """The verdict on a candidate run: its checks, the runs and the cost reports behind them."""

    baseline: Run
    candidate: Run
    checks: list[Check]
    costs: dict[str, CostReport] = field(repr=False)
    requests_per_day: float
    price_source: str
    notes: list[str] = field(default_factory=list)

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
        """One line: the verdict and the gated figures."""
        runs = f"run {self.candidate.id} against baseline run {self.baseline.id}"
        if self.passed:
            return f"gate passed: {runs}: " + "; ".join(c.describe() for c in self.gated)
        return f"regression: {runs}: " + "; ".join(c.describe() for c in self.failures)

    def to_frame(self) -> pd.DataFrame:
        """One row per check, with the change, the limit and the verdict."""
        return pd.DataFrame(
            [
                {
                    "metric": c.label,
                    "unit": c.unit,
                    "baseline": c.baseline,
                    "candidate": c.candidate,
                    "change_pct": c.change_pct,
                    "limit_pct": c.limit_pct,
                    "passed": c.passed if c.limit_pct is not None else None,
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
            "requests_per_day": self.requests_per_day,
            "price_source": self.price_source,
            "checks": self.to_frame().replace({np.nan: None}).to_dict(orient="records"),
            "notes": list(self.notes),
        }

    def raise_for_regression(self) -> None:
        """Raise :class:`~workbench.errors.RegressionError` (one line) if a check failed."""
        if not self.passed:
            raise RegressionError(self.summary())


def run_cost(
    store: RunStore, run_id: int, pricing: Pricing, requests_per_day: float, name: str = ""
) -> CostReport:
    """The lifecycle cost of serving with one run's measured figures (see the module docstring)."""
    usd_per_h, _ = pricing.usd_per_h()
    inference = inference_inputs_from_run(
        store,
        run_id,
        requests_per_day=requests_per_day,
        lifetime_months=pricing.lifetime_months,
        instance_usd_per_h=usd_per_h,
        utilisation=pricing.utilisation,
    )
    g_per_kwh, _ = carbon_intensity(pricing.region)
    grid = GridInputs(
        electricity_usd_per_kwh=pricing.electricity_usd_per_kwh,
        pue=pricing.pue,
        carbon_g_per_kwh=g_per_kwh,
        region=pricing.region or "WORLD",
        carbon_method="estimated",
    )
    return compute_cost(Scenario(name=name or f"run {run_id}", inference=inference, grid=grid))


def compare_runs(
    store: RunStore,
    baseline_run_id: int,
    candidate_run_id: int,
    thresholds: Thresholds | None = None,
    pricing: Pricing | None = None,
) -> Gate:
    """Check a candidate profile run against a baseline run from the run store.

    Parameters
    ----------
    store:
        The run store holding both runs (each needs ``throughput_items_per_s``,
        ``energy_j_per_item`` and ``latency_ms_p99``: ``profile(..., energy=True)`` records them).
    baseline_run_id, candidate_run_id:
        Run ids (``workbench runs`` lists them).
    thresholds:
        Largest allowed rise of cost per 1M predictions and of p99 latency, in percent.
    pricing:
        Traffic, instance price and grid, the same for both runs.

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
    base, cand = store.get(int(baseline_run_id)), store.get(int(candidate_run_id))
    for run in (base, cand):
        if run.metrics.get("latency_ms_p99") is None:
            raise ConfigError(
                f"run {run.id} ({run.kind}, {run.model}) has no latency_ms_p99; compare profile "
                "runs (`workbench runs --kind profile` lists them)"
            )
    requests_per_day = pricing.requests_per_day
    if requests_per_day is None:
        throughput = float(base.metrics.get("throughput_items_per_s") or 0.0)
        requests_per_day = AT_SCALE_INSTANCES * 86400.0 * throughput * pricing.utilisation
    costs = {
        "baseline": run_cost(
            store, base.id, pricing, requests_per_day, f"baseline (run {base.id})"
        ),
        "candidate": run_cost(
            store, cand.id, pricing, requests_per_day, f"candidate (run {cand.id})"
        ),
    }
    price, price_source = pricing.usd_per_h()
    checks = _checks(base, cand, costs, thresholds)
    notes = _like_for_like_notes(base, cand)
    notes.append(
        f"cost: {requests_per_day:,.0f} requests/day for {pricing.lifetime_months:g} months at "
        f"{price:g} USD per instance-hour ({price_source}), {pricing.utilisation:.0%} target "
        "utilisation"
    )
    return Gate(base, cand, checks, costs, requests_per_day, price_source, notes)


def _checks(
    base: Run, cand: Run, costs: dict[str, CostReport], thresholds: Thresholds
) -> list[Check]:
    """Cost per 1M predictions and p99 latency, gated; throughput and energy, shown."""
    b, c = costs["baseline"], costs["candidate"]
    return [
        Check("usd_per_1m_predictions", "cost per 1M predictions", "USD",
              b.inference_usd_per_million, c.inference_usd_per_million,
              thresholds.max_cost_increase_pct, weakest_method("typed in", c.inference_method)),
        Check("latency_ms_p99", "p99 latency", "ms", float(base.metrics["latency_ms_p99"]),
              float(cand.metrics["latency_ms_p99"]), thresholds.max_p99_increase_pct, "measured"),
        Check("throughput_items_per_s", "throughput", "items/s",
              float(base.metrics["throughput_items_per_s"]),
              float(cand.metrics["throughput_items_per_s"]), None, "measured",
              higher_is_better=True),
        Check("energy_j_per_item", "energy per prediction", "J",
              float(base.metrics["energy_j_per_item"]), float(cand.metrics["energy_j_per_item"]),
              None, weakest_method(base.metrics.get("energy_method") or "estimated",
                                   cand.metrics.get("energy_method") or "estimated")),
    ]  # fmt: skip


def _like_for_like_notes(base: Run, cand: Run) -> list[str]:
    """A note for each configuration field, and for the model, that differs between the runs."""
    notes = [
        f"{key} differs: baseline {base.config.get(key)!r}, candidate {cand.config.get(key)!r}; "
        "the comparison is not like for like"
        for key in LIKE_FOR_LIKE
        if base.config.get(key) != cand.config.get(key)
    ]
    if base.fingerprint != cand.fingerprint:
        notes.append(
            f"the models differ: baseline {base.model} ({base.fingerprint[:12]}), candidate "
            f"{cand.model} ({cand.fingerprint[:12]})"
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
