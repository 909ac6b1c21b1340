"""Scenarios against each other: what one saves against another, and a side-by-side table.

:func:`compare` gives the :class:`Savings` of one :class:`~workbench.cost.model.CostReport`
against a baseline (money, kWh, tCO2e and percent); :func:`compare_scenarios` costs several
scenarios and lays them side by side with their savings against the first (or a named) one.

>>> from workbench.cost.model import GridInputs, InferenceInputs, Scenario
>>> cheap = Scenario("cheap", InferenceInputs(1e5, 1, 1.0, 100.0, instance_usd_per_h=0.5),
...                  GridInputs(0.1, 1.2, 200))
>>> dear = Scenario("dear", InferenceInputs(1e5, 1, 1.0, 100.0, instance_usd_per_h=1.0),
...                 GridInputs(0.1, 1.2, 200))
>>> compare_scenarios({"dear": dear, "cheap": cheap})["saved_cost_pct"].round(1).tolist()
[0.0, 50.0]
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from workbench.cost.model import CostReport, Scenario, compute_cost
from workbench.errors import ConfigError
from workbench.provenance import weakest_method


@dataclass
class Savings:
    """What ``optimised`` saves against ``baseline`` over the whole lifecycle.

    Positive numbers are savings; percentages are of the baseline.
    """

    baseline: str
    optimised: str
    cost_usd: float
    energy_kwh: float
    co2_t: float
    cost_pct: float
    energy_pct: float
    co2_pct: float
    method: str

    def to_frame(self) -> pd.DataFrame:
        """One row per quantity: saved amount and percent."""
        return pd.DataFrame(
            {
                "quantity": ["cost_usd", "energy_kwh", "co2_t"],
                "saved": [self.cost_usd, self.energy_kwh, self.co2_t],
                "saved_pct": [self.cost_pct, self.energy_pct, self.co2_pct],
                "method": [self.method] * 3,
            }
        )


def compare(baseline: CostReport, optimised: CostReport) -> Savings:
    """Lifecycle savings of ``optimised`` against ``baseline`` (money, kWh, tCO2e, %).

    >>> from workbench.cost.model import GridInputs, InferenceInputs
    >>> s = Scenario("a", InferenceInputs(1e5, 1, 1.0, 100.0, instance_usd_per_h=1.0),
    ...              GridInputs(0.1, 1.2, 200))
    >>> compare(compute_cost(s), compute_cost(s)).cost_usd
    0.0
    """

    def pct(saved: float, base: float) -> float:
        return 100.0 * saved / base if base > 0 else 0.0

    cost = baseline.total_cost_usd - optimised.total_cost_usd
    energy = baseline.total_energy_kwh - optimised.total_energy_kwh
    co2 = baseline.total_co2_t - optimised.total_co2_t
    return Savings(
        baseline=baseline.scenario,
        optimised=optimised.scenario,
        cost_usd=cost,
        energy_kwh=energy,
        co2_t=co2,
        cost_pct=pct(cost, baseline.total_cost_usd),
        energy_pct=pct(energy, baseline.total_energy_kwh),
        co2_pct=pct(co2, baseline.total_co2_t),
        method=weakest_method(baseline.method, optimised.method),
    )


def compare_scenarios(scenarios: dict[str, Scenario], baseline: str | None = None) -> pd.DataFrame:
    """Scenarios side by side: one row each, with savings against ``baseline`` (default: first).

    >>> from workbench.cost.model import GridInputs, InferenceInputs
    >>> s = Scenario("a", InferenceInputs(1e5, 1, 1.0, 100.0, instance_usd_per_h=1.0),
    ...              GridInputs(0.1, 1.2, 200))
    >>> compare_scenarios({"a": s, "b": s})["saved_cost_pct"].tolist()
    [0.0, 0.0]
    """
    if not scenarios:
        raise ConfigError("compare_scenarios needs at least one scenario")
    names = list(scenarios)
    base_name = names[0] if baseline is None else baseline
    if base_name not in scenarios:
        raise ConfigError(
            f"baseline {base_name!r} is not one of the scenarios; pick one of {', '.join(names)}"
        )
    reports = {name: compute_cost(replace(s, name=name)) for name, s in scenarios.items()}
    base = reports[base_name]
    rows = []
    for report in reports.values():
        saved = compare(base, report)
        row = report.to_row()
        row.update(
            saved_cost_usd=saved.cost_usd,
            saved_cost_pct=saved.cost_pct,
            saved_energy_pct=saved.energy_pct,
            saved_co2_pct=saved.co2_pct,
        )
        rows.append(row)
    return pd.DataFrame(rows)
