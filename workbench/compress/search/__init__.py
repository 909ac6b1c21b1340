"""The compression search: build variants, measure quality and speed, keep the Pareto frontier,
and recommend the one to ship under the user's constraints (``optimize``).

One module per job: :mod:`~workbench.compress.search.constraints` (the limits and their units),
:mod:`~workbench.compress.search.candidates` (a measured configuration, the frontier),
:mod:`~workbench.compress.search.recommendation` (the choice and its reason),
:mod:`~workbench.compress.search.attribution` (the recommendation's gain split into runtime,
threads, batch size and compression, each step measured) and
:mod:`~workbench.compress.search.runner` (the search itself).

Example
-------
>>> from workbench.compress.search import Constraints
>>> Constraints(max_quality_drop=0.01).max_quality_drop
0.01
"""

from workbench.compress.search.attribution import (
    STEPS,
    ChainConfig,
    GainAttribution,
    GainStep,
    MeasuredConfig,
    attribute_gain,
    chain_configs,
    measure_attribution,
)
from workbench.compress.search.candidates import (
    OBJECTIVES,
    PARETO_AXES,
    Candidate,
    pareto_frontier,
)
from workbench.compress.search.constraints import Check, Constraints, parse_fraction, parse_ms
from workbench.compress.search.recommendation import Recommendation, recommend, unmet_message
from workbench.compress.search.runner import (
    DEFAULT_VARIANTS,
    MIN_MEASURE_SECONDS,
    STRATEGIES,
    SearchResult,
    default_threads,
    measure_window,
    optimize,
)

__all__ = [
    "DEFAULT_VARIANTS",
    "MIN_MEASURE_SECONDS",
    "OBJECTIVES",
    "PARETO_AXES",
    "STEPS",
    "STRATEGIES",
    "Candidate",
    "ChainConfig",
    "Check",
    "Constraints",
    "GainAttribution",
    "GainStep",
    "MeasuredConfig",
    "Recommendation",
    "SearchResult",
    "attribute_gain",
    "chain_configs",
    "default_threads",
    "measure_attribution",
    "measure_window",
    "optimize",
    "pareto_frontier",
    "parse_fraction",
    "parse_ms",
    "recommend",
    "unmet_message",
]
