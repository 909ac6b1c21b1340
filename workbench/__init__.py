"""Inference Workbench: profile, compress, batch, cost and serve ML models.

The main verbs and result types, one per step of the way a model travels (see
``docs/architecture.md``)::

    load_model -> profile / sweep -> optimize -> batch_sweep / simulate / right_size
               -> compute_cost -> export -> (python -m serving BUNDLE) -> compare_runs

Each lives in the package named for its step (``workbench.models``, ``workbench.measure``,
``workbench.energy``, ``workbench.compress``, ``workbench.plan``, ``workbench.cost``,
``workbench.ship``, ``workbench.report``); importing them from here is the same object. They are
imported on first use, so ``import workbench`` stays cheap.

Example
-------
>>> import workbench
>>> p = workbench.profile("digits-mlp", batch_size=4, iterations=20, store=False)
>>> isinstance(p, workbench.Profile)
True
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    # models
    "load_model": "workbench.models",
    "ModelHandle": "workbench.models",
    # measure
    "profile": "workbench.measure",
    "sweep": "workbench.measure",
    "Profile": "workbench.measure",
    "SweepResult": "workbench.measure",
    "RunStore": "workbench.measure",
    # energy
    "auto_meter": "workbench.energy",
    "per_inference": "workbench.energy",
    "EnergyReading": "workbench.energy",
    "EnergyFigures": "workbench.energy",
    # compress
    "optimize": "workbench.compress.search",
    "SearchResult": "workbench.compress.search",
    "Recommendation": "workbench.compress.search",
    "Variant": "workbench.compress",
    # plan
    "batch_sweep": "workbench.plan",
    "simulate": "workbench.plan",
    "right_size": "workbench.plan",
    "BatchSweep": "workbench.plan",
    "ServerConfig": "workbench.plan",
    "SimulationResult": "workbench.plan",
    "SizingResult": "workbench.plan",
    # cost
    "compute_cost": "workbench.cost",
    "load_scenarios": "workbench.cost",
    "Scenario": "workbench.cost",
    "CostReport": "workbench.cost",
    # ship
    "export": "workbench.ship",
    "BundleInfo": "workbench.ship",
    # report
    "compare_runs": "workbench.report",
    "Gate": "workbench.report",
    # the main job
    "run_demo": "workbench.demo",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
