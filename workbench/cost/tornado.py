"""Sensitivity of a scenario's lifecycle figures to each of its inputs (tornado data).

:func:`sensitivity` moves every numeric input of a :class:`~workbench.cost.model.Scenario` down
and up by a percent, one at a time, costs each variant with
:func:`~workbench.cost.model.compute_cost` and ranks the inputs by how far they swing the output;
:func:`workbench.cost.charts.tornado_chart` draws the result.

>>> from workbench.cost.model import GridInputs, InferenceInputs, Scenario
>>> s = Scenario("a", InferenceInputs(1e5, 12, 1.0, 100.0, instance_usd_per_h=1.0),
...              GridInputs(0.1, 1.2, 200))
>>> sensitivity(s, pct=10)["input"].tolist()[:2]
['inference.lifetime_months', 'inference.instance_usd_per_h']
"""

from __future__ import annotations

import math
from dataclasses import fields, replace

import pandas as pd

from workbench.checks import number
from workbench.cost.model import Scenario, compute_cost
from workbench.errors import ConfigError

# Valid range of each input varied by the sensitivity analysis: values pushed outside are clamped.
_BOUNDS: dict[str, tuple[float, float]] = {
    "pue": (1.0, math.inf),
    "usage": (1e-9, 1.0),
    "utilisation": (1e-9, 1.0),
    "cache_hit_rate": (0.0, 1.0 - 1e-9),
    "requests_growth_per_month": (-1.0 + 1e-9, math.inf),
}
_FIXED = {"n_accelerators", "min_instances", "run_id"}
_SENSITIVITY_COLUMNS = [
    "input",
    "base_value",
    "low_value",
    "high_value",
    "low_output",
    "high_output",
    "base_output",
    "swing",
]


def _numeric_inputs(scenario: Scenario) -> list[tuple[str, str, float]]:
    parts = [("grid", scenario.grid), ("inference", scenario.inference)]
    if scenario.training is not None:
        parts.append(("training", scenario.training))
        if scenario.training_grid is not None:
            parts.append(("training_grid", scenario.training_grid))
    out = []
    for part, obj in parts:
        for f in fields(obj):
            value = getattr(obj, f.name)
            if f.name in _FIXED or isinstance(value, (str, bool)) or value is None:
                continue
            if float(value) != 0.0:
                out.append((part, f.name, float(value)))
    return out


def _vary(scenario: Scenario, part: str, name: str, value: float) -> Scenario:
    low, high = _BOUNDS.get(name, (0.0, math.inf))
    value = min(max(value, low), high)
    if part == "inference" and name in ("energy_j_per_item", "throughput_items_per_s"):
        # Keep power under load at least the idle draw when varying measured efficiency.
        inf = scenario.inference
        other = inf.throughput_items_per_s if name == "energy_j_per_item" else inf.energy_j_per_item
        value = max(value, inf.idle_power_w / other)
    if part == "inference" and name == "idle_power_w":
        inf = scenario.inference
        value = min(value, inf.energy_j_per_item * inf.throughput_items_per_s)
    return replace(scenario, **{part: replace(getattr(scenario, part), **{name: value})})


def sensitivity(
    scenario: Scenario, pct: float = 20.0, output: str = "total_cost_usd"
) -> pd.DataFrame:
    """Tornado data: each numeric input moved by -pct % and +pct %, ranked by the swing in output.

    Inputs at zero, inputs that do not move ``output``, whole-number counts and labels are left
    out; values pushed past their valid range (PUE below 1, utilisation above 1, ...) are
    clamped, and the frame shows the values used.

    Returns
    -------
    DataFrame with columns input, base_value, low_value, high_value, low_output, high_output,
    base_output, swing (``|high_output - low_output|``), sorted by swing, largest first.
    """
    number("pct", pct, minimum=0, open_low=True, owner="sensitivity",
           fix="give the percent to vary each input by, e.g. 20")  # fmt: skip
    base_report = compute_cost(scenario)
    if not hasattr(base_report, output):
        raise ConfigError(
            f"sensitivity output {output!r} is not a CostReport figure; use e.g. total_cost_usd, "
            "total_energy_kwh or total_co2_t"
        )
    base_out = float(getattr(base_report, output))
    rows = []
    for part, name, value in _numeric_inputs(scenario):
        lo_s = _vary(scenario, part, name, value * (1 - pct / 100))
        hi_s = _vary(scenario, part, name, value * (1 + pct / 100))
        lo_out = float(getattr(compute_cost(lo_s), output))
        hi_out = float(getattr(compute_cost(hi_s), output))
        rows.append(
            {
                "input": f"{part}.{name}",
                "base_value": value,
                "low_value": getattr(getattr(lo_s, part), name),
                "high_value": getattr(getattr(hi_s, part), name),
                "low_output": lo_out,
                "high_output": hi_out,
                "base_output": base_out,
                "swing": abs(hi_out - lo_out),
            }
        )
    frame = pd.DataFrame(rows, columns=_SENSITIVITY_COLUMNS)
    frame = frame[frame["swing"] > 0]
    return frame.sort_values("swing", ascending=False, kind="stable").reset_index(drop=True)
