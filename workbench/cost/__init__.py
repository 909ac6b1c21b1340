"""Lifecycle cost: training against inference in money, energy and carbon over a model's life,
the break-even day, scenarios from YAML, sensitivity and charts. Pure functions: inputs in,
numbers out.

The model and its inputs are in :mod:`workbench.cost.model`, savings and side-by-side tables in
:mod:`workbench.cost.savings`, the tornado data in :mod:`workbench.cost.tornado`, scenario
files and run-store figures in :mod:`workbench.cost.scenarios`, charts in
:mod:`workbench.cost.charts`.

Example
-------
>>> from workbench.cost import GridInputs, InferenceInputs, Scenario, TrainingInputs, compute_cost
>>> report = compute_cost(Scenario(
...     name="demo",
...     training=TrainingInputs(accelerator_hours=100, accelerator_power_w=300,
...                             accelerator_usd_per_h=2.0),
...     inference=InferenceInputs(requests_per_day=1e6, lifetime_months=12,
...                               energy_j_per_item=0.5, throughput_items_per_s=200,
...                               instance_usd_per_h=0.5),
...     grid=GridInputs(electricity_usd_per_kwh=0.15, pue=1.2, carbon_g_per_kwh=300),
... ))
>>> report.break_even_day
17
"""

from workbench.cost.model import (
    CostReport,
    GridInputs,
    InferenceInputs,
    Scenario,
    TrainingInputs,
    compute_cost,
)
from workbench.cost.savings import Savings, compare, compare_scenarios
from workbench.cost.scenarios import ScenarioSet, load_scenarios
from workbench.cost.tornado import sensitivity

__all__ = [
    "CostReport",
    "GridInputs",
    "InferenceInputs",
    "Savings",
    "Scenario",
    "ScenarioSet",
    "TrainingInputs",
    "compare",
    "compare_scenarios",
    "compute_cost",
    "load_scenarios",
    "sensitivity",
]
