"""Lifecycle cost: training against inference in money, energy and carbon over a model's life,
the break-even day, scenarios from YAML, sensitivity and charts. Pure functions: inputs in,
numbers out.

The model and its inputs are in :mod:`workbench.cost.model`, savings and side-by-side tables in
:mod:`workbench.cost.savings`, the tornado data in :mod:`workbench.cost.tornado`, scenario
files and run-store figures in :mod:`workbench.cost.scenarios`, charts in
:mod:`workbench.cost.charts`.

Example
-------
A whole scenario is in :mod:`workbench.cost.model`'s docstring; one piece of it:

>>> from workbench.cost import GridInputs, TrainingInputs
>>> from workbench.cost.model import training_energy_kwh
>>> grid = GridInputs(electricity_usd_per_kwh=0.15, pue=1.0, carbon_g_per_kwh=300)
>>> rented = TrainingInputs(accelerator_hours=10, accelerator_power_w=400, accelerator_usd_per_h=2)
>>> training_energy_kwh(rented, grid)                     # 10 h x 400 W
4.0
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
